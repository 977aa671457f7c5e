"""Reading alerts, deliveries and attempts back, as the models the API and console show.

Reads never write; the daemon runs them beside the writer where the backend allows
(``Database.read``), so a status request does not wait behind a fan-out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from broadcaster.errors import NotFound
from broadcaster.models import (
    Alert,
    AlertKind,
    AlertState,
    Attempt,
    Delivery,
    DeliveryState,
    Mode,
    Receipt,
    Severity,
)
from broadcaster.store.base import THREAD, Plumbing, marks
from broadcaster.store.records import from_ts, parse_ts


class Reading(Plumbing):
    def get_delivery(self, delivery_id: str) -> Delivery:
        rows = self._read("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        if not rows:
            raise NotFound(f"delivery {delivery_id} not found")
        return delivery_from_row(rows[0])

    def get_alert(self, alert_id: str) -> Alert:
        rows = self._read("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        if not rows:
            raise NotFound(f"alert {alert_id} not found")
        return self._alerts(rows)[0]

    def list_alerts(self, limit: int = 50, before: str | None = None,
                    state: AlertState | None = None) -> list[Alert]:
        """Newest first; ``before`` is the id of the last alert of the previous page.

        An alert's state is derived from its deliveries, so a state filter reads
        page after page until it has ``limit`` matches or the ledger ends.
        """
        found: list[Alert] = []
        cursor = before
        page = limit if state is None else max(limit, 200)
        while len(found) < limit:
            if cursor is None:
                rows = self._read("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (page,))
            else:
                rows = self._read("SELECT * FROM alerts WHERE id < ? ORDER BY id DESC LIMIT ?",
                                  (cursor, page))
            alerts = self._alerts(rows)
            found += [a for a in alerts if state is None or a.state is state]
            if len(rows) < page:
                break
            cursor = rows[-1]["id"]
        return found[:limit]

    def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = self._read(
            "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY number", (delivery_id,)
        )
        return [
            Attempt(number=r["number"], started_at=from_ts(r["started_at"]),
                    duration=r["duration"], result=r["result"] or "sending",
                    error_class=r["error_class"], message=r["message"])
            for r in rows
        ]

    def delivery_counts(self, active_only: bool = False) -> dict[tuple[str, str], int]:
        """(channel, state) → number of deliveries, for the gauges. ``active_only``:
        the states that need attention (queued, sending, unknown), from their own
        index, cheap however long the ledger's history; otherwise every state, which
        counts the whole table."""
        if active_only:
            rows = self._read("SELECT channel, state, COUNT(*) FROM deliveries "
                              "WHERE state IN ('queued', 'sending', 'unknown') GROUP BY 1, 2")
        else:
            rows = self._read("SELECT channel, state, COUNT(*) FROM deliveries GROUP BY 1, 2")
        return {(r[0], r[1]): r[2] for r in rows}

    def table_counts(self) -> dict[str, int]:
        """Rows per table, for backups and copies (not for hot paths: it counts)."""
        return {table: int(self._read(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608
                for table in ("alerts", "deliveries", "attempts", "users", "audit_events")}

    def thread_root(self, alert_id: str) -> str:
        root, seen = alert_id, set()
        while root not in seen:
            seen.add(root)
            rows = self._read("SELECT references_id FROM alerts WHERE id = ?", (root,))
            if not rows or rows[0][0] is None:
                break
            root = rows[0][0]
        return root

    def thread_closed(self, alert_id: str) -> bool:
        """Has the thread this alert belongs to had an all-clear or a correction?"""
        rows = self._read(
            THREAD + "SELECT 1 FROM alerts WHERE id IN (SELECT id FROM thread) "  # noqa: S608
            "AND kind IN ('allclear', 'correction') LIMIT 1", (self.thread_root(alert_id),),
        )
        return bool(rows)

    def _alerts(self, rows: Sequence[Any]) -> list[Alert]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        deliveries: dict[str, list[Delivery]] = {i: [] for i in ids}
        for row in self._read(
            f"SELECT * FROM deliveries WHERE alert_id IN ({marks(ids)}) ORDER BY channel",  # noqa: S608
            ids,
        ):
            deliveries[row["alert_id"]].append(delivery_from_row(row))
        return [
            Alert(
                id=r["id"], template=r["template"], template_sha256=r["template_sha256"],
                variables=json.loads(r["variables"]), mode=Mode(r["mode"]),
                kind=AlertKind(r["kind"]), severity=Severity(r["severity"]),
                references=r["references_id"], created_by=r["created_by"],
                created_at=from_ts(r["created_at"]), send_at=parse_ts(r["send_at"]),
                hold=r["hold"], deliveries=tuple(deliveries[r["id"]]),
                fired_at=parse_ts(r["fired_at"]), late_seconds=r["late_seconds"],
                repeat=json.loads(r["repeat"]) if r["repeat"] else None,
                repeat_of=r["repeat_of"], expires_at=parse_ts(r["expires_at"]),
                expired_at=parse_ts(r["expired_at"]), pruned_at=parse_ts(r["pruned_at"]),
                idempotency_key=r["idempotency_key"],
            )
            for r in rows
        ]


def delivery_from_row(row: Any) -> Delivery:
    receipt = None
    if row["remote_id"] is not None or row["url"] is not None:
        receipt = Receipt(row["remote_id"], row["url"], json.loads(row["receipt_extra"] or "{}"))
    return Delivery(
        id=row["id"], alert_id=row["alert_id"], channel=row["channel"],
        state=DeliveryState(row["state"]), attempts=row["attempts"], headline=row["headline"],
        text=row["text"], error=row["error"], receipt=receipt,
        queued_at=from_ts(row["queued_at"]), not_before=parse_ts(row["not_before"]),
        first_attempt_at=parse_ts(row["first_attempt_at"]),
        delivered_at=parse_ts(row["delivered_at"]),
    )
