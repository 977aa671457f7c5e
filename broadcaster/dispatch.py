"""The fan-out engine: one lane per channel, retries, and recovery after a crash.

Each lane is a task that sleeps on an event (woken when an alert is accepted, an
attempt ends or an officer retries) or until the next retry falls due; it never
polls. It starts an attempt for each due delivery while it has in-flight slots
and its rate limiter allows, so a slow, hanging or failing channel only ever holds
up its own lane.

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
from datetime import datetime

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

log = logging.getLogger("broadcaster.dispatch")

Clock = Callable[[], datetime]
LEDGER_RETRY = 1.0  # seconds between a lane's tries while the ledger does not answer


class RateLimiter:
    """A token bucket: ``rate`` messages per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def available(self) -> int:
        """Whole messages that may go right now."""
        self._refill()
        return int(self._tokens)

    def take(self) -> None:
        self._refill()
        self._tokens -= 1

    def wait(self) -> float:
        """Seconds until the next whole message may go."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)


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
        claims: GroupCommit[tuple[str, int], Claim],
        finishes: GroupCommit[tuple[str, int, Outcome, datetime], bool],
        health: HealthBoard,
        gate: ClaimGate,
    ) -> None:
        self.channel = channel
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
        self.limiter = RateLimiter(config.rate)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # Attempts that ended while the ledger did not answer: written when it does.
        self._unrecorded: dict[str, tuple[DueDelivery, int, Outcome, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ledger_failing = False

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
            await self.finishes.submit((delivery_id, number, outcome, finished))
            del self._unrecorded[delivery_id]
            event(log, "delivery.recorded_late", alert=delivery.alert_id,
                  delivery=delivery_id, channel=self.name, attempt=number,
                  result=outcome.result)
            self._observe(delivery, number, outcome, finished)

    async def _fill_and_wait(self) -> None:
        """Claim what is due while slots and the rate allow, start those attempts, then
        sleep until woken (an accept, a finished attempt, a retry) or until the next
        delivery that waits for a time — or for the rate limiter — falls due."""
        self.wake.clear()
        timeout: float | None = None
        free = self.config.max_in_flight - len(self._in_flight)
        if free > 0:
            now = self.clock()
            want = min(free, self.limiter.available())
            async with self.gate.claim():
                claim = await self.claims.submit((self.name, want))
                for delivery in claim.deliveries:
                    self.limiter.take()
                    task = asyncio.create_task(self._attempt(delivery),
                                               name=f"attempt-{delivery.id}")
                    self._in_flight[delivery.id] = task
                    task.add_done_callback(functools.partial(self._done, delivery.id))
            if claim.more_due:
                if len(self._in_flight) < self.config.max_in_flight:
                    timeout = self.limiter.wait()
                # else: a finishing attempt frees a slot and wakes the lane
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
            await self.finishes.submit((delivery.id, number, outcome, finished))
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
        self._observe(delivery, number, outcome, finished)

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
    ) -> None:
        self.db = db
        self.configs = {c.name: c for c in configs}
        self.metrics = metrics
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock
        claims: GroupCommit[tuple[str, int], Claim] = GroupCommit(
            db, lambda requests: db.store.claim_many(requests, clock()))
        finishes: GroupCommit[tuple[str, int, Outcome, datetime], bool] = GroupCommit(
            db, db.store.finish_many)
        self.health = health or HealthBoard(channels, metrics)
        self.gate = ClaimGate()
        self.lanes = {
            name: Lane(channel, self.configs[name], db, metrics, scrubber, clock,
                       policy or RetryPolicy(), rng, claims, finishes, self.health, self.gate)
            for name, channel in channels.items()
        }

    async def start(self) -> list[Recovered]:
        """Resolve what a crash left in `sending`, then start every lane."""
        recovered = await self.db.run(self.db.store.recover_interrupted, self._unknown_policy,
                                      utcnow())
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
                                          self._unknown_policy, self.clock(), held)
        self._report(recovered)
        self.notify()
        return recovered

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
