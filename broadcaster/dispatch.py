"""The fan-out engine: one lane per channel, retries, and recovery after a crash.

Each lane is a task that sleeps on an event (woken when an alert is accepted, an
attempt ends or an officer retries, here or — through the ledger's notifications —
on another node) or until the next retry or rate budget falls due; a slow poll is
only a safety net. It claims due deliveries while it has in-flight slots; the
ledger holds each channel's in-flight limit and rate budget for the whole cluster
(two nodes never send to one chat at twice its rate). A slow, hanging or failing
channel only ever holds up its own lane.

A claim is a lease: the node named on it renews it while the attempt runs
(cluster.py) and writes the outcome only while it still holds it. A node that
stops renewing (killed, frozen, cut off) loses its leases after `lease_seconds`
and another node resolves them by the crash rule below; should the frozen node
wake, its late result is discarded and logged, never written over the other's.

An attempt is written as `sending` before the call and classified after it:
delivered → receipt stored; Retryable → back to `queued` with a backoff (retry.py)
until the channel's give-up time; Permanent → `failed`; OutcomeUnknown or no
answer within the channel's timeout → the channel's on_unknown policy (`retry`
re-queues, `hold` marks it `unknown` for an officer). Only this module acts on
errors; channels only classify them.

When the ledger stops answering (a full disk, a PostgreSQL restart or failover),
nothing new is claimed, so nothing new is sent. Attempts already under way finish;
their outcomes are kept in memory and written as soon as the ledger answers again,
so a delivered post is recorded as delivered, never sent a second time. When the
ledger is back, deliveries left `sending` by a claim whose answer was lost are
resolved as after a crash, and every lane wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime, timedelta

from broadcaster.channels.base import Channel
from broadcaster.config import ChannelConfig
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
    StoreError,
)
from broadcaster.groupcommit import GroupCommit
from broadcaster.health import HealthBoard
from broadcaster.logs import Scrubber, event
from broadcaster.metrics import Metrics
from broadcaster.models import DeliveryState, Outgoing, utcnow
from broadcaster.retry import RetryPolicy, next_try
from broadcaster.store import Claim, Database, DueDelivery, Outcome, Recovered
from broadcaster.store.records import ClaimRequest, Finished, Lease

log = logging.getLogger("broadcaster.dispatch")

Clock = Callable[[], datetime]
LEDGER_RETRY = 1.0  # seconds between a lane's tries while the ledger does not answer
SLOTS_POLL = 0.5  # seconds: the channel's slots are taken by attempts on other nodes
SAFETY_POLL = 30.0  # seconds: a lane looks at its queue at least this often


class ClaimGate:
    """Lanes claim together; resolving orphaned `sending` rows needs them all out.

    A claim is under way from the moment it is submitted until its deliveries are
    registered as in flight; a row it marked `sending` is not an orphan, though no
    lane lists it yet. ``exclusive`` waits until no claim is under way and keeps new
    ones out meanwhile.
    """

    def __init__(self) -> None:
        self._claiming = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def claim(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._claiming += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._claiming -= 1
            if not self._claiming:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


class Lane:
    """Delivers one channel's queue."""

    def __init__(
        self,
        channel: Channel,
        config: ChannelConfig,
        db: Database,
        metrics: Metrics,
        scrubber: Scrubber,
        clock: Clock,
        policy: RetryPolicy,
        rng: random.Random,
        claims: GroupCommit[ClaimRequest, Claim],
        finishes: GroupCommit[tuple[str, int, Outcome, datetime], Finished],
        health: HealthBoard,
        gate: ClaimGate,
        lease: Callable[[], Lease],
    ) -> None:
        self.channel = channel
        self.lease = lease
        self.gate = gate
        self.health = health
        self.claims = claims
        self.finishes = finishes
        self.config = config
        self.db = db
        self.metrics = metrics
        self.scrubber = scrubber
        self.clock = clock
        self.policy = policy
        self.rng = rng
        self.wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # Attempts that ended while the ledger did not answer: written when it does.
        self._unrecorded: dict[str, tuple[DueDelivery, int, Outcome, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ledger_failing = False
        # Whether a finished attempt gives the lane something to do: more was due than
        # it could take, or the attempt put its delivery back in the queue (a retry).
        self._waiting_for_slots = False
        self._requeued = False

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lane-{self.name}")

    @property
    def held_ids(self) -> set[str]:
        """Deliveries this lane has under way or still has to record."""
        return set(self._in_flight) | set(self._unrecorded)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._record_unrecorded()
                await self._fill_and_wait()
            except StoreError as exc:
                # The ledger is unavailable (disk full, read-only, server gone): nothing
                # can be marked `sending`, so nothing may be sent. Try again shortly or
                # when woken; say so once, not every second.
                if not self._ledger_failing:
                    event(log, "lane.store_unavailable", logging.ERROR, channel=self.name,
                          error=str(exc))
                self._ledger_failing = True
                await self._sleep(LEDGER_RETRY)
                continue
            if self._ledger_failing:
                self._ledger_failing = False
                event(log, "lane.store_available", channel=self.name)

    async def _record_unrecorded(self) -> None:
        """Write the outcomes kept while the ledger did not answer (StoreError if it
        still does not)."""
        for delivery_id, (delivery, number, outcome, finished) in list(
                self._unrecorded.items()):
            result = await self.finishes.submit((delivery_id, number, outcome, finished))
            del self._unrecorded[delivery_id]
            if not result.written:
                self._discarded(delivery, number, outcome)
                continue
            event(log, "delivery.recorded_late", alert=delivery.alert_id,
                  delivery=delivery_id, channel=self.name, attempt=number,
                  result=outcome.result)
            self._observe(delivery, number, outcome, finished)

    async def _fill_and_wait(self) -> None:
        """Claim what is due while slots and the channel's budget allow, start those
        attempts, then sleep until woken (an accept, a finished attempt, a retry) or
        until the next delivery that waits for a time — or for the budget — falls due."""
        self.wake.clear()
        timeout: float | None = SAFETY_POLL
        free = self.config.max_in_flight - len(self._in_flight)
        if free > 0:
            now = self.clock()
            request = ClaimRequest(self.name, free, max_in_flight=self.config.max_in_flight,
                                   rate=self.config.rate, burst=max(1.0, self.config.rate))
            async with self.gate.claim():
                claim = await self.claims.submit(request)
                for delivery in claim.deliveries:
                    task = asyncio.create_task(self._attempt(delivery),
                                               name=f"attempt-{delivery.id}")
                    self._in_flight[delivery.id] = task
                    task.add_done_callback(functools.partial(self._done, delivery.id))
            if claim.deliveries:
                self.metrics.claims.labels(self.name).inc(len(claim.deliveries))
            self._waiting_for_slots = claim.more_due
            if claim.more_due:
                if claim.held_by == "rate" and claim.budget_at is not None:
                    timeout = max(0.0, (claim.budget_at - now).total_seconds())
                elif claim.held_by == "slots":
                    # Attempts under way on other nodes: their ends do not wake us.
                    timeout = SLOTS_POLL
                else:
                    timeout = None  # our own attempt's end frees the slot and wakes us
            elif claim.next_due is not None:
                timeout = max(0.0, (claim.next_due - now).total_seconds())
        await self._sleep(timeout)

    async def _sleep(self, seconds: float | None) -> None:
        """Until woken, or until ``seconds`` have passed (None: until woken)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    def _done(self, delivery_id: str, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery_id, None)
        # Only then is a claim worth its transaction: a fan-out's hundred lanes would
        # otherwise each claim once more for nothing when their attempt ends.
        if self._waiting_for_slots or self._requeued or self._unrecorded:
            self._requeued = False
            self.wake.set()

    async def _attempt(self, delivery: DueDelivery) -> None:
        """One attempt of a claimed delivery (already `sending` in the ledger)."""
        number = delivery.attempts
        outgoing = Outgoing(
            delivery_id=delivery.id, alert_id=delivery.alert_id, attempt=number,
            kind=delivery.kind, mode=delivery.mode, severity=delivery.severity,
            headline=delivery.headline, text=delivery.text, references=delivery.references,
            reply_to=delivery.reply_to, created_at=delivery.alert_created_at,
        )
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout):
                receipt = await self.channel.send(outgoing)
        except DeliveryError as exc:
            outcome = self._classified(delivery, number, exc, time.monotonic() - began)
        except TimeoutError:
            unknown = OutcomeUnknown(
                f"{self.name}: no answer within {self.config.timeout:g} s; the platform may "
                "have received it"
            )
            outcome = self._classified(delivery, number, unknown, time.monotonic() - began)
        except Exception as exc:  # a bug in a channel or its library: never lose the row
            log.exception("channel %s raised an unclassified error", self.name)
            unknown = OutcomeUnknown(f"{self.name}: unexpected error ({type(exc).__name__})")
            outcome = self._classified(delivery, number, unknown, time.monotonic() - began)
        else:
            outcome = Outcome(result="delivered", state=DeliveryState.DELIVERED,
                              duration=time.monotonic() - began, receipt=receipt)
        finished = self.clock()
        try:
            result = await self.finishes.submit((delivery.id, number, outcome, finished))
        except StoreError as exc:
            # Stays `sending` in the ledger (nobody claims it twice); the outcome is
            # kept here and written when the ledger answers again. Should the daemon
            # stop first, the next start resolves it by the channel's on_unknown policy.
            self._unrecorded[delivery.id] = (delivery, number, outcome, finished)
            event(log, "delivery.unrecorded", logging.ERROR, alert=delivery.alert_id,
                  delivery=delivery.id, channel=self.name, attempt=number,
                  duration=round(outcome.duration, 3), result=outcome.result, error=str(exc),
                  hint="kept in memory; written when the ledger answers again")
            return
        if not result.written:
            self._discarded(delivery, number, outcome)
            return
        if outcome.state is DeliveryState.QUEUED or result.unblocks:
            # The lane must learn when it falls due again, or take the follow-up that
            # waited for this one.
            self._requeued = True
        self._observe(delivery, number, outcome, finished)

    def _discarded(self, delivery: DueDelivery, number: int, outcome: Outcome) -> None:
        """This node lost the lease (frozen or cut off too long) and another node took
        the delivery over: its result stays unwritten, and is said aloud."""
        self.metrics.late_results.labels(self.name).inc()
        event(log, "delivery.late_result_discarded", logging.WARNING, alert=delivery.alert_id,
              delivery=delivery.id, channel=self.name, attempt=number, result=outcome.result,
              hint="another node took this delivery over after the lease ran out")

    def _classified(
        self, delivery: DueDelivery, number: int, exc: DeliveryError, duration: float
    ) -> Outcome:
        message = self.scrubber.scrub(str(exc))
        error_class = type(exc).__name__
        if isinstance(exc, CredentialsRejected):
            self.health.credentials_refused(self.name, message)
        if isinstance(exc, Permanent):
            return Outcome("permanent", DeliveryState.FAILED, duration, error_class, message)
        if isinstance(exc, OutcomeUnknown):
            if self.config.on_unknown == "hold":
                return Outcome("unknown", DeliveryState.UNKNOWN, duration, error_class,
                               message + " — check the channel, then retry or leave it")
            retry_after = None
            result = "unknown"
        else:
            retry_after = exc.retry_after if isinstance(exc, Retryable) else None
            result = "retryable"
        when = next_try(self.policy, number, retry_after, self.clock(), delivery.queued_at,
                        self.config.give_up_after, self.rng)
        if when is None:
            return Outcome(result, DeliveryState.FAILED, duration, error_class,
                           f"gave up after {number} attempt(s) "
                           f"({self.config.give_up_after:g} s): {message}")
        return Outcome(result, DeliveryState.QUEUED, duration, error_class, message,
                       not_before=when)

    def _observe(self, delivery: DueDelivery, number: int, outcome: Outcome,
                 finished: datetime) -> None:
        channel = self.name
        self.metrics.attempts.labels(channel, outcome.result).inc()
        if outcome.state is DeliveryState.DELIVERED:
            self.metrics.deliveries.labels(channel, "delivered").inc()
            latency = (finished - delivery.alert_created_at).total_seconds()
            self.metrics.latency.labels(channel).observe(max(0.0, latency))
            self.health.delivered(channel, finished)
        elif outcome.state in (DeliveryState.FAILED, DeliveryState.UNKNOWN):
            self.metrics.deliveries.labels(channel, outcome.state.value).inc()
        # failed and unknown need a person: warnings (journalctl -p warning shows them)
        level = (logging.WARNING if outcome.state in (DeliveryState.FAILED, DeliveryState.UNKNOWN)
                 else logging.INFO)
        event(log, f"delivery.{outcome.result}", level, alert=delivery.alert_id,
              delivery=delivery.id, channel=channel, attempt=number,
              duration=round(outcome.duration, 3), state=outcome.state.value,
              error=outcome.message or "")

    async def stop(self, grace: float) -> None:
        """Start nothing new; give in-flight attempts ``grace`` seconds, then cancel
        them (they stay `sending` and are recovered at the next start)."""
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._in_flight.values())
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace)
            for task in still_running:
                task.cancel()
            await asyncio.gather(*still_running, return_exceptions=True)
            event(log, "lane.stopped", channel=self.name, finished=len(pending) -
                  len(still_running), interrupted=len(still_running))
        with contextlib.suppress(StoreError):
            await self._record_unrecorded()
        for delivery, number, outcome, _ in self._unrecorded.values():
            event(log, "delivery.unrecorded_at_stop", logging.ERROR, alert=delivery.alert_id,
                  delivery=delivery.id, channel=self.name, attempt=number,
                  result=outcome.result, hint="resolved at the next start by the channel's "
                  "on_unknown policy")


class Dispatcher:
    """All lanes of the daemon; recovery at start, wake-ups after changes."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        configs: Iterable[ChannelConfig],
        db: Database,
        metrics: Metrics,
        scrubber: Scrubber,
        clock: Clock = utcnow,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        health: HealthBoard | None = None,
        node: str = "local",
        lease_seconds: float = 10.0,
    ) -> None:
        self.db = db
        self.node = node
        self.lease_seconds = lease_seconds
        self.configs = {c.name: c for c in configs}
        self.metrics = metrics
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock
        claims: GroupCommit[ClaimRequest, Claim] = GroupCommit(
            db, lambda requests: db.store.claim_many(requests, clock(), self.new_lease()))
        finishes: GroupCommit[tuple[str, int, Outcome, datetime], Finished] = GroupCommit(
            db, lambda items: db.store.finish_many(items, node))
        self.health = health or HealthBoard(channels, metrics)
        self.gate = ClaimGate()
        self.lanes = {
            name: Lane(channel, self.configs[name], db, metrics, scrubber, clock,
                       policy or RetryPolicy(), rng, claims, finishes, self.health, self.gate,
                       self.new_lease)
            for name, channel in channels.items()
        }

    def new_lease(self) -> Lease:
        return Lease(self.node, self.clock() + timedelta(seconds=self.lease_seconds))

    @property
    def under_way(self) -> int:
        return sum(len(lane.held_ids) for lane in self.lanes.values())

    async def start(self) -> list[Recovered]:
        """Resolve what a crash left in `sending` (this node's own earlier run, and
        leases that ran out), then start every lane."""
        recovered = await self.db.run(self.db.store.recover_interrupted, self._unknown_policy,
                                      utcnow(), self.node)
        self._report(recovered)
        for lane in self.lanes.values():
            lane.start()
        return recovered

    def _report(self, recovered: list[Recovered]) -> None:
        for item in recovered:
            event(log, "delivery.recovered", logging.WARNING, alert=item.alert_id,
                  delivery=item.delivery_id, channel=item.channel, attempt=item.attempt,
                  state=item.state.value)
            if item.state is DeliveryState.UNKNOWN:
                self.metrics.deliveries.labels(item.channel, "unknown").inc()

    async def ledger_back(self) -> list[Recovered]:
        """The ledger answers again after an outage: resolve deliveries a lost claim
        left `sending` (not under way here), then wake every lane."""
        async with self.gate.exclusive():
            held = set().union(*(lane.held_ids for lane in self.lanes.values()))
            recovered = await self.db.run(self.db.store.recover_interrupted,
                                          self._unknown_policy, self.clock(), self.node,
                                          held, False)
        self._report(recovered)
        self.notify()
        return recovered

    async def take_over(self) -> list[Recovered]:
        """Resolve deliveries whose node stopped renewing its lease; wake the lanes."""
        taken = await self.db.run(self.db.store.take_over_expired, self._unknown_policy,
                                  self.clock(), self.node)
        for item in taken:
            self.metrics.taken_over.labels(item.channel).inc()
            event(log, "delivery.taken_over", logging.WARNING, alert=item.alert_id,
                  delivery=item.delivery_id, channel=item.channel, attempt=item.attempt,
                  state=item.state.value, from_node=item.node or "")
            if item.state is DeliveryState.UNKNOWN:
                self.metrics.deliveries.labels(item.channel, "unknown").inc()
        if taken:
            self.notify({item.channel for item in taken})
        return taken

    def _unknown_policy(self, channel: str) -> str | None:
        config = self.configs.get(channel)
        return config.on_unknown if config is not None else None

    def notify(self, channels: Iterable[str] | None = None) -> None:
        """Wake the lanes of these channels (all when None)."""
        for name in channels if channels is not None else self.lanes:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        await asyncio.gather(*(lane.stop(grace) for lane in self.lanes.values()))
