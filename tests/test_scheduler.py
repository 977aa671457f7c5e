"""The Timekeeper in-process: reminder series, idempotent jobs, missed slots, expiry and
retention, against a real ledger and dispatcher with scripted channels.

Series here repeat every second: the API refuses anything under a minute, but the
timekeeper itself has no lower bound, so the series logic is tested in seconds
instead of hours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from broadcaster.config import load_config
from broadcaster.models import AlertKind, DeliveryState, Mode, Receipt, Severity, new_id, utcnow
from broadcaster.scheduler import Timekeeper
from broadcaster.store import AuditEntry, Database, Ledger, NewAlert, NewDelivery
from broadcaster.store.records import ClaimRequest
from tests.conftest import ledger_for
from tests.support import eventually, write_config
from tests.test_dispatch import Engine, channel_config

EVERY_SECOND = {"every": "PT1S", "until": "allclear"}


@dataclasses.dataclass
class Clocked:
    engine: Engine
    timekeeper: Timekeeper


@pytest.fixture
async def clocked(tmp_path: Path, ledger_database: Path | str) -> AsyncIterator[Clocked]:
    db = Database(ledger_for(ledger_database))
    engine = Engine(db)
    configs = (channel_config("a"), channel_config("b", languages=("en",)))
    dispatcher = await engine.start(*configs)
    config = dataclasses.replace(load_config(write_config(tmp_path, "")), channels=configs)
    timekeeper = Timekeeper(config, db, dispatcher, engine.channels, dispatcher.health,
                            dispatcher.metrics, utcnow)
    await timekeeper.start()
    yield Clocked(engine, timekeeper)
    await timekeeper.stop()
    await dispatcher.stop(grace=0.1)
    db.close()


def _alert(channels: list[str], *, repeat: dict[str, str] | None = None,
           kind: AlertKind = AlertKind.ALERT, references: str | None = None,
           created_ago: float = 0.0, expires_in: float | None = None) -> NewAlert:
    now = utcnow() - timedelta(seconds=created_ago)
    return NewAlert(
        id=new_id(), template="abkochgebot", template_sha256="0" * 64, variables={},
        mode=Mode.LIVE, kind=kind, severity=Severity.MODERATE, references=references,
        created_by="duty-1", created_at=now, repeat=repeat,
        expires_at=utcnow() + timedelta(seconds=expires_in) if expires_in else None,
        deliveries=tuple(NewDelivery(new_id(), name, "Abkochgebot", f"Wasser abkochen ({name})")
                         for name in channels),
    )


async def _accept(clocked: Clocked, alert: NewAlert) -> None:
    db = clocked.engine.db
    await db.run(db.store.accept_alert, alert, AuditEntry(actor="duty-1", action="alert.send"))
    assert clocked.engine.dispatcher is not None
    clocked.engine.dispatcher.notify(d.channel for d in alert.deliveries)
    await clocked.timekeeper.accepted(await db.run(db.store.get_alert, alert.id))


async def _repetitions(clocked: Clocked, alert_id: str) -> list[str]:
    db = clocked.engine.db
    alerts = await db.run(db.store.list_alerts, 500)
    return [a.id for a in alerts if a.repeat_of == alert_id]


async def test_a_series_repeats_as_threaded_marked_updates_until_the_allclear(
        clocked: Clocked) -> None:
    original = _alert(["a", "b"], repeat=EVERY_SECOND)
    await _accept(clocked, original)

    async def two() -> list[str] | None:
        found = await _repetitions(clocked, original.id)
        return found if len(found) >= 2 else None
    repetitions = await eventually(two, timeout=8, message="two repetitions")

    db = clocked.engine.db
    first = await db.run(db.store.get_alert, repetitions[-1])
    assert first.kind is AlertKind.UPDATE and first.references == original.id
    texts = {d.channel: d.text for d in first.deliveries}
    assert texts["a"].startswith("Wasser abkochen (a)\n\nErinnerung – Stand ")
    assert texts["b"].startswith("Wasser abkochen (b)\n\nReminder – as of ")
    await clocked.engine.settle(original)
    await eventually(lambda: _delivered(clocked, first.id), message="the repetition sent")
    sent = [o for o in clocked.engine.channels["a"].sent if o.alert_id == first.id]
    assert sent[0].reply_to == Receipt(f"r-{original.deliveries[0].id}")

    allclear = _alert(["a", "b"], kind=AlertKind.ALLCLEAR, references=original.id)
    await _accept(clocked, allclear)
    assert clocked.timekeeper.scheduler.get_job(f"repeat:{original.id}") is None
    count = len(await _repetitions(clocked, original.id))
    await clocked.timekeeper.repeat(original.id, utcnow())  # a late job after the all-clear
    assert len(await _repetitions(clocked, original.id)) == count


async def _delivered(clocked: Clocked, alert_id: str) -> bool:
    db = clocked.engine.db
    alert = await db.run(db.store.get_alert, alert_id)
    return all(d.state is DeliveryState.DELIVERED for d in alert.deliveries)


async def test_a_repetition_job_that_runs_twice_sends_once(clocked: Clocked) -> None:
    original = _alert(["a"], repeat={"every": "PT1H", "until": "allclear"})
    await _accept(clocked, original)
    await clocked.engine.settle(original)
    slot = utcnow().replace(microsecond=0)
    await clocked.timekeeper.repeat(original.id, slot)
    await clocked.timekeeper.repeat(original.id, slot)
    assert len(await _repetitions(clocked, original.id)) == 1


async def test_slots_missed_while_down_are_sent_once_at_start(tmp_path: Path,
                                                              clocked: Clocked) -> None:
    # Created five seconds "ago" with a series every second: five slots have passed.
    original = _alert(["a"], repeat=EVERY_SECOND, created_ago=5)
    db = clocked.engine.db
    await db.run(db.store.accept_alert, original, AuditEntry(actor="duty-1", action="x"))
    assert clocked.engine.dispatcher is not None
    clocked.engine.dispatcher.notify(["a"])
    await clocked.engine.settle(original)
    await clocked.timekeeper.stop()
    restarted = Timekeeper(clocked.timekeeper.config, db, clocked.engine.dispatcher,
                           clocked.engine.channels, clocked.engine.dispatcher.health,
                           clocked.engine.dispatcher.metrics, utcnow)
    await restarted.start()
    try:
        async def caught_up() -> list[str] | None:
            found = await _repetitions(clocked, original.id)
            return found or None
        found = await eventually(caught_up, timeout=3, message="the missed repetition")
        assert len(found) == 1  # one for all the missed slots, not five
    finally:
        await restarted.stop()


async def test_an_alert_expires_without_an_allclear_and_is_counted(clocked: Clocked) -> None:
    lapsed = _alert(["a"], expires_in=0.3)
    answered = _alert(["a"], expires_in=0.3)
    await _accept(clocked, lapsed)
    await _accept(clocked, answered)
    await _accept(clocked, _alert(["a"], kind=AlertKind.ALLCLEAR, references=answered.id))
    db = clocked.engine.db

    async def expired() -> bool:
        return (await db.run(db.store.get_alert, lapsed.id)).expired_at is not None
    await eventually(expired, timeout=5, message="the expiry")
    assert (await db.run(db.store.get_alert, answered.id)).expired_at is None
    assert clocked.timekeeper.metrics.expired._value.get() == 1
    await clocked.timekeeper.expire(lapsed.id)  # the job again: no second count
    assert clocked.timekeeper.metrics.expired._value.get() == 1


async def test_firing_a_scheduled_alert_twice_releases_it_once(clocked: Clocked) -> None:
    db = clocked.engine.db
    scheduled = dataclasses.replace(_alert(["a"]), hold="scheduled",
                                    send_at=utcnow() + timedelta(hours=1))
    await db.run(db.store.accept_alert, scheduled, AuditEntry(actor="duty-1", action="x"))
    first = await db.run(db.store.fire_scheduled, scheduled.id, utcnow())
    second = await db.run(db.store.fire_scheduled, scheduled.id, utcnow())
    assert first == 0.0 and second is None
    fired = [e for e in await db.run(db.store.audit_events) if e.action == "alert.fired"]
    assert len(fired) == 1


def test_retention_removes_texts_and_attempts_and_keeps_the_audit_chain(
        ledger: Ledger) -> None:
    store = ledger
    old = _alert(["a"])
    store.accept_alert(old, AuditEntry(actor="duty-1", action="alert.send"))
    claim = store.claim_many([ClaimRequest("a", 5)], utcnow())[0]
    from broadcaster.store import Outcome
    store.finish_attempt(claim.deliveries[0].id, 1, Outcome(
        "delivered", DeliveryState.DELIVERED, 0.1, receipt=Receipt("r1")), utcnow())
    waiting = _alert(["b"])  # still queued: kept whole
    store.accept_alert(waiting, AuditEntry(actor="duty-1", action="alert.send"))

    pruned = store.apply_retention(utcnow() + timedelta(seconds=1), utcnow())

    assert pruned == 1
    kept = store.get_alert(old.id)
    assert kept.pruned_at is not None and kept.variables == {}
    assert kept.deliveries[0].text == "" and kept.deliveries[0].receipt == Receipt("r1")
    assert kept.deliveries[0].state is DeliveryState.DELIVERED
    assert store.attempts(old.deliveries[0].id) == []
    assert store.get_alert(waiting.id).deliveries[0].text != ""
    assert store.verify_audit() is None
    assert store.audit_events(limit=1)[0].action == "housekeeping.retention"
    assert store.apply_retention(utcnow() + timedelta(seconds=1), utcnow()) == 0
