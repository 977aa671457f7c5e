"""The ledger contract, run against both backends (SQLite and a real PostgreSQL).

Every transition the engine, API, console, scheduler and CLI rely on, with the
guarantees that make them safe: one transaction each, audited, idempotent where a
job may run twice, refusing what contradicts the current state.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

import pytest

from broadcaster.errors import Conflict, NotFound
from broadcaster.models import (
    AlertKind,
    AlertState,
    DeliveryState,
    Mode,
    Receipt,
    Severity,
    new_id,
    utcnow,
)
from broadcaster.store import SCHEDULED, AuditEntry, Ledger, NewAlert, NewDelivery, Outcome, User
from broadcaster.store.records import ClaimRequest, Lease

ENTRY = AuditEntry(actor="duty-1", action="alert.send", address="127.0.0.1")


def _alert(channels: list[str], **changes: object) -> NewAlert:
    alert = NewAlert(
        id=new_id(), template="evakuierung", template_sha256="0" * 64,
        variables={"area": "Oberwerth ä 🚨"}, mode=Mode.LIVE, kind=AlertKind.ALERT,
        severity=Severity.SEVERE, references=None, created_by="duty-1", created_at=utcnow(),
        deliveries=tuple(NewDelivery(new_id(), c, "Kopf", f"Text für {c}") for c in channels),
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


def _deliver(ledger: Ledger, channel: str, remote: str = "r1") -> str:
    claim = ledger.claim_many([ClaimRequest(channel, 1)], utcnow())[0]
    delivery = claim.deliveries[0]
    done = Outcome("delivered", DeliveryState.DELIVERED, 0.1, receipt=Receipt(remote, None,
                                                                               {"cid": "x"}))
    assert ledger.finish_attempt(delivery.id, delivery.attempts, done, utcnow())
    return delivery.id


def test_an_accepted_alert_reads_back_exactly(ledger: Ledger) -> None:
    alert = _alert(["a", "b"], send_at=None, expires_at=utcnow() + timedelta(hours=1))
    assert ledger.accept_alert(alert, ENTRY) == (alert.id, True)
    found = ledger.get_alert(alert.id)
    assert found == replace(alert.as_accepted(), expires_at=found.expires_at)
    assert found.expires_at == alert.expires_at
    assert found.variables == {"area": "Oberwerth ä 🚨"}
    assert found.state is AlertState.DELIVERING
    assert ledger.audit_events(limit=1)[0].action == "alert.send"


def test_claims_take_the_queue_in_order_up_to_the_limit(ledger: Ledger) -> None:
    alerts = [_alert(["a"]) for _ in range(5)]
    for alert in alerts:
        ledger.accept_alert(alert, ENTRY)
    first, other = ledger.claim_many([ClaimRequest("a", 2), ClaimRequest("b", 3)], utcnow())
    assert [d.alert_id for d in first.deliveries] == [a.id for a in alerts[:2]]
    assert first.more_due and not other.deliveries and not other.more_due
    assert all(d.attempts == 1 for d in first.deliveries)
    rest = ledger.claim_many([ClaimRequest("a", 10)], utcnow())[0]
    assert [d.alert_id for d in rest.deliveries] == [a.id for a in alerts[2:]]
    assert not rest.more_due
    assert ledger.claim_many([ClaimRequest("a", 10)], utcnow())[0].deliveries == []


def test_a_retry_waits_for_its_time_and_the_claim_says_when(ledger: Ledger) -> None:
    ledger.accept_alert(_alert(["a"]), ENTRY)
    delivery = ledger.claim_many([ClaimRequest("a", 1)], utcnow())[0].deliveries[0]
    later = utcnow() + timedelta(seconds=30)
    ledger.finish_attempt(delivery.id, 1, Outcome("retryable", DeliveryState.QUEUED, 0.1,
                                                  "Retryable", "503", not_before=later), utcnow())
    claim = ledger.claim_many([ClaimRequest("a", 1)], utcnow())[0]
    assert claim.deliveries == [] and claim.next_due == later
    again = ledger.claim_many([ClaimRequest("a", 1)], later)[0].deliveries
    assert [d.attempts for d in again] == [2]
    assert [a.result for a in ledger.attempts(delivery.id)] == ["retryable", "sending"]


def test_a_follow_up_waits_for_its_original_and_replies_to_its_receipt(ledger: Ledger) -> None:
    original = _alert(["a"])
    ledger.accept_alert(original, ENTRY)
    update = _alert(["a"], kind=AlertKind.UPDATE, references=original.id)
    ledger.accept_alert(update, ENTRY)
    taken = ledger.claim_many([ClaimRequest("a", 10)], utcnow())[0].deliveries
    assert [d.alert_id for d in taken] == [original.id]  # the update waits its turn
    done = Outcome("delivered", DeliveryState.DELIVERED, 0.1, receipt=Receipt("r1", "u", {}))
    ledger.finish_attempt(taken[0].id, 1, done, utcnow())
    follow = ledger.claim_many([ClaimRequest("a", 10)], utcnow())[0].deliveries
    assert [d.alert_id for d in follow] == [update.id]
    assert follow[0].reply_to == Receipt("r1", "u", {})


def test_an_allclear_cancels_what_is_still_queued_in_the_thread(ledger: Ledger) -> None:
    original = _alert(["a", "b"])
    ledger.accept_alert(original, ENTRY)
    _deliver(ledger, "a")
    allclear = _alert(["a", "b"], kind=AlertKind.ALLCLEAR, references=original.id)
    ledger.accept_alert(allclear, ENTRY)
    states = {d.channel: d.state for d in ledger.get_alert(original.id).deliveries}
    assert states == {"a": DeliveryState.DELIVERED, "b": DeliveryState.CANCELLED}
    assert ledger.thread_closed(original.id) and ledger.thread_root(allclear.id) == original.id


def test_a_follow_up_of_an_unknown_alert_is_refused(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        ledger.accept_alert(_alert(["a"], kind=AlertKind.UPDATE, references=new_id()), ENTRY)
    assert ledger.list_alerts() == []


def test_an_idempotency_key_gives_the_first_alert_and_refuses_another_body(
        ledger: Ledger) -> None:
    first = _alert(["a"], idempotency_key="k1", request_hash="h1")
    assert ledger.accept_alert(first, ENTRY) == (first.id, True)
    repeat = _alert(["a"], idempotency_key="k1", request_hash="h1")
    assert ledger.accept_alert(repeat, ENTRY) == (first.id, False)
    with pytest.raises(Conflict):
        ledger.accept_alert(_alert(["a"], idempotency_key="k1", request_hash="h2"), ENTRY)
    other_user = _alert(["a"], idempotency_key="k1", request_hash="h1", created_by="duty-2")
    assert ledger.accept_alert(other_user, ENTRY) == (other_user.id, True)
    assert len(ledger.list_alerts()) == 2


def test_a_stale_or_repeated_finish_changes_nothing(ledger: Ledger) -> None:
    ledger.accept_alert(_alert(["a"]), ENTRY)
    delivery_id = _deliver(ledger, "a")
    late = Outcome("permanent", DeliveryState.FAILED, 0.1, "Permanent", "late")
    assert not ledger.finish_attempt(delivery_id, 1, late, utcnow())
    assert ledger.get_delivery(delivery_id).state is DeliveryState.DELIVERED


def test_recovery_requeues_or_holds_by_policy_and_keeps_what_is_under_way(
        ledger: Ledger) -> None:
    ledger.accept_alert(_alert(["retry", "hold", "busy"]), ENTRY)
    claims = ledger.claim_many([ClaimRequest(c, 1) for c in ("retry", "hold", "busy")], utcnow())
    busy = claims[2].deliveries[0].id
    recovered = ledger.recover_interrupted(
        lambda channel: "retry" if channel == "retry" else "hold", utcnow(), keep={busy})
    assert {r.channel: r.state for r in recovered} == {
        "retry": DeliveryState.QUEUED, "hold": DeliveryState.UNKNOWN}
    assert ledger.get_delivery(busy).state is DeliveryState.SENDING
    assert [a.result for a in ledger.attempts(claims[0].deliveries[0].id)] == ["interrupted"]


def test_an_officer_retries_only_failed_or_unknown_deliveries(ledger: Ledger) -> None:
    ledger.accept_alert(_alert(["a"]), ENTRY)
    delivery_id = _deliver(ledger, "a")
    with pytest.raises(Conflict):
        ledger.retry_delivery(delivery_id, ENTRY, utcnow())
    with pytest.raises(NotFound):
        ledger.retry_delivery(new_id(), ENTRY, utcnow())
    ledger.accept_alert(_alert(["b"]), ENTRY)
    claimed = ledger.claim_many([ClaimRequest("b", 1)], utcnow())[0].deliveries[0]
    ledger.finish_attempt(claimed.id, 1, Outcome("permanent", DeliveryState.FAILED, 0.1),
                          utcnow())
    assert ledger.retry_delivery(claimed.id, ENTRY, utcnow()).state is DeliveryState.QUEUED


def test_a_held_alert_is_released_once_and_a_scheduled_one_fires_once(ledger: Ledger) -> None:
    held = _alert(["a"], hold="awaiting_approval")
    ledger.accept_alert(held, ENTRY)
    assert ledger.claim_many([ClaimRequest("a", 5)], utcnow())[0].deliveries == []
    assert ledger.release_hold(held.id, "awaiting_approval", ENTRY, utcnow()).hold is None
    with pytest.raises(Conflict):
        ledger.release_hold(held.id, "awaiting_approval", ENTRY, utcnow())
    send_at = utcnow() - timedelta(seconds=2)
    scheduled = _alert(["b"], hold=SCHEDULED, send_at=send_at)
    ledger.accept_alert(scheduled, ENTRY)
    assert [a.id for a in ledger.alerts_held(SCHEDULED)] == [scheduled.id]
    late = ledger.fire_scheduled(scheduled.id, utcnow())
    assert late is not None and late >= 2
    assert ledger.fire_scheduled(scheduled.id, utcnow()) is None
    assert ledger.alerts_held(SCHEDULED) == []


def test_only_a_waiting_alert_can_be_withdrawn(ledger: Ledger) -> None:
    scheduled = _alert(["a"], hold=SCHEDULED, send_at=utcnow() + timedelta(hours=1))
    ledger.accept_alert(scheduled, ENTRY)
    assert ledger.cancel_alert(scheduled.id, ENTRY, utcnow()).state is AlertState.CANCELLED
    going = _alert(["a"])
    ledger.accept_alert(going, ENTRY)
    with pytest.raises(Conflict):
        ledger.cancel_alert(going.id, ENTRY, utcnow())


def test_expiry_marks_once_and_never_a_closed_thread(ledger: Ledger) -> None:
    past = utcnow() - timedelta(minutes=1)
    lapsed, closed = _alert(["a"], expires_at=past), _alert(["a"], expires_at=past)
    for alert in (lapsed, closed):
        ledger.accept_alert(alert, ENTRY)
    ledger.accept_alert(_alert(["a"], kind=AlertKind.ALLCLEAR, references=closed.id), ENTRY)
    assert {a.id for a in ledger.pending_expiries()} == {lapsed.id, closed.id}
    assert ledger.expire_alert(lapsed.id, utcnow()) and not ledger.expire_alert(
        lapsed.id, utcnow())
    assert not ledger.expire_alert(closed.id, utcnow())


def test_retention_works_in_batches_and_keeps_the_chain(ledger: Ledger) -> None:
    for _ in range(5):
        ledger.accept_alert(_alert(["a"]), ENTRY)
        _deliver(ledger, "a")
    cutoff = utcnow() + timedelta(seconds=1)
    assert ledger.apply_retention(cutoff, utcnow(), batch=2) == 2
    assert ledger.apply_retention(cutoff, utcnow(), batch=2) == 2
    assert ledger.apply_retention(cutoff, utcnow(), batch=2) == 1
    assert ledger.apply_retention(cutoff, utcnow(), batch=2) == 0
    assert all(a.pruned_at is not None and a.variables == {} for a in ledger.list_alerts())
    assert ledger.verify_audit() is None


def test_the_list_pages_newest_first_and_filters_by_state(ledger: Ledger) -> None:
    alerts = [_alert(["a"]) for _ in range(7)]
    for alert in alerts:
        ledger.accept_alert(alert, ENTRY)
    first = ledger.list_alerts(limit=3)
    assert [a.id for a in first] == [a.id for a in reversed(alerts)][:3]
    second = ledger.list_alerts(limit=3, before=first[-1].id)
    assert [a.id for a in second] == [a.id for a in reversed(alerts)][3:6]
    _deliver(ledger, "a")
    delivered = ledger.list_alerts(state=AlertState.DELIVERED)
    assert [a.id for a in delivered] == [alerts[0].id]
    assert ledger.delivery_counts() == {("a", "delivered"): 1, ("a", "queued"): 6}


def test_users_sessions_and_the_login_throttle(ledger: Ledger) -> None:
    now = utcnow()
    user = User(id=new_id(), name="anna", role="officer", token_hash="t", password_hash="p",
                disabled=False, created_at=now)
    ledger.add_user(user, AuditEntry(actor="it-1", action="user.add", subject="anna"))
    with pytest.raises(Conflict):
        ledger.add_user(replace(user, id=new_id()), ENTRY)
    assert ledger.find_user("anna") == user and ledger.get_user(user.id) == user
    ledger.open_session("s1", user.id, now, now + timedelta(minutes=30), ENTRY)
    session = ledger.find_session("s1", now)
    assert session is not None and session.user == user
    assert ledger.find_session("s1", now + timedelta(hours=1)) is None
    limits = [("account:anna", 3)]
    window, lockout = timedelta(minutes=15), timedelta(minutes=15)
    assert ledger.record_login_failure(limits, ENTRY, now, window, lockout) is None
    assert ledger.record_login_failure(limits, ENTRY, now, window, lockout) is None
    locked = ledger.record_login_failure(limits, ENTRY, now, window, lockout)
    assert locked == now + lockout
    assert ledger.login_locked_until(["account:anna"], now) == locked
    ledger.set_password("anna", "p2", ENTRY, now)
    assert ledger.find_session("s1", now) is None  # a new password ends every session
    ledger.set_user_disabled("anna", True, ENTRY, now)
    disabled = ledger.find_user("anna")
    assert disabled is not None and disabled.disabled
    assert ledger.verify_audit() is None


def test_the_audit_chain_links_every_event(ledger: Ledger) -> None:
    for number in range(5):
        ledger.record_audit(AuditEntry(actor=f"p{number}", action="template.approve",
                                       details={"sha256": "ä" * number}), utcnow())
    events = ledger.audit_events()
    assert [e.seq for e in events] == [5, 4, 3, 2, 1]
    assert all(newer.prev_hash == older.hash for newer, older in pairwise(events))
    assert ledger.verify_audit() is None


def test_the_ledger_takes_a_write_and_knows_its_schema(ledger: Ledger) -> None:
    ledger.check_writable(utcnow())
    assert ledger.schema_version == 5
    assert ledger.table_counts()["alerts"] == 0


def test_a_channel_s_rate_budget_and_in_flight_limit_hold_across_claims(
        ledger: Ledger) -> None:
    for _ in range(6):
        ledger.accept_alert(_alert(["a"]), ENTRY)
    now = utcnow()
    rate = ClaimRequest("a", 10, max_in_flight=3, rate=2.0, burst=2.0)
    first = ledger.claim_many([rate], now)[0]
    assert len(first.deliveries) == 2 and first.held_by == "rate"  # the burst
    assert first.budget_at is not None
    assert abs((first.budget_at - now).total_seconds() - 0.5) < 0.01
    assert ledger.claim_many([rate], now)[0].deliveries == []  # another node, same moment
    later = ledger.claim_many([rate], now + timedelta(seconds=0.5))[0]
    assert len(later.deliveries) == 1  # one token back: 3 under way, the in-flight limit
    full = ledger.claim_many([rate], now + timedelta(seconds=5))[0]
    assert full.deliveries == [] and full.held_by == "slots"


def test_a_lease_decides_who_may_write_and_expired_ones_are_taken_over(
        ledger: Ledger) -> None:
    ledger.accept_alert(_alert(["a", "b"]), ENTRY)
    now = utcnow()
    lease = Lease("node-1", now + timedelta(seconds=10))
    claims = ledger.claim_many([ClaimRequest("a", 1), ClaimRequest("b", 1)], now, lease)
    mine, lapsing = claims[0].deliveries[0], claims[1].deliveries[0]
    done = Outcome("delivered", DeliveryState.DELIVERED, 0.1, receipt=Receipt("r1"))
    assert not ledger.finish_attempt(mine.id, 1, done, now, node="node-2")  # not its lease
    assert ledger.finish_attempt(mine.id, 1, done, now, node="node-1")
    assert ledger.heartbeat("node-1", "run-1", now, now + timedelta(seconds=10)) is None
    ledger.register_node("node-1", "run-1", "test", None, now, timedelta(seconds=10))
    assert ledger.heartbeat("node-1", "run-1", now, now + timedelta(seconds=10)) == 1
    assert ledger.take_over_expired(lambda c: "retry", now + timedelta(seconds=5),
                                    "node-2") == []
    taken = ledger.take_over_expired(lambda c: "hold", now + timedelta(seconds=11), "node-2")
    assert [(t.delivery_id, t.state, t.node) for t in taken] == [
        (lapsing.id, DeliveryState.UNKNOWN, "node-1")]
    assert "taken over by node node-2" in (ledger.get_delivery(lapsing.id).error or "")
    assert not ledger.finish_attempt(lapsing.id, 1, done, now, node="node-1")  # too late


def test_a_duty_runs_once_per_interval_and_a_name_runs_once(ledger: Ledger) -> None:
    now, every = utcnow(), timedelta(seconds=60)
    assert ledger.claim_duty("retention", "node-1", now, every)
    assert not ledger.claim_duty("retention", "node-2", now + timedelta(seconds=1), every)
    assert ledger.claim_duty("retention", "node-2", now + every, every)
    ledger.register_node("node-1", "run-1", "1.0", "10.0.0.1:8080", now, every)
    with pytest.raises(Conflict):
        ledger.register_node("node-1", "run-2", "1.0", None, now + timedelta(seconds=5), every)
    ledger.register_node("node-1", "run-2", "1.1", None, now + every * 2, every)  # run-1 gone
    assert [(n.name, n.version) for n in ledger.list_nodes()] == [("node-1", "1.1")]
