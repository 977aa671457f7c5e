"""The hash-chained audit trail: appending inside a transition's transaction, reading, verifying.

Every audited transition calls ``_append_audit`` inside its own transaction, so an
action and its audit event commit together or not at all. The chain is one
sequence: a backend with several writers serialises appends (``_lock_audit_chain``).
"""

from __future__ import annotations

import json
from datetime import datetime

from broadcaster import audit
from broadcaster.store.base import Plumbing, Tx
from broadcaster.store.records import AuditEntry, ts

_CHAIN_COLUMNS = "seq, at, actor, address, action, subject, details, prev_hash, hash"


class AuditLog(Plumbing):
    def record_audit(self, entry: AuditEntry, now: datetime) -> None:
        """An audit event on its own (logins, template approvals)."""
        with self._write() as db:
            self._append_audit(db, entry, now)

    def _append_audit(self, db: Tx, entry: AuditEntry, now: datetime) -> None:
        self._lock_audit_chain(db)
        last = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
                          ).fetchone()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
        details = audit.canonical_details(entry.details)
        at = ts(now)
        digest = audit.event_hash(prev_hash, seq, at, entry.actor, entry.address, entry.action,
                                  entry.subject, details)
        db.execute(
            f"INSERT INTO audit_events ({_CHAIN_COLUMNS}) "  # noqa: S608 - a constant
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, entry.actor, entry.address, entry.action, entry.subject, details,
             prev_hash, digest),
        )

    def audit_events(self, limit: int | None = None) -> list[audit.AuditEvent]:
        """Newest first; all of them without a limit."""
        sql = f"SELECT {_CHAIN_COLUMNS} FROM audit_events ORDER BY seq DESC"  # noqa: S608
        rows = self._read(sql + " LIMIT ?", (limit,)) if limit else self._read(sql)
        return [
            audit.AuditEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    def verify_audit(self) -> audit.Break | None:
        """The first row where the chain breaks, or None when it is intact."""
        rows = self._read(f"SELECT {_CHAIN_COLUMNS} FROM audit_events ORDER BY seq")  # noqa: S608
        return audit.first_broken(tuple(r) for r in rows)
