"""Alerts and deliveries: accepting, claiming, finishing, recovering, officers' actions.

The dispatcher's transitions (``claim_many``, ``finish_many``) take several lanes'
requests in one transaction (group commit). A claim walks each channel's queue in
order through the partial index ``deliveries_queue`` and stops after what it may
take, so its cost does not grow with the backlog behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from broadcaster.errors import Conflict, NotFound
from broadcaster.models import Alert, AlertKind, Delivery, DeliveryState, Mode, Receipt, Severity
from broadcaster.store.auditlog import AuditLog
from broadcaster.store.base import THREAD, Tx
from broadcaster.store.reading import Reading
from broadcaster.store.records import (
    IDEMPOTENCY_WINDOW,
    SCHEDULED,
    AuditEntry,
    Claim,
    DueDelivery,
    NewAlert,
    Outcome,
    Recovered,
    from_ts,
    parse_ts,
    ts,
)

# One channel's due deliveries in queue order: not held, not waiting for a time, not
# behind an earlier message of the same thread that is still on its way.
_DUE_SQL = """
    SELECT d.id, d.channel, d.alert_id, d.attempts, d.headline, d.text, d.queued_at,
           a.kind, a.mode, a.severity, a.references_id, a.created_at
    FROM deliveries d JOIN alerts a ON a.id = d.alert_id
    WHERE d.channel = ? AND d.state = 'queued' AND a.hold IS NULL
      AND (d.not_before IS NULL OR d.not_before <= ?)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries p
          WHERE p.alert_id = a.references_id AND p.channel = d.channel
            AND p.state IN ('queued', 'sending'))
    ORDER BY d.queued_at, d.id
    LIMIT ?
"""
_NEXT_DUE_SQL = """
    SELECT MIN(d.not_before) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
    WHERE d.channel = ? AND d.state = 'queued' AND a.hold IS NULL AND d.not_before > ?
"""
class Deliveries(AuditLog, Reading):
    # Appended to the claim query where the backend can lock the rows it claims and
    # skip those another node is claiming at the same moment.
    _claim_lock = ""

    def check_writable(self, now: datetime) -> None:
        """Prove the database takes a write now (readiness); StoreUnavailable if not."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (ts(now),),
            )

    # -- accepting ------------------------------------------------------------

    def accept_alert(self, alert: NewAlert, entry: AuditEntry) -> tuple[str, bool]:
        """Commit an alert, its deliveries and its audit event in one durable transaction.

        An all-clear or correction cancels the still-queued deliveries of every alert
        in the thread it follows up. With an idempotency key already used by the same
        user, returns the earlier alert's id and False instead (Conflict when the
        request differs). Returns (alert id, created).
        """
        with self._write(durable=True) as db:
            if alert.idempotency_key is not None:
                row = db.execute(
                    "SELECT id, request_hash, created_at FROM alerts WHERE created_by = ? AND "
                    "idempotency_key = ?", (alert.created_by, alert.idempotency_key),
                ).fetchone()
                if row is not None and from_ts(row[2]) < alert.created_at - IDEMPOTENCY_WINDOW:
                    # Keys are remembered for 24 hours; after that the key is new again.
                    db.execute("UPDATE alerts SET idempotency_key = NULL WHERE id = ?",
                               (row[0],))
                    row = None
                if row is not None:
                    if row[1] != alert.request_hash:
                        raise Conflict(
                            "this Idempotency-Key was already used for a different request; "
                            "use a new key for a new alert"
                        )
                    return str(row[0]), False
            if alert.references is not None:
                exists = db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert.references,))
                if exists.fetchone() is None:
                    raise NotFound(f"alert {alert.references} not found")
            created = ts(alert.created_at)
            db.execute(
                "INSERT INTO alerts (id, template, template_sha256, variables, mode, kind, "
                "severity, references_id, created_by, created_at, send_at, hold, "
                "idempotency_key, request_hash, repeat, repeat_of, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.id, alert.template, alert.template_sha256,
                 json.dumps(dict(alert.variables), ensure_ascii=False), alert.mode.value,
                 alert.kind.value, alert.severity.value, alert.references, alert.created_by,
                 created, ts(alert.send_at) if alert.send_at else None, alert.hold,
                 alert.idempotency_key, alert.request_hash,
                 json.dumps(dict(alert.repeat)) if alert.repeat else None, alert.repeat_of,
                 ts(alert.expires_at) if alert.expires_at else None),
            )
            not_before = ts(alert.send_at) if alert.send_at else None
            db.executemany(
                "INSERT INTO deliveries (id, alert_id, channel, state, headline, text, "
                "queued_at, not_before, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                [(d.id, alert.id, d.channel, d.headline, d.text, created, not_before, created)
                 for d in alert.deliveries],
            )
            if alert.kind.supersedes and alert.references is not None:
                self._cancel_thread(db, alert.references, alert.id, alert.kind, created)
            self._append_audit(db, entry, alert.created_at)
            self._announce(db, [d.channel for d in alert.deliveries])
        return alert.id, True

    def _cancel_thread(self, db: Tx, references: str, by_alert: str, kind: AlertKind,
                       now: str) -> None:
        root = references
        while True:
            row = db.execute("SELECT references_id FROM alerts WHERE id = ?", (root,)).fetchone()
            if row is None or row[0] is None:
                break
            root = row[0]
        label = "all-clear" if kind is AlertKind.ALLCLEAR else "correction"
        db.execute(
            THREAD + "UPDATE deliveries SET state = 'cancelled', error = ?, "  # noqa: S608
            "updated_at = ? "
            "WHERE state = 'queued' AND alert_id IN (SELECT id FROM thread) AND alert_id != ?",
            (root, f"superseded by {label} {by_alert} before it was sent", now, by_alert),
        )

    # -- the dispatcher's transitions ------------------------------------------

    def claim_many(self, requests: Sequence[tuple[str, int]], now: datetime) -> list[Claim]:
        """Several lanes' claims in one transaction (group commit): each channel's due
        deliveries up to its limit are marked `sending` and get an attempt row."""
        limits: dict[str, int] = {}
        for channel, limit in requests:
            limits[channel] = max(limit, limits.get(channel, 0))
        stamp = ts(now)
        claims: dict[str, Claim] = {}
        with self._write() as db:
            for channel, limit in limits.items():
                rows = db.execute(_DUE_SQL + self._claim_lock,
                                  (channel, stamp, limit + 1)).fetchall()
                taken = rows[:limit]
                db.executemany(
                    "UPDATE deliveries SET state = 'sending', attempts = ?, "
                    "first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ? "
                    "WHERE id = ?", [(r[3] + 1, stamp, stamp, r[0]) for r in taken])
                db.executemany(
                    "INSERT INTO attempts (delivery_id, number, started_at) VALUES (?, ?, ?)",
                    [(r[0], r[3] + 1, stamp) for r in taken])
                due = [DueDelivery(
                    id=r[0], alert_id=r[2], channel=r[1], attempts=r[3] + 1, headline=r[4],
                    text=r[5], queued_at=from_ts(r[6]), kind=AlertKind(r[7]), mode=Mode(r[8]),
                    severity=Severity(r[9]), references=r[10], alert_created_at=from_ts(r[11]),
                    reply_to=self._thread_receipt(db, r[10], r[1]),
                ) for r in taken]
                next_due = None
                if len(rows) <= limit:
                    found = db.execute(_NEXT_DUE_SQL, (channel, stamp)).fetchone()
                    next_due = parse_ts(found[0]) if found else None
                claims[channel] = Claim(due, more_due=len(rows) > limit, next_due=next_due)
        return [claims[channel] for channel, _ in requests]

    @staticmethod
    def _thread_receipt(db: Tx, alert_id: str | None, channel: str) -> Receipt | None:
        """The receipt to reply to: the referenced alert's post on this channel, or,
        when that was not delivered, the nearest delivered one up the thread."""
        seen: set[str] = set()
        while alert_id is not None and alert_id not in seen:
            seen.add(alert_id)
            row = db.execute(
                "SELECT d.remote_id, d.url, d.receipt_extra, a.references_id FROM alerts a "
                "LEFT JOIN deliveries d ON d.alert_id = a.id AND d.channel = ? "
                "AND d.state = 'delivered' WHERE a.id = ?", (channel, alert_id),
            ).fetchone()
            if row is None:
                return None
            if row[0] is not None:
                return Receipt(row[0], row[1], json.loads(row[2] or "{}"))
            alert_id = row[3]
        return None

    def finish_attempt(
        self, delivery_id: str, attempt: int, outcome: Outcome, now: datetime
    ) -> bool:
        """Record how attempt n ended and move the delivery on; False if stale."""
        return self.finish_many([(delivery_id, attempt, outcome, now)])[0]

    def finish_many(self, items: Sequence[tuple[str, int, Outcome, datetime]]) -> list[bool]:
        """Several attempts' ends in one transaction (group commit)."""
        with self._write() as db:
            return [self._finish(db, *item) for item in items]

    @staticmethod
    def _finish(db: Tx, delivery_id: str, attempt: int, outcome: Outcome,
                now: datetime) -> bool:
        receipt = outcome.receipt
        changed = db.execute(
            "UPDATE deliveries SET state = ?, error = ?, not_before = ?, updated_at = ?, "
            "remote_id = COALESCE(?, remote_id), url = COALESCE(?, url), "
            "receipt_extra = COALESCE(?, receipt_extra), "
            "delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END "
            "WHERE id = ? AND state = 'sending' AND attempts = ?",
            (outcome.state.value, outcome.message if outcome.state != DeliveryState.DELIVERED
             else None, ts(outcome.not_before) if outcome.not_before else None, ts(now),
             receipt.remote_id if receipt else None, receipt.url if receipt else None,
             json.dumps(dict(receipt.extra)) if receipt and receipt.extra else None,
             outcome.state is DeliveryState.DELIVERED, ts(now), delivery_id, attempt),
        ).rowcount
        db.execute(
            "UPDATE attempts SET duration = ?, result = ?, error_class = ?, message = ? "
            "WHERE delivery_id = ? AND number = ?",
            (outcome.duration, outcome.result, outcome.error_class, outcome.message,
             delivery_id, attempt),
        )
        return bool(changed)

    def recover_interrupted(
        self, policy: Callable[[str], str | None], now: datetime,
        keep: Collection[str] = (),
    ) -> list[Recovered]:
        """After a crash: every delivery left in `sending` goes back to the queue when
        its channel may resend (policy returns "retry"), else becomes `unknown`.
        ``keep``: deliveries this process still has under way (after an outage of the
        ledger, only the others were orphaned)."""
        recovered: list[Recovered] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, channel, attempts, alert_id FROM deliveries WHERE state = 'sending'"
            ).fetchall()
            for delivery_id, channel, attempt, alert_id in rows:
                if delivery_id in keep:
                    continue
                verdict = policy(channel)
                state = DeliveryState.QUEUED if verdict == "retry" else DeliveryState.UNKNOWN
                why = (f"broadcaster stopped during attempt {attempt}; whether the platform "
                       "received it is unknown")
                if verdict is None:
                    why += f" (channel {channel!r} is no longer configured)"
                db.execute(
                    "UPDATE deliveries SET state = ?, error = ?, not_before = NULL, "
                    "updated_at = ? WHERE id = ?", (state.value, why, ts(now), delivery_id),
                )
                db.execute(
                    "UPDATE attempts SET result = 'interrupted', message = ? "
                    "WHERE delivery_id = ? AND number = ? AND result IS NULL",
                    (why, delivery_id, attempt),
                )
                recovered.append(Recovered(delivery_id, channel, attempt, state, alert_id))
        return recovered

    # -- officers' actions ----------------------------------------------------

    def retry_delivery(self, delivery_id: str, entry: AuditEntry, now: datetime) -> Delivery:
        """Queue a failed or unknown delivery again, by an officer's decision."""
        with self._write() as db:
            row = db.execute("SELECT state, channel FROM deliveries WHERE id = ?",
                             (delivery_id,)).fetchone()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row[0] not in (DeliveryState.FAILED, DeliveryState.UNKNOWN):
                raise Conflict(f"delivery {delivery_id} is {row[0]}; only failed or unknown "
                               "deliveries can be retried")
            db.execute(
                "UPDATE deliveries SET state = 'queued', not_before = NULL, queued_at = ?, "
                "updated_at = ? WHERE id = ?", (ts(now), ts(now), delivery_id),
            )
            self._append_audit(db, entry, now)
            self._announce(db, [row[1]])
        return self.get_delivery(delivery_id)

    def release_hold(self, alert_id: str, hold: str, entry: AuditEntry,
                     now: datetime) -> Alert:
        """Let a held alert's deliveries go (a second officer confirmed it); one with a
        send time still ahead becomes scheduled instead."""
        with self._write() as db:
            row = db.execute("SELECT hold, send_at FROM alerts WHERE id = ?",
                             (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id} not found")
            if row[0] != hold:
                raise Conflict(f"alert {alert_id} is not {hold.replace('_', ' ')}")
            then = SCHEDULED if row[1] is not None and from_ts(row[1]) > now else None
            db.execute("UPDATE alerts SET hold = ? WHERE id = ?", (then, alert_id))
            self._append_audit(db, entry, now)
            if then is None:
                self._announce_alert(db, alert_id)
        return self.get_alert(alert_id)

    def cancel_alert(self, alert_id: str, entry: AuditEntry, now: datetime) -> Alert:
        """Withdraw an alert that has not gone out: every queued delivery is cancelled."""
        with self._write() as db:
            row = db.execute("SELECT hold FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id} not found")
            if row[0] is None:
                raise Conflict(f"alert {alert_id} is already being delivered; send a "
                               "correction or an all-clear instead")
            db.execute(
                "UPDATE deliveries SET state = 'cancelled', error = ?, updated_at = ? "
                "WHERE alert_id = ? AND state = 'queued'",
                (f"withdrawn by {entry.actor} before it was sent", ts(now), alert_id),
            )
            db.execute("UPDATE alerts SET hold = NULL WHERE id = ?", (alert_id,))
            self._append_audit(db, entry, now)
        return self.get_alert(alert_id)
