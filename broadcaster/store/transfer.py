"""`broadcaster db migrate --to URI`: move a city's SQLite ledger into PostgreSQL.

Everything is copied as it is (alerts, deliveries, attempts, users, console
sessions, the login throttle, the audit trail, schedules, which are alerts with a
hold) in one transaction, into a database that holds no ledger data yet: a target
with alerts, users or audit events is refused, and a failure leaves it as it was.
Times are copied as the text they are, so the audit chain verifies on the copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from broadcaster.errors import Conflict, StoreError
from broadcaster.store.postgres import PostgresLedger, describe
from broadcaster.store.sqlite import SqliteLedger

# In the order foreign keys need; the columns both schemas share.
TABLES: Sequence[tuple[str, Sequence[str]]] = (
    ("users", ("id", "name", "role", "token_hash", "password_hash", "disabled",
               "created_at")),
    ("alerts", ("id", "template", "template_sha256", "variables", "mode", "kind", "severity",
                "references_id", "created_by", "created_at", "send_at", "hold",
                "idempotency_key", "request_hash", "fired_at", "late_seconds", "repeat",
                "repeat_of", "expires_at", "expired_at", "pruned_at")),
    ("deliveries", ("id", "alert_id", "channel", "state", "attempts", "headline", "text",
                    "error", "remote_id", "url", "receipt_extra", "queued_at", "not_before",
                    "first_attempt_at", "delivered_at", "updated_at")),
    ("attempts", ("delivery_id", "number", "started_at", "duration", "result", "error_class",
                  "message")),
    ("console_sessions", ("id_hash", "user_id", "created_at", "last_seen_at", "expires_at",
                          "address")),
    ("login_throttle", ("subject", "failures", "window_start", "locked_until")),
    ("audit_events", ("seq", "at", "actor", "address", "action", "subject", "details",
                      "prev_hash", "hash")),
)
# Alerts point at alerts (follow-ups, repetitions): copied without those links
# first, linked afterwards, so the order of the rows does not matter.
_ALERT_LINKS = ("references_id", "repeat_of")


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]
    audit_events: int


def copy_ledger(source: SqliteLedger, target: PostgresLedger) -> CopyReport:
    """Copy every row of ``source`` into the empty ``target``; Conflict if not empty."""
    counts = target.table_counts()
    filled = {t: n for t, n in counts.items() if n and t in ("alerts", "users", "audit_events")}
    if filled:
        what = ", ".join(f"{n} {t}" for t, n in sorted(filled.items()))
        raise Conflict(f"the target database already holds a ledger ({what}); migrate into "
                       "an empty database (createdb) — nothing was copied")
    copied: dict[str, int] = {}
    try:
        with target.raw_transaction() as connection:
            for table, columns in TABLES:
                copied[table] = _copy_table(source, connection, table, columns)
            links = [(r[1], r[2], r[0]) for r in source.rows(
                "SELECT id, references_id, repeat_of FROM alerts "
                "WHERE references_id IS NOT NULL OR repeat_of IS NOT NULL")]
            with connection.cursor() as cursor:
                cursor.executemany("UPDATE alerts SET references_id = %s, repeat_of = %s "
                                   "WHERE id = %s", links)
    except psycopg.Error as exc:
        raise StoreError(f"copying into PostgreSQL failed, nothing was kept: "
                         f"{describe(exc)}") from None
    broken = target.verify_audit()
    if broken is not None:  # pragma: no cover - the copy is verbatim
        raise StoreError(f"the copied audit chain does not verify: {broken}")
    return CopyReport(rows=copied, audit_events=copied["audit_events"])


def _copy_table(source: SqliteLedger, connection: psycopg.Connection[Any], table: str,
                columns: Sequence[str]) -> int:
    names = ", ".join(columns)
    count = 0
    with connection.cursor() as cursor, cursor.copy(
            f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in _source_rows(source, table, columns):
            copy.write_row(row)
            count += 1
    return count


def _source_rows(source: SqliteLedger, table: str, columns: Sequence[str]
                 ) -> Iterator[Sequence[Any]]:
    links = [columns.index(c) for c in _ALERT_LINKS] if table == "alerts" else []
    disabled = columns.index("disabled") if table == "users" else None
    for row in source.rows(f"SELECT {', '.join(columns)} FROM {table}"):  # noqa: S608
        values = list(row)
        for index in links:
            values[index] = None
        if disabled is not None:
            values[disabled] = bool(values[disabled])
        yield values
