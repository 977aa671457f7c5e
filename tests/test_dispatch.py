"""The dispatcher against a real ledger and scriptable channels.

A scripted channel stands in for a platform here (the platform channels have their
own tests against the sandbox): each call to send takes the next step of its
script — deliver, raise a classified error, or hang.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broadcaster import lengths
from broadcaster.channels.base import Channel, ChannelKind, Markup, TextForm, UnknownPolicy
from broadcaster.config import ChannelConfig
from broadcaster.dispatch import Dispatcher
from broadcaster.errors import OutcomeUnknown, Permanent, Retryable
from broadcaster.logs import Scrubber
from broadcaster.metrics import Metrics
from broadcaster.models import (
    AlertKind,
    DeliveryState,
    Mode,
    Outgoing,
    Receipt,
    Severity,
    new_id,
    utcnow,
)
from broadcaster.retry import RetryPolicy
from broadcaster.store import AuditEntry, Database, Ledger, NewAlert, NewDelivery, Outcome
from broadcaster.store.records import ClaimRequest
from tests.conftest import ledger_for
from tests.support import eventually

HANG = "hang"


class ScriptedChannel(Channel):
    """Follows a script per call: a Receipt, an exception instance, or HANG."""

    def __init__(self, config: ChannelConfig, script: Iterable[Any] = ()) -> None:
        super().__init__(config)
        self.script = list(script)
        self.sent: list[Outgoing] = []
        self.calls = 0
        self.started = asyncio.Event()

    async def send(self, outgoing: Outgoing) -> Receipt:
        self.calls += 1
        self.started.set()
        step = self.script.pop(0) if self.script else Receipt(f"r-{outgoing.delivery_id}")
        if step == HANG:
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        self.sent.append(outgoing)
        assert isinstance(step, Receipt)
        return step


def _kind() -> ChannelKind:
    return ChannelKind(
        name="scripted", config_class=object, create=lambda c: ScriptedChannel(c),
        text_form=TextForm.LONG, markup=Markup.PLAIN, limit=None, count=lengths.characters,
        on_unknown=UnknownPolicy.RETRY, rate=1000.0, max_in_flight=4,
    )


ScriptedChannel.kind = _kind()


def channel_config(name: str, **overrides: Any) -> ChannelConfig:
    values: dict[str, Any] = dict(
        name=name, kind="scripted", languages=("de",), exercise=False, timeout=1.0,
        give_up_after=60.0, on_unknown="retry", rate=1000.0, max_in_flight=4, enabled=True,
        health_interval=300.0, settings=None,
    )
    values.update(overrides)
    return ChannelConfig(**values)


@dataclass
class Engine:
    db: Database
    dispatcher: Dispatcher | None = None
    channels: dict[str, ScriptedChannel] = field(default_factory=dict)

    @property
    def store(self) -> Ledger:
        return self.db.store

    async def start(self, *configs: ChannelConfig, scripts: dict[str, list[Any]] | None = None,
                    policy: RetryPolicy | None = None) -> Dispatcher:
        scripts = scripts or {}
        self.channels = {c.name: ScriptedChannel(c, scripts.get(c.name, ())) for c in configs}
        self.dispatcher = Dispatcher(
            self.channels, configs, self.db, Metrics([c.name for c in configs], "test"),
            Scrubber(), policy=policy or RetryPolicy(base=0.01, cap=0.05),
            rng=random.Random(7),
        )
        await self.dispatcher.start()
        return self.dispatcher

    def accept(self, channels: Iterable[str], *, kind: AlertKind = AlertKind.ALERT,
               references: str | None = None) -> NewAlert:
        alert = NewAlert(
            id=new_id(), template="evakuierung", template_sha256="0" * 64, variables={},
            mode=Mode.LIVE, kind=kind, severity=Severity.SEVERE, references=references,
            created_by="duty-1", created_at=utcnow(),
            deliveries=tuple(NewDelivery(new_id(), name, "Kopf", f"Text für {name}")
                             for name in channels),
        )
        self.store.accept_alert(alert, AuditEntry(actor="duty-1", action="alert.send",
                                                  subject=alert.id))
        if self.dispatcher is not None:
            self.dispatcher.notify(alert_channels(alert))
        return alert

    async def states(self, alert: NewAlert) -> dict[str, DeliveryState]:
        found = await self.db.run(self.store.get_alert, alert.id)
        return {d.channel: d.state for d in found.deliveries}

    async def settle(self, alert: NewAlert, timeout: float = 10.0) -> dict[str, DeliveryState]:
        async def final() -> dict[str, DeliveryState] | None:
            states = await self.states(alert)
            return states if all(s.is_final for s in states.values()) else None
        return await eventually(final, timeout, message="every delivery to be final")


def alert_channels(alert: NewAlert) -> list[str]:
    return [d.channel for d in alert.deliveries]


@pytest.fixture
async def engine(ledger_database: Path | str) -> AsyncIterator[Engine]:
    db = Database(ledger_for(ledger_database))
    running = Engine(db)
    yield running
    if running.dispatcher is not None:
        await running.dispatcher.stop(grace=0.1)
    db.close()


async def test_every_channel_gets_its_delivery(engine: Engine) -> None:
    await engine.start(channel_config("a"), channel_config("b"), channel_config("c"))
    alert = engine.accept(["a", "b", "c"])
    states = await engine.settle(alert)
    assert set(states.values()) == {DeliveryState.DELIVERED}
    found = await engine.db.run(engine.store.get_alert, alert.id)
    assert {d.receipt.remote_id for d in found.deliveries if d.receipt} == {
        f"r-{d.id}" for d in alert.deliveries}
    assert engine.channels["a"].sent[0].text == "Text für a"


async def test_retryable_error_backs_off_then_delivers(engine: Engine) -> None:
    await engine.start(channel_config("a"),
                       scripts={"a": [Retryable("a: HTTP 500"), Retryable("a: HTTP 502")]})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.DELIVERED
    attempts = await engine.db.run(engine.store.attempts, alert.deliveries[0].id)
    assert [a.result for a in attempts] == ["retryable", "retryable", "delivered"]
    assert attempts[0].message == "a: HTTP 500"


async def test_retry_after_is_honoured(engine: Engine) -> None:
    await engine.start(channel_config("a"), scripts={"a": [Retryable("429", retry_after=0.6)]})
    alert = engine.accept(["a"])
    await engine.settle(alert)
    attempts = await engine.db.run(engine.store.attempts, alert.deliveries[0].id)
    gap = (attempts[1].started_at - attempts[0].started_at).total_seconds()
    assert gap >= 0.6


async def test_gives_up_after_the_channels_limit(engine: Engine) -> None:
    await engine.start(channel_config("a", give_up_after=0.3),
                       scripts={"a": [Retryable("a: HTTP 503")] * 100})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.FAILED
    delivery = await engine.db.run(engine.store.get_delivery, alert.deliveries[0].id)
    assert delivery.error is not None and delivery.error.startswith("gave up after")
    assert "HTTP 503" in delivery.error


async def test_permanent_error_fails_at_once(engine: Engine) -> None:
    await engine.start(channel_config("a"),
                       scripts={"a": [Permanent("a: token rejected — renew it in channels.toml")]})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.FAILED
    delivery = await engine.db.run(engine.store.get_delivery, alert.deliveries[0].id)
    assert delivery.attempts == 1
    assert delivery.error == "a: token rejected — renew it in channels.toml"


async def test_unknown_outcome_is_held_where_the_platform_cannot_dedupe(engine: Engine) -> None:
    await engine.start(channel_config("a", on_unknown="hold"),
                       scripts={"a": [OutcomeUnknown("a: connection lost")]})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.UNKNOWN
    assert engine.channels["a"].calls == 1


async def test_unknown_outcome_is_retried_where_the_platform_dedupes(engine: Engine) -> None:
    await engine.start(channel_config("a", on_unknown="retry"),
                       scripts={"a": [OutcomeUnknown("a: connection lost")]})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.DELIVERED
    assert engine.channels["a"].calls == 2


async def test_no_answer_within_the_timeout_is_an_unknown_outcome(engine: Engine) -> None:
    await engine.start(channel_config("a", on_unknown="hold", timeout=0.2),
                       scripts={"a": [HANG]})
    alert = engine.accept(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.UNKNOWN
    delivery = await engine.db.run(engine.store.get_delivery, alert.deliveries[0].id)
    assert delivery.error is not None and "no answer within 0.2 s" in delivery.error


async def test_a_hanging_channel_does_not_delay_the_others(engine: Engine) -> None:
    configs = [channel_config("slow", timeout=30.0)] + [channel_config(f"c{i}")
                                                        for i in range(5)]
    await engine.start(*configs, scripts={"slow": [HANG]})
    alert = engine.accept([c.name for c in configs])

    async def others_delivered() -> bool:
        states = await engine.states(alert)
        return all(s is DeliveryState.DELIVERED for name, s in states.items() if name != "slow")
    await eventually(others_delivered, timeout=2.0, message="the other channels")
    assert (await engine.states(alert))["slow"] is DeliveryState.SENDING


async def test_follow_up_waits_for_the_original_and_threads_to_it(engine: Engine) -> None:
    await engine.start(channel_config("a"),
                       scripts={"a": [Retryable("busy", retry_after=0.3)]})
    original = engine.accept(["a"])
    update = engine.accept(["a"], kind=AlertKind.UPDATE, references=original.id)
    await engine.settle(update)
    sent = engine.channels["a"].sent
    assert [o.alert_id for o in sent] == [original.id, update.id]
    assert sent[1].reply_to == Receipt(f"r-{original.deliveries[0].id}")


async def test_allclear_cancels_the_originals_queued_deliveries(engine: Engine) -> None:
    # No dispatcher: the original's deliveries stay queued, as behind a long backoff.
    original = engine.accept(["a", "b"])
    update = engine.accept(["a"], kind=AlertKind.UPDATE, references=original.id)
    engine.accept(["a", "b"], kind=AlertKind.ALLCLEAR, references=update.id)
    assert set((await engine.states(original)).values()) == {DeliveryState.CANCELLED}
    assert set((await engine.states(update)).values()) == {DeliveryState.CANCELLED}
    cancelled = await engine.db.run(engine.store.get_delivery, original.deliveries[0].id)
    assert cancelled.error is not None and "superseded by all-clear" in cancelled.error


async def test_recovery_requeues_or_holds_what_a_crash_left_sending(engine: Engine) -> None:
    alert = engine.accept(["retrying", "holding", "gone"])
    now = utcnow()
    for delivery in alert.deliveries:  # as a crashed daemon left them: claimed, in flight
        claim = engine.store.claim_many([ClaimRequest(delivery.channel, 10)], now)[0]
        assert len(claim.deliveries) == 1
    await engine.start(channel_config("retrying", on_unknown="retry"),
                       channel_config("holding", on_unknown="hold"))
    states = await engine.settle(alert)
    assert states == {"retrying": DeliveryState.DELIVERED, "holding": DeliveryState.UNKNOWN,
                      "gone": DeliveryState.UNKNOWN}
    attempts = await engine.db.run(engine.store.attempts, alert.deliveries[1].id)
    assert attempts[0].result == "interrupted"


async def test_officer_retry_sends_a_failed_delivery_again(engine: Engine) -> None:
    await engine.start(channel_config("a"), scripts={"a": [Permanent("a: rejected")]})
    alert = engine.accept(["a"])
    await engine.settle(alert)
    delivery_id = alert.deliveries[0].id
    await engine.db.run(engine.store.retry_delivery, delivery_id,
                        AuditEntry(actor="duty-2", action="delivery.retry"), utcnow())
    assert engine.dispatcher is not None
    engine.dispatcher.notify(["a"])
    assert (await engine.settle(alert))["a"] is DeliveryState.DELIVERED


async def test_in_flight_limit_is_respected(engine: Engine) -> None:
    await engine.start(channel_config("a", max_in_flight=2, timeout=30.0),
                       scripts={"a": [HANG, HANG, HANG]})
    for _ in range(3):
        engine.accept(["a"])
    await eventually(lambda: _async(engine.channels["a"].calls == 2), message="two calls")
    counts = await engine.db.run(engine.store.delivery_counts)
    assert counts[("a", "sending")] == 2 and counts[("a", "queued")] == 1


async def _async(value: bool) -> bool:
    return value


async def test_messages_beyond_the_burst_wait_for_the_rate(engine: Engine) -> None:
    await engine.start(channel_config("a", rate=4.0, max_in_flight=10))
    alerts = [engine.accept(["a"]) for _ in range(6)]
    for alert in alerts:
        await engine.settle(alert)
    attempts = [await engine.db.run(engine.store.attempts, a.deliveries[0].id) for a in alerts]
    started = sorted(a[0].started_at for a in attempts)
    spread = (started[-1] - started[0]).total_seconds()
    assert spread >= 0.45  # 4 at once, then two more at 4 per second


def test_stale_finish_does_not_overwrite_a_newer_state(ledger: Ledger) -> None:
    store = ledger
    alert = NewAlert(
        id=new_id(), template="t", template_sha256="0" * 64, variables={}, mode=Mode.LIVE,
        kind=AlertKind.ALERT, severity=Severity.MINOR, references=None, created_by="x",
        created_at=utcnow(), deliveries=(NewDelivery(new_id(), "a", "h", "t"),),
    )
    store.accept_alert(alert, AuditEntry(actor="x", action="alert.send"))
    delivery_id = alert.deliveries[0].id
    claimed = store.claim_many([ClaimRequest("a", 5)], utcnow())[0].deliveries
    assert [d.id for d in claimed] == [delivery_id]
    done = Outcome("delivered", DeliveryState.DELIVERED, 0.1, receipt=Receipt("r1"))
    assert store.finish_attempt(delivery_id, 1, done, utcnow())
    late = Outcome("permanent", DeliveryState.FAILED, 0.1, "Permanent", "late")
    assert not store.finish_attempt(delivery_id, 1, late, utcnow() + timedelta(seconds=1))
    assert store.get_delivery(delivery_id).state is DeliveryState.DELIVERED
