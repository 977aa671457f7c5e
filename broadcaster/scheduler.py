"""Time in the daemon: scheduled sends, reminder series, expiry, channel health checks
and housekeeping, run by APScheduler 3 (AsyncIOScheduler) in the daemon's loop.

The ledger is the source of truth. APScheduler keeps its jobs in memory only; at
start every job is rebuilt from the database, so a restart (or a crash) loses
nothing that was scheduled, and an alert whose time passed while the daemon was
down fires at once, marked late. Every job is idempotent: firing a released alert,
repeating an occurrence already repeated (its idempotency key), expiring an expired
alert — each is a no-op the second time.

With several nodes on one ledger, every node schedules every job and looks in the
ledger every ``RESYNC`` seconds for what other nodes accepted, so a scheduled send
or a reminder fires even when the node that took it dies at that moment — and,
the transitions being conditional, fires once. Health checks and retention run
once per interval in the cluster: a node runs one only when it claims the duty in
the ledger, and shares the health it found there for the other nodes to show.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from broadcaster.channels.base import Channel, Health
from broadcaster.config import Config
from broadcaster.dispatch import Dispatcher
from broadcaster.errors import BroadcasterError, ValidationError
from broadcaster.health import HealthBoard
from broadcaster.logs import event
from broadcaster.metrics import Metrics
from broadcaster.models import Alert, AlertKind, Delivery, DeliveryState, new_id
from broadcaster.store import SCHEDULED, AuditEntry, Database, NewAlert, NewDelivery
from broadcaster.store.records import HealthRecord
from broadcaster.timing import Repeat, parse_repeat, reminder_note

log = logging.getLogger("broadcaster.scheduler")

Clock = Callable[[], datetime]
HOUSEKEEPING_EVERY = timedelta(hours=24)
RESYNC = 5.0  # seconds between looks at the ledger for other nodes' schedules
RETENTION_PAUSE = 0.05  # seconds between retention batches
SCHEDULER_ACTOR = "scheduler"
REPEAT_KEY = "repeat:"


def _slot_of(repetition: Alert) -> datetime:
    """The slot a repetition was sent for: its idempotency key ends with it."""
    prefix = f"{REPEAT_KEY}{repetition.repeat_of}:"
    key = repetition.idempotency_key or ""
    if key.startswith(prefix):
        try:
            return datetime.fromisoformat(key.removeprefix(prefix))
        except ValueError:
            pass
    return repetition.created_at


class Timekeeper:
    def __init__(self, config: Config, db: Database, dispatcher: Dispatcher,
                 channels: Mapping[str, Channel], health: HealthBoard, metrics: Metrics,
                 clock: Clock) -> None:
        self.config = config
        self.db = db
        self.dispatcher = dispatcher
        self.channels = channels
        self.health = health
        self.metrics = metrics
        self.clock = clock
        self.node = config.service.node
        self.cluster = db.store.features.several_nodes
        self.zone = ZoneInfo(config.service.timezone)
        self.scheduler = AsyncIOScheduler(timezone=self.zone)

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Rebuild every job from the ledger, then start the clock."""
        self.scheduler.start()
        await self._rebuild()
        if self.cluster:
            self.scheduler.add_job(self._resync, IntervalTrigger(seconds=RESYNC),
                                   id="resync", coalesce=True, max_instances=1,
                                   misfire_grace_time=None)
        for name, channel in self.channels.items():
            self.scheduler.add_job(self._check_health,
                                   IntervalTrigger(seconds=self._health_interval(name)),
                                   args=[name, channel], id=f"health:{name}",
                                   next_run_time=self.clock(), replace_existing=True,
                                   coalesce=True, max_instances=1, misfire_grace_time=None)
        self.scheduler.add_job(self._housekeeping, IntervalTrigger(
            seconds=HOUSEKEEPING_EVERY.total_seconds()), id="housekeeping",
            next_run_time=self.clock() + timedelta(minutes=1), replace_existing=True,
            coalesce=True, max_instances=1, misfire_grace_time=None)

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _rebuild(self) -> None:
        store = self.db.store
        for alert in await self.db.read(store.alerts_held, SCHEDULED):
            if self.scheduler.get_job(f"send:{alert.id}") is None:
                self._schedule_send(alert)
        for alert in await self.db.read(store.series):
            if self.scheduler.get_job(f"repeat:{alert.id}") is None:
                await self._schedule_series(alert)
        for alert in await self.db.read(store.pending_expiries):
            if self.scheduler.get_job(f"expire:{alert.id}") is None:
                self._schedule_expiry(alert)

    async def _resync(self) -> None:
        """What other nodes scheduled since the last look (cheap: partial indexes)."""
        try:
            await self._rebuild()
            await self._shared_health()
        except BroadcasterError as exc:  # the ledger is away: the next look catches up
            event(log, "scheduler.resync_failed", logging.WARNING, error=str(exc))

    async def accepted(self, alert: Alert) -> None:
        """A new or changed alert: schedule what it needs; close series it ends."""
        if alert.hold == SCHEDULED:
            self._schedule_send(alert)
        if alert.repeat is not None:
            await self._schedule_series(alert)
        if alert.expires_at is not None and alert.expired_at is None:
            self._schedule_expiry(alert)
        if alert.kind.supersedes:
            root = await self.db.run(self.db.store.thread_root, alert.id)
            await self._end_series_in(root)

    # -- scheduled sends --------------------------------------------------------

    def _schedule_send(self, alert: Alert) -> None:
        assert alert.send_at is not None
        self.scheduler.add_job(self.fire, DateTrigger(alert.send_at), args=[alert.id],
                               id=f"send:{alert.id}", replace_existing=True,
                               misfire_grace_time=None)

    def cancelled(self, alert_id: str) -> None:
        for prefix in ("send", "repeat", "expire"):
            self._remove(f"{prefix}:{alert_id}")

    async def fire(self, alert_id: str) -> None:
        late = await self.db.run(self.db.store.fire_scheduled, alert_id, self.clock())
        if late is None:
            return
        alert = await self.db.run(self.db.store.get_alert, alert_id)
        self.dispatcher.notify(d.channel for d in alert.deliveries)
        level = logging.WARNING if late > 1.0 else logging.INFO
        event(log, "alert.fired", level, alert=alert_id, late_seconds=f"{late:.3f}")

    # -- reminder series --------------------------------------------------------
    # One occurrence is scheduled at a time, its slot (the time it is due) passed to
    # the job and written into the repetition's idempotency key: a job that runs
    # twice finds the repetition already there, and after a restart the series
    # continues after the last slot sent. Slots missed while the daemon was down
    # are coalesced into one repetition, sent at once.

    def _repeat_of(self, alert: Alert) -> Repeat | None:
        if alert.repeat is None:
            return None
        first = alert.send_at or alert.created_at
        try:
            return parse_repeat(alert.repeat, self.zone, first, minimum=timedelta(0))
        except ValidationError:
            return None

    def _next_slot(self, repeat: Repeat, first: datetime, after: datetime) -> datetime | None:
        """The slot to send next: the first after ``after``, or the latest one already
        due when several were missed."""
        trigger = repeat.trigger(self.zone, first)
        slot = trigger.get_next_fire_time(after, after)
        now = self.clock()
        while slot is not None:
            following = trigger.get_next_fire_time(slot, slot)
            if following is None or following > now:
                break
            slot = following
        return slot  # type: ignore[no-any-return]

    async def _schedule_series(self, alert: Alert, after: datetime | None = None) -> None:
        repeat = self._repeat_of(alert)
        if repeat is None or await self.db.run(self.db.store.thread_closed, alert.id):
            return
        first = alert.send_at or alert.created_at
        if after is None:
            latest = await self.db.run(self.db.store.latest_repetition, alert.id)
            after = _slot_of(latest) if latest is not None else first
        slot = self._next_slot(repeat, first, after)
        if slot is None:
            return
        self.scheduler.add_job(self.repeat, DateTrigger(max(slot, self.clock())),
                               args=[alert.id, slot], id=f"repeat:{alert.id}",
                               replace_existing=True, misfire_grace_time=None)

    async def _end_series_in(self, root: str) -> None:
        """An all-clear or correction ends the thread's reminders and expiry."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith(("repeat:", "expire:")):
                alert_id = job.id.split(":", 1)[1]
                if await self.db.run(self.db.store.thread_root, alert_id) == root:
                    self._remove(job.id)
                    event(log, "series.ended", alert=alert_id, job=job.id.split(":")[0],
                          reason="all-clear or correction")

    async def repeat(self, alert_id: str, slot: datetime) -> None:
        """One repetition: the original's texts as an update, marked and threaded."""
        store = self.db.store
        if await self.db.run(store.thread_closed, alert_id):
            return
        original = await self.db.run(store.get_alert, alert_id)
        sent = [d for d in original.deliveries
                if d.channel in self.channels and d.state is not DeliveryState.CANCELLED]
        if original.hold is None and sent:
            await self._send_repetition(original, sent, slot)
        await self._schedule_series(original, after=slot)

    async def _send_repetition(self, original: Alert, deliveries: list[Delivery],
                               slot: datetime) -> None:
        now = self.clock()
        repetition = NewAlert(
            id=new_id(), template=original.template, template_sha256=original.template_sha256,
            variables=original.variables, mode=original.mode, kind=AlertKind.UPDATE,
            severity=original.severity, references=original.id,
            created_by=SCHEDULER_ACTOR, created_at=now, repeat_of=original.id,
            idempotency_key=f"{REPEAT_KEY}{original.id}:{slot.isoformat()}",
            request_hash=original.id,
            deliveries=tuple(
                NewDelivery(new_id(), d.channel, d.headline,
                            d.text + reminder_note(self._language(d.channel), now, self.zone))
                for d in deliveries
            ),
        )
        entry = AuditEntry(actor=SCHEDULER_ACTOR, action="alert.repeat", subject=repetition.id,
                           details={"repeat_of": original.id, "slot": slot.isoformat()})
        try:
            created_id, created = await self.db.run(self.db.store.accept_alert, repetition,
                                                     entry)
        except BroadcasterError as exc:
            event(log, "series.failed", logging.ERROR, alert=original.id, error=str(exc))
            return
        if created:
            self.metrics.alerts.labels(original.mode.value, AlertKind.UPDATE.value).inc()
            self.dispatcher.notify(d.channel for d in repetition.deliveries)
            event(log, "alert.repeated", alert=created_id, repeat_of=original.id,
                  slot=slot.isoformat())

    def _language(self, channel: str) -> str:
        config = self.config.channel(channel)
        return config.languages[0] if config else self.config.service.default_language

    # -- expiry -------------------------------------------------------------------

    def _schedule_expiry(self, alert: Alert) -> None:
        assert alert.expires_at is not None
        self.scheduler.add_job(self.expire, DateTrigger(alert.expires_at), args=[alert.id],
                               id=f"expire:{alert.id}", replace_existing=True,
                               misfire_grace_time=None)

    async def expire(self, alert_id: str) -> None:
        if await self.db.run(self.db.store.expire_alert, alert_id, self.clock()):
            self.metrics.expired.inc()
            event(log, "alert.expired", logging.WARNING, alert=alert_id,
                  hint="no all-clear was sent; send one or an update")

    # -- channel health -------------------------------------------------------------

    async def _check_health(self, name: str, channel: Channel) -> None:
        interval = timedelta(seconds=self._health_interval(name))
        if self.cluster and not await self.db.run(self.db.store.claim_duty, f"health:{name}",
                                                   self.node, self.clock(), interval):
            await self._shared_health(name)  # another node checked it this round
            return
        result = await check(channel, self.config)
        self.metrics.health_checks.labels(name).inc()
        before = self.health.get(name)
        now = self.clock()
        self.health.checked(name, result, now)
        if self.cluster:
            await self.db.run(self.db.store.record_health, HealthRecord(
                channel=name, up=result.up, credentials_ok=not result.credentials_rejected,
                message=result.message, checked_at=now, node=self.node))
        if before.up != result.up or result.credentials_rejected:
            level = logging.INFO if result.up else logging.ERROR
            event(log, "channel.health", level, channel=name, up=result.up,
                  message=result.message)

    def _health_interval(self, name: str) -> float:
        config = self.config.channel(name)
        return config.health_interval if config else 300.0

    async def _shared_health(self, only: str | None = None) -> None:
        """Take over the health other nodes found (newer than what this node knows)."""
        for record in await self.db.read(self.db.store.channel_health):
            if only is not None and record.channel != only:
                continue
            if record.channel not in self.channels:
                continue
            known = self.health.get(record.channel).checked_at
            if known is None or record.checked_at > known:
                self.health.checked(record.channel, Health(
                    record.up, record.message, credentials_rejected=not record.credentials_ok),
                    record.checked_at)

    # -- housekeeping ------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        now = self.clock()
        if self.cluster and not await self.db.run(self.db.store.claim_duty, "retention",
                                                   self.node, now, HOUSEKEEPING_EVERY):
            return  # another node ran it this round
        cutoff = now - timedelta(days=self.config.service.retention_days)
        pruned = 0
        # Batch by batch, each its own transaction: accepts and claims queue up
        # between them, so a pass over a large ledger never holds up an alert.
        while True:
            started = time.monotonic()
            batch = await self.db.run(self.db.store.apply_retention, cutoff, now)
            if not batch:
                break
            pruned += batch
            # Retention is never urgent: it takes at most a third of the ledger's time,
            # so the disk writes each batch out while accepts and claims go first.
            await asyncio.sleep(max(RETENTION_PAUSE, 2 * (time.monotonic() - started)))
        if pruned:
            event(log, "housekeeping.retention", alerts=pruned, before=cutoff.isoformat())

    def _remove(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)


async def check(channel: Channel, config: Config) -> Health:
    """One health check with the channel's timeout; never raises."""
    channel_config = config.channel(channel.name)
    timeout = channel_config.timeout if channel_config else 10.0
    try:
        async with asyncio.timeout(timeout):
            return await channel.check_health()
    except TimeoutError:
        return Health(up=False, message=f"no answer within {timeout:g} s")
    except Exception as exc:  # a check must never take the scheduler down
        return Health(up=False, message=f"check failed ({type(exc).__name__})")

