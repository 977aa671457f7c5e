"""Ledgers with a past, for the growth and backlog benchmarks.

A city's ledger after two years: ``history`` alerts, each delivered to every one of
``channels`` channels with one attempt, one audit event each (a valid chain), spread
evenly over the last two years; and a ``backlog`` of alerts accepted a moment ago
whose deliveries are all still queued. Written straight into a SQLite file (the
product's own accept path takes milliseconds per alert; a year of history would take
hours) and, for PostgreSQL, copied with ``broadcaster db migrate``'s own copy.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ulid import ULID

from broadcaster import audit
from broadcaster.store.records import ts
from broadcaster.store.sqlite import SqliteLedger

TWO_YEARS = timedelta(days=730)
VARIABLES = json.dumps({"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
                        "shelter": "Rhein-Mosel-Halle"}, ensure_ascii=False)
TEXT = ("Evakuierung Oberwerth bis 09:00 Uhr wegen Gasaustritt. Notunterkunft: "
        "Rhein-Mosel-Halle. https://www.koblenz.de/warnung")


def _id(moment: datetime) -> str:
    return str(ULID.from_timestamp(moment.timestamp()))


def fabricate(path: Path, *, history: int, channels: Sequence[str], recent: int = 0,
              backlog: int = 0, backlog_channels: Sequence[str] = (),
              now: datetime | None = None) -> None:
    """Write a ledger with ``history`` delivered alerts over the last two years,
    ``recent`` delivered ones in the last hour, and ``backlog`` queued ones."""
    now = now or datetime.now(UTC)
    SqliteLedger(path).close()  # the current schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    chain = _Chain()
    step = TWO_YEARS / max(history, 1)
    batch: list[tuple[datetime, str]] = []
    for number in range(history):
        batch.append((now - TWO_YEARS + step * number, "delivered"))
        if len(batch) == 5000:
            _write(db, batch, channels, chain)
            batch = []
    _write(db, batch, channels, chain)
    latest = [(now - timedelta(hours=1) + timedelta(hours=1) * n / max(recent, 1),
               "delivered") for n in range(recent)]
    _write(db, latest, channels, chain)
    queued = [(now - timedelta(seconds=backlog - n) / 1000, "queued") for n in range(backlog)]
    for start in range(0, len(queued), 5000):
        _write(db, queued[start:start + 5000], backlog_channels, chain)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


class _Chain:
    def __init__(self) -> None:
        self.seq = 0
        self.last = audit.GENESIS

    def rows(self, moments: Sequence[tuple[str, str]]) -> Iterator[tuple[Any, ...]]:
        for at, alert_id in moments:
            self.seq += 1
            details = audit.canonical_details({"channels": 10})
            digest = audit.event_hash(self.last, self.seq, at, "duty-1", "127.0.0.1",
                                      "alert.send", alert_id, details)
            yield (self.seq, at, "duty-1", "127.0.0.1", "alert.send", alert_id, details,
                   self.last, digest)
            self.last = digest


def _write(db: sqlite3.Connection, batch: Sequence[tuple[datetime, str]],
           channels: Sequence[str], chain: _Chain) -> None:
    alerts, deliveries, attempts, events = [], [], [], []
    for moment, state in batch:
        alert_id, at = _id(moment), ts(moment)
        alerts.append((alert_id, "evakuierung", "0" * 64, VARIABLES, "live", "alert",
                       "severe", None, "duty-1", at))
        events.append((at, alert_id))
        for channel in channels:
            delivery_id = _id(moment)
            done = state == "delivered"
            deliveries.append((
                delivery_id, alert_id, channel, state, 1 if done else 0, "Evakuierung", TEXT,
                f"{channel}-{delivery_id}" if done else None, at, at if done else None,
                at if done else None, at))
            if done:
                attempts.append((delivery_id, 1, at, 0.12, "delivered"))
    db.executemany(
        "INSERT INTO alerts (id, template, template_sha256, variables, mode, kind, severity, "
        "references_id, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", alerts)
    db.executemany(
        "INSERT INTO deliveries (id, alert_id, channel, state, attempts, headline, text, "
        "remote_id, queued_at, first_attempt_at, delivered_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", deliveries)
    db.executemany("INSERT INTO attempts (delivery_id, number, started_at, duration, result) "
                   "VALUES (?, ?, ?, ?, ?)", attempts)
    db.executemany(
        "INSERT INTO audit_events (seq, at, actor, address, action, subject, details, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(chain.rows(events)))
