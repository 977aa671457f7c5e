"""Time: scheduled sends, reminder series, expiry and retention.

Each transition is idempotent (firing a fired alert, expiring an expired one does
nothing), so a job that runs twice, or on a node that lost the race, is harmless.
Retention works in small batches, each its own transaction, so a pass over a
large ledger never holds the writer for long.
"""

from __future__ import annotations

from datetime import datetime

from broadcaster.models import Alert
from broadcaster.store.auditlog import AuditLog
from broadcaster.store.base import marks
from broadcaster.store.reading import Reading
from broadcaster.store.records import SCHEDULED, AuditEntry, from_ts, ts

RETENTION_BATCH = 50
"""Alerts pruned per transaction: a few milliseconds of the writer, and a write-ahead
log small enough that an accept committing beside it does not wait for it."""


class Timeline(AuditLog, Reading):
    def alerts_held(self, hold: str) -> list[Alert]:
        """Alerts waiting for the given reason (e.g. every scheduled alert)."""
        return self._alerts(self._read("SELECT * FROM alerts WHERE hold = ? ORDER BY id",
                                       (hold,)))

    def fire_scheduled(self, alert_id: str, now: datetime) -> float | None:
        """Release a scheduled alert at (or after) its time; the seconds it is late, or
        None when it was not scheduled any more (fired, withdrawn: the job is idempotent)."""
        with self._write() as db:
            row = db.execute("SELECT hold, send_at FROM alerts WHERE id = ?",
                             (alert_id,)).fetchone()
            if row is None or row[0] != SCHEDULED:
                return None
            late = max(0.0, (now - from_ts(row[1])).total_seconds())
            # Conditional: of two nodes firing at the same moment, one changes the row.
            if not db.execute("UPDATE alerts SET hold = NULL, fired_at = ?, late_seconds = ? "
                              "WHERE id = ? AND hold = ?",
                              (ts(now), round(late, 3), alert_id, SCHEDULED)).rowcount:
                return None
            self._append_audit(db, AuditEntry(
                actor="scheduler", action="alert.fired", subject=alert_id,
                details={"late_seconds": round(late, 3)}), now)
            self._announce_alert(db, alert_id)
        return late

    def series(self) -> list[Alert]:
        """Alerts that carry a reminder series (ended or not: the caller decides)."""
        return self._alerts(self._read(
            "SELECT * FROM alerts WHERE repeat IS NOT NULL ORDER BY id"))

    def latest_repetition(self, alert_id: str) -> Alert | None:
        rows = self._read("SELECT * FROM alerts WHERE repeat_of = ? ORDER BY id DESC LIMIT 1",
                          (alert_id,))
        found = self._alerts(rows)
        return found[0] if found else None

    def pending_expiries(self) -> list[Alert]:
        return self._alerts(self._read(
            "SELECT * FROM alerts WHERE expires_at IS NOT NULL AND expired_at IS NULL "
            "ORDER BY expires_at"))

    def expire_alert(self, alert_id: str, now: datetime) -> bool:
        """Mark an alert that reached its expiry without an all-clear; False when its
        thread was closed or it was marked before (idempotent)."""
        if self.thread_closed(alert_id):
            return False
        with self._write() as db:
            changed = db.execute(
                "UPDATE alerts SET expired_at = ? WHERE id = ? AND expired_at IS NULL "
                "AND expires_at <= ?", (ts(now), alert_id, ts(now)),
            ).rowcount
            if changed:
                self._append_audit(db, AuditEntry(actor="scheduler", action="alert.expired",
                                                  subject=alert_id), now)
        return bool(changed)

    def apply_retention(self, cutoff: datetime, now: datetime,
                        batch: int = RETENTION_BATCH) -> int:
        """Remove the texts, values and attempts of up to ``batch`` alerts created
        before ``cutoff`` whose deliveries are all final; the number pruned (call
        again until it is 0). Alert and delivery rows (ids, states, receipts) stay,
        and the audit trail is never touched, so its chain stays verifiable."""
        with self._write() as db:
            ids = [row[0] for row in db.execute(
                "SELECT a.id FROM alerts a WHERE a.created_at < ? AND a.pruned_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id "
                "AND d.state IN ('queued', 'sending')) ORDER BY a.created_at LIMIT ?",
                (ts(cutoff), batch)).fetchall()]
            if not ids:
                return 0
            in_ids = marks(ids)
            db.execute(f"DELETE FROM attempts WHERE delivery_id IN "  # noqa: S608
                       f"(SELECT id FROM deliveries WHERE alert_id IN ({in_ids}))", ids)
            db.execute(f"UPDATE deliveries SET text = '', headline = '' "  # noqa: S608
                       f"WHERE alert_id IN ({in_ids})", ids)
            db.execute(f"UPDATE alerts SET variables = '{{}}', pruned_at = ? "  # noqa: S608
                       f"WHERE id IN ({in_ids})", (ts(now), *ids))
            self._append_audit(db, AuditEntry(
                actor="scheduler", action="housekeeping.retention",
                details={"alerts": len(ids), "before": ts(cutoff)}), now)
        return len(ids)
