"""The SQLite ledger: every state transition is one method here; nothing else writes SQL.

Alerts, their deliveries (with the exact text), one row per attempt, users and
the hash-chained audit trail. WAL mode; the accept transaction is committed with
``synchronous=FULL`` (on disk before the API answers), later transitions with
NORMAL (durable against a crash of the process; power loss may lose the last
moments of state changes, never an accepted alert).

The Store is synchronous; the daemon calls it through ``Database.run`` on one
dedicated thread, so the event loop never waits for a disk flush.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from broadcaster import audit
from broadcaster.errors import AlreadyRunning, Conflict, NotFound, StoreError, StoreUnavailable
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
from broadcaster.schema import MIGRATIONS, SCHEMA_VERSION

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    """A timestamp as stored: UTC, microseconds, sortable as text."""
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text)  # C-fast, unlike strptime; reads the Z as UTC


def _ts(text: str) -> datetime:
    moment = parse_ts(text)
    assert moment is not None
    return moment


@dataclass(frozen=True)
class NewDelivery:
    id: str
    channel: str
    headline: str
    text: str


@dataclass(frozen=True)
class NewAlert:
    """An alert ready to be accepted: validated and rendered, with its deliveries."""

    id: str
    template: str
    template_sha256: str
    variables: Mapping[str, str]
    mode: Mode
    kind: AlertKind
    severity: Severity
    references: str | None
    created_by: str
    created_at: datetime
    deliveries: tuple[NewDelivery, ...]
    send_at: datetime | None = None
    hold: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    repeat: Mapping[str, str] | None = None
    repeat_of: str | None = None
    expires_at: datetime | None = None

    def as_accepted(self) -> Alert:
        """The alert as the ledger holds it right after accepting it (every delivery
        queued), without reading it back."""
        return Alert(
            id=self.id, template=self.template, template_sha256=self.template_sha256,
            variables=self.variables, mode=self.mode, kind=self.kind, severity=self.severity,
            references=self.references, created_by=self.created_by,
            created_at=self.created_at, send_at=self.send_at, hold=self.hold,
            deliveries=tuple(
                Delivery(id=d.id, alert_id=self.id, channel=d.channel,
                         state=DeliveryState.QUEUED, attempts=0, headline=d.headline,
                         text=d.text, error=None, receipt=None, queued_at=self.created_at,
                         not_before=self.send_at, first_attempt_at=None, delivered_at=None)
                for d in sorted(self.deliveries, key=lambda d: d.channel)),
            repeat=self.repeat, repeat_of=self.repeat_of, expires_at=self.expires_at,
            idempotency_key=self.idempotency_key,
        )


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    subject: str | None = None
    address: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DueDelivery:
    """A queued delivery whose turn has come, with what its channel needs."""

    id: str
    alert_id: str
    channel: str
    attempts: int
    headline: str
    text: str
    kind: AlertKind
    mode: Mode
    severity: Severity
    references: str | None
    alert_created_at: datetime
    queued_at: datetime
    reply_to: Receipt | None


@dataclass(frozen=True)
class Claim:
    """What a lane took from its queue, and what remains."""

    deliveries: list[DueDelivery]
    more_due: bool  # more deliveries are due right now than were taken
    next_due: datetime | None  # when the next delivery waiting for a time falls due


# Every due delivery of the given channels, numbered per channel in queue order.
_DUE_SQL = """
    SELECT * FROM (
        SELECT d.id, d.channel, d.alert_id, d.attempts, d.headline, d.text, d.queued_at,
               a.kind, a.mode, a.severity, a.references_id, a.created_at,
               ROW_NUMBER() OVER (PARTITION BY d.channel ORDER BY d.queued_at, d.id) AS place
        FROM deliveries d JOIN alerts a ON a.id = d.alert_id
        WHERE d.channel IN ({channels}) AND d.state = 'queued' AND a.hold IS NULL
          AND (d.not_before IS NULL OR d.not_before <= ?)
          AND NOT EXISTS (
              SELECT 1 FROM deliveries p
              WHERE p.alert_id = a.references_id AND p.channel = d.channel
                AND p.state IN ('queued', 'sending'))
    ) WHERE place <= ?
"""
_NEXT_DUE_SQL = """
    SELECT d.channel, MIN(d.not_before) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
    WHERE d.channel IN ({channels}) AND d.state = 'queued' AND a.hold IS NULL
      AND d.not_before > ?
    GROUP BY d.channel
"""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended and where the delivery goes next."""

    result: str  # delivered | retryable | permanent | unknown
    state: DeliveryState
    duration: float
    error_class: str | None = None
    message: str | None = None
    receipt: Receipt | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class Recovered:
    delivery_id: str
    channel: str
    attempt: int
    state: DeliveryState
    alert_id: str


@dataclass(frozen=True)
class BackupReport:
    """What ``Store.backup`` wrote (see the backup section)."""

    path: Path
    size: int
    schema_version: int
    alerts: int
    deliveries: int
    users: int
    audit_events: int


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str
    token_hash: str | None
    password_hash: str | None
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class ConsoleSession:
    """A web console login; the cookie holds the id, the ledger only its sha256."""

    id_hash: str
    user: User
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


SCHEDULED = "scheduled"
IDEMPOTENCY_WINDOW = timedelta(hours=24)
_STORE_FULL_HINTS = ("disk is full", "database or disk is full")


def _unavailable(exc: sqlite3.Error, path: Path) -> StoreUnavailable:
    message = str(exc)
    if any(hint in message for hint in _STORE_FULL_HINTS):
        why = "the disk is full"
    elif "readonly" in message or "read-only" in message:
        why = "the database is not writable"
    elif "locked" in message:
        why = ("the database is not writable: another program holds its write lock "
               "(a backup or an open sqlite3 shell?)")
    elif "unable to open" in message:
        why = "the database file cannot be opened"
    else:
        why = f"the database failed ({message})"
    return StoreUnavailable(f"cannot persist to {path}: {why}; nothing was accepted")


class Store:
    """One SQLite database. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise _unavailable(exc, path) from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc.strerror}") from None

    def close(self) -> None:
        self._db.close()

    # -- plumbing -------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this broadcaster "
                f"({SCHEMA_VERSION}); upgrade broadcaster or restore a backup"
            )
        for step in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[step]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={step + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; durable=True waits for the disk before returning."""
        try:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _unavailable(exc, self.path) from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _unavailable(exc, self.path) from None
        except BaseException:
            self._rollback()
            raise
        finally:
            if durable:
                with suppress(sqlite3.Error):
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def _rollback(self) -> None:
        with suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            cursor = self._db.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise _unavailable(exc, self.path) from None

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
                if row is not None and _ts(row[2]) < alert.created_at - IDEMPOTENCY_WINDOW:
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
        return alert.id, True

    def _cancel_thread(
        self, db: sqlite3.Connection, references: str, by_alert: str, kind: AlertKind, now: str
    ) -> None:
        root = references
        while True:
            row = db.execute("SELECT references_id FROM alerts WHERE id = ?", (root,)).fetchone()
            if row is None or row[0] is None:
                break
            root = row[0]
        label = "all-clear" if kind is AlertKind.ALLCLEAR else "correction"
        db.execute(
            """
            WITH RECURSIVE thread(id) AS (
                SELECT ? UNION SELECT a.id FROM alerts a JOIN thread t ON a.references_id = t.id
            )
            UPDATE deliveries SET state = 'cancelled', error = ?, updated_at = ?
            WHERE state = 'queued' AND alert_id IN (SELECT id FROM thread) AND alert_id != ?
            """,
            (root, f"superseded by {label} {by_alert} before it was sent", now, by_alert),
        )

    # -- the dispatcher's transitions ------------------------------------------

    def claim_many(self, requests: Sequence[tuple[str, int]], now: datetime) -> list[Claim]:
        """Several lanes' claims in one transaction of a few statements (group commit):
        one query finds every channel's due deliveries, one statement marks them
        `sending` and one records their attempts."""
        limits: dict[str, int] = {}
        for channel, limit in requests:
            limits[channel] = max(limit, limits.get(channel, 0))
        marks = ",".join("?" * len(limits))
        stamp = ts(now)
        with self._write() as db:
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(_DUE_SQL.format(channels=marks),
                                  (*limits, stamp, max(limits.values()) + 1)).fetchall()
                taken = [r for r in rows if r["place"] <= limits[r["channel"]]]
                more = {r["channel"] for r in rows if r["place"] > limits[r["channel"]]}
                db.executemany(
                    "UPDATE deliveries SET state = 'sending', attempts = ?, "
                    "first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ? "
                    "WHERE id = ?", [(r["attempts"] + 1, stamp, stamp, r["id"]) for r in taken])
                db.executemany(
                    "INSERT INTO attempts (delivery_id, number, started_at) VALUES (?, ?, ?)",
                    [(r["id"], r["attempts"] + 1, stamp) for r in taken])
                claimed: dict[str, list[DueDelivery]] = {channel: [] for channel in limits}
                for r in taken:
                    claimed[r["channel"]].append(DueDelivery(
                        id=r["id"], alert_id=r["alert_id"], channel=r["channel"],
                        attempts=r["attempts"] + 1, headline=r["headline"], text=r["text"],
                        kind=AlertKind(r["kind"]), mode=Mode(r["mode"]),
                        severity=Severity(r["severity"]), references=r["references_id"],
                        alert_created_at=_ts(r["created_at"]), queued_at=_ts(r["queued_at"]),
                        reply_to=self._thread_receipt(db, r["references_id"], r["channel"]),
                    ))
                next_due = dict(db.execute(_NEXT_DUE_SQL.format(channels=marks),
                                           (*limits, stamp)).fetchall())
            finally:
                db.row_factory = None
        return [Claim(claimed[channel], more_due=channel in more,
                      next_due=parse_ts(next_due.get(channel))) for channel, _ in requests]

    @staticmethod
    def _thread_receipt(db: sqlite3.Connection, alert_id: str | None,
                        channel: str) -> Receipt | None:
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
    def _finish(db: sqlite3.Connection, delivery_id: str, attempt: int, outcome: Outcome,
                now: datetime) -> bool:
        receipt = outcome.receipt
        changed = db.execute(
            "UPDATE deliveries SET state = ?, error = ?, not_before = ?, updated_at = ?, "
            "remote_id = COALESCE(?, remote_id), url = COALESCE(?, url), "
            "receipt_extra = COALESCE(?, receipt_extra), "
            "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END "
            "WHERE id = ? AND state = 'sending' AND attempts = ?",
            (outcome.state.value, outcome.message if outcome.state != DeliveryState.DELIVERED
             else None, ts(outcome.not_before) if outcome.not_before else None, ts(now),
             receipt.remote_id if receipt else None, receipt.url if receipt else None,
             json.dumps(dict(receipt.extra)) if receipt and receipt.extra else None,
             outcome.state.value, ts(now), delivery_id, attempt),
        ).rowcount
        db.execute(
            "UPDATE attempts SET duration = ?, result = ?, error_class = ?, message = ? "
            "WHERE delivery_id = ? AND number = ?",
            (outcome.duration, outcome.result, outcome.error_class, outcome.message,
             delivery_id, attempt),
        )
        return bool(changed)

    def recover_interrupted(
        self, policy: Callable[[str], str | None], now: datetime
    ) -> list[Recovered]:
        """After a crash: every delivery left in `sending` goes back to the queue when
        its channel may resend (policy returns "retry"), else becomes `unknown`."""
        recovered: list[Recovered] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, channel, attempts, alert_id FROM deliveries WHERE state = 'sending'"
            ).fetchall()
            for delivery_id, channel, attempt, alert_id in rows:
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
            row = db.execute("SELECT state FROM deliveries WHERE id = ?",
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
        return self.get_delivery(delivery_id)

    # -- time: scheduled sends, reminder series, expiry, retention ---------------

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
            late = max(0.0, (now - _ts(row[1])).total_seconds())
            db.execute("UPDATE alerts SET hold = NULL, fired_at = ?, late_seconds = ? "
                       "WHERE id = ?", (ts(now), round(late, 3), alert_id))
            self._append_audit(db, AuditEntry(
                actor="scheduler", action="alert.fired", subject=alert_id,
                details={"late_seconds": round(late, 3)}), now)
        return late

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
            """
            WITH RECURSIVE thread(id) AS (
                SELECT ? UNION SELECT a.id FROM alerts a JOIN thread t ON a.references_id = t.id
            )
            SELECT 1 FROM alerts WHERE id IN (SELECT id FROM thread)
              AND kind IN ('allclear', 'correction') LIMIT 1
            """, (self.thread_root(alert_id),),
        )
        return bool(rows)

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

    def apply_retention(self, cutoff: datetime, now: datetime) -> int:
        """Remove the texts, values and attempts of alerts created before ``cutoff``
        whose deliveries are all final. Alert and delivery rows (ids, states, receipts)
        stay, and the audit trail is never touched, so its chain stays verifiable."""
        with self._write() as db:
            ids = [row[0] for row in db.execute(
                "SELECT a.id FROM alerts a WHERE a.created_at < ? AND a.pruned_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id "
                "AND d.state IN ('queued', 'sending'))", (ts(cutoff),))]
            for alert_id in ids:
                db.execute("DELETE FROM attempts WHERE delivery_id IN "
                           "(SELECT id FROM deliveries WHERE alert_id = ?)", (alert_id,))
                db.execute("UPDATE deliveries SET text = '', headline = '' WHERE alert_id = ?",
                           (alert_id,))
                db.execute("UPDATE alerts SET variables = '{}', pruned_at = ? WHERE id = ?",
                           (ts(now), alert_id))
            if ids:
                self._append_audit(db, AuditEntry(
                    actor="scheduler", action="housekeeping.retention",
                    details={"alerts": len(ids), "before": ts(cutoff)}), now)
        return len(ids)

    # -- reading --------------------------------------------------------------

    def get_delivery(self, delivery_id: str) -> Delivery:
        rows = self._read("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        if not rows:
            raise NotFound(f"delivery {delivery_id} not found")
        return _delivery(rows[0])

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
            then = SCHEDULED if row[1] is not None and row[1] > ts(now) else None
            db.execute("UPDATE alerts SET hold = ? WHERE id = ?", (then, alert_id))
            self._append_audit(db, entry, now)
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

    def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = self._read(
            "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY number", (delivery_id,)
        )
        return [
            Attempt(number=r["number"], started_at=_ts(r["started_at"]), duration=r["duration"],
                    result=r["result"] or "sending", error_class=r["error_class"],
                    message=r["message"])
            for r in rows
        ]

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """(channel, state) → number of deliveries, for the gauges."""
        rows = self._read("SELECT channel, state, COUNT(*) FROM deliveries GROUP BY 1, 2")
        return {(r[0], r[1]): r[2] for r in rows}

    def _alerts(self, rows: Sequence[sqlite3.Row]) -> list[Alert]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        deliveries: dict[str, list[Delivery]] = {i: [] for i in ids}
        for row in self._read(
            f"SELECT * FROM deliveries WHERE alert_id IN ({marks}) ORDER BY channel", ids  # noqa: S608
        ):
            deliveries[row["alert_id"]].append(_delivery(row))
        return [
            Alert(
                id=r["id"], template=r["template"], template_sha256=r["template_sha256"],
                variables=json.loads(r["variables"]), mode=Mode(r["mode"]),
                kind=AlertKind(r["kind"]), severity=Severity(r["severity"]),
                references=r["references_id"], created_by=r["created_by"],
                created_at=_ts(r["created_at"]), send_at=parse_ts(r["send_at"]),
                hold=r["hold"], deliveries=tuple(deliveries[r["id"]]),
                fired_at=parse_ts(r["fired_at"]), late_seconds=r["late_seconds"],
                repeat=json.loads(r["repeat"]) if r["repeat"] else None,
                repeat_of=r["repeat_of"], expires_at=parse_ts(r["expires_at"]),
                expired_at=parse_ts(r["expired_at"]), pruned_at=parse_ts(r["pruned_at"]),
                idempotency_key=r["idempotency_key"],
            )
            for r in rows
        ]

    # -- users ----------------------------------------------------------------

    def add_user(self, user: User, entry: AuditEntry) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user.name,)).fetchone():
                raise Conflict(f"user {user.name!r} exists already")
            db.execute(
                "INSERT INTO users (id, name, role, token_hash, password_hash, disabled, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user.id, user.name, user.role, user.token_hash, user.password_hash,
                 int(user.disabled), ts(user.created_at)),
            )
            self._append_audit(db, entry, user.created_at)

    def get_user(self, user_id: str) -> User | None:
        rows = self._read("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    def find_user(self, name: str) -> User | None:
        rows = self._read("SELECT * FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[User]:
        return [_user(r) for r in self._read("SELECT * FROM users ORDER BY name")]

    def set_user_disabled(self, name: str, disabled: bool, entry: AuditEntry,
                          now: datetime) -> None:
        with self._write() as db:
            changed = db.execute("UPDATE users SET disabled = ? WHERE name = ?",
                                 (int(disabled), name)).rowcount
            if not changed:
                raise NotFound(f"user {name!r} not found")
            self._append_audit(db, entry, now)

    # -- console sessions -----------------------------------------------------

    def open_session(self, id_hash: str, user_id: str, now: datetime, expires_at: datetime,
                     entry: AuditEntry, address: str | None = None,
                     forget: Sequence[str] = ()) -> None:
        """A successful login: store the session, forget the failures counted against
        ``forget`` (throttle subjects), drop expired sessions, audit."""
        stamp = ts(now)
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (stamp,))
            db.execute(
                "INSERT INTO console_sessions (id_hash, user_id, created_at, last_seen_at, "
                "expires_at, address) VALUES (?, ?, ?, ?, ?, ?)",
                (id_hash, user_id, stamp, stamp, ts(expires_at), address),
            )
            db.executemany("DELETE FROM login_throttle WHERE subject = ?",
                           [(subject,) for subject in forget])
            self._append_audit(db, entry, now)

    def find_session(self, id_hash: str, now: datetime) -> ConsoleSession | None:
        """The unexpired session with this id hash and its user (disabled or not)."""
        rows = self._read(
            "SELECT s.id_hash, s.created_at AS s_created, s.last_seen_at, s.expires_at, u.* "
            "FROM console_sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.id_hash = ? AND s.expires_at > ?", (id_hash, ts(now)),
        )
        if not rows:
            return None
        row = rows[0]
        return ConsoleSession(row["id_hash"], _user(row), _ts(row["s_created"]),
                              _ts(row["last_seen_at"]), _ts(row["expires_at"]))

    def touch_session(self, id_hash: str, now: datetime, expires_at: datetime) -> None:
        """The session was used: move its idle expiry on."""
        with self._write() as db:
            db.execute("UPDATE console_sessions SET last_seen_at = ?, expires_at = ? "
                       "WHERE id_hash = ?", (ts(now), ts(expires_at), id_hash))

    def close_session(self, id_hash: str, entry: AuditEntry, now: datetime) -> None:
        """Logout: the session ends at once."""
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE id_hash = ?", (id_hash,))
            self._append_audit(db, entry, now)

    def login_locked_until(self, subjects: Sequence[str], now: datetime) -> datetime | None:
        """The latest lock still in force on any of the subjects, else None."""
        if not subjects:
            return None
        marks = ",".join("?" * len(subjects))
        rows = self._read(
            f"SELECT MAX(locked_until) FROM login_throttle WHERE subject IN ({marks}) "  # noqa: S608
            "AND locked_until > ?", (*subjects, ts(now)),
        )
        return parse_ts(rows[0][0]) if rows else None

    def record_login_failure(self, limits: Sequence[tuple[str, int]], entry: AuditEntry,
                             now: datetime, window: timedelta, lockout: timedelta
                             ) -> datetime | None:
        """Count a failed login against each (subject, limit); a subject reaching its
        limit within ``window`` is locked for ``lockout``. Audits the failure and
        returns the latest lock now in force, else None."""
        locked: list[datetime] = []
        with self._write() as db:
            for subject, limit in limits:
                row = db.execute("SELECT failures, window_start, locked_until FROM "
                                 "login_throttle WHERE subject = ?", (subject,)).fetchone()
                failures, start = (0, now) if row is None else (row[0], _ts(row[1]))
                if row is not None and row[2] is not None and _ts(row[2]) > now:
                    locked.append(_ts(row[2]))
                    continue
                if now - start > window:
                    failures, start = 0, now
                failures += 1
                until = now + lockout if failures >= limit else None
                if until is not None:
                    locked.append(until)
                    failures, start = 0, now
                db.execute(
                    "INSERT INTO login_throttle (subject, failures, window_start, locked_until) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
                    "failures = excluded.failures, window_start = excluded.window_start, "
                    "locked_until = excluded.locked_until",
                    (subject, failures, ts(start), ts(until) if until else None),
                )
            self._append_audit(db, entry, now)
        return max(locked) if locked else None

    def set_password(self, name: str, password_hash: str, entry: AuditEntry,
                     now: datetime) -> None:
        """Set a user's console password; every console session of the user ends."""
        with self._write() as db:
            row = db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, row[0]))
            db.execute("DELETE FROM console_sessions WHERE user_id = ?", (row[0],))
            self._append_audit(db, entry, now)

    # -- audit ----------------------------------------------------------------

    def record_audit(self, entry: AuditEntry, now: datetime) -> None:
        """An audit event on its own (logins, template approvals)."""
        with self._write() as db:
            self._append_audit(db, entry, now)

    def _append_audit(self, db: sqlite3.Connection, entry: AuditEntry, now: datetime) -> None:
        last = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
                          ).fetchone()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
        details = audit.canonical_details(entry.details)
        at = ts(now)
        digest = audit.event_hash(prev_hash, seq, at, entry.actor, entry.address, entry.action,
                                  entry.subject, details)
        db.execute(
            "INSERT INTO audit_events (seq, at, actor, address, action, subject, details, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, entry.actor, entry.address, entry.action, entry.subject, details,
             prev_hash, digest),
        )

    def audit_events(self, limit: int | None = None) -> list[audit.AuditEvent]:
        sql = "SELECT * FROM audit_events ORDER BY seq DESC"
        rows = self._read(sql + " LIMIT ?", (limit,)) if limit else self._read(sql)
        return [
            audit.AuditEvent(r["seq"], r["at"], r["actor"], r["address"], r["action"],
                             r["subject"], json.loads(r["details"]), r["prev_hash"], r["hash"])
            for r in rows
        ]

    def verify_audit(self) -> audit.Break | None:
        rows = self._read(
            "SELECT seq, at, actor, address, action, subject, details, prev_hash, hash "
            "FROM audit_events ORDER BY seq"
        )
        return audit.first_broken(tuple(r) for r in rows)

    # -- backup ---------------------------------------------------------------
    # An online copy for `broadcaster backup`, taken while the daemon runs. It uses
    # a connection of its own and never this Store's writer, so it needs no Store
    # instance (opening one would create or migrate the database).

    @staticmethod
    def backup(source: Path, target: Path) -> BackupReport:
        """Copy the ledger at ``source`` to ``target``, consistently, while it is in use.

        The SQLite backup API copies every page in one step, inside one read
        transaction of a connection that only reads (``query_only``): in WAL mode the
        daemon's writer goes on meanwhile and the copy is the ledger as of one
        moment. (Not ``mode=ro``: with the daemon stopped, a read-only connection
        would leave -wal and -shm files behind, owned by whoever ran the backup.)
        The copy is made beside the target, switched to a rollback journal (one
        self-contained file), checked (``PRAGMA integrity_check`` and the audit
        chain), flushed to disk and only then renamed to ``target``: the target is
        the old file or a whole copy, never half of one.
        """
        if not source.is_file():
            raise StoreUnavailable(f"cannot back up {source}: there is no database file there")
        if target.exists() and target.resolve() == source.resolve():
            raise StoreError(f"{target} is the live database; back up to another file")
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            reader = sqlite3.connect(f"file:{quote(str(source.resolve()))}?mode=rw", uri=True,
                                     timeout=30.0)
        except sqlite3.Error as exc:
            raise _unavailable(exc, source) from None
        try:
            reader.execute("PRAGMA query_only=ON")
            copy = sqlite3.connect(str(partial), isolation_level=None)
            try:
                reader.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                report = _check_copy(copy, target)
            finally:
                copy.close()
            with open(partial, "rb+") as written:
                os.fchmod(written.fileno(), 0o600)
                os.fsync(written.fileno())
            os.replace(partial, target)
            _fsync_directory(target.parent)
        except sqlite3.Error as exc:
            raise StoreError(f"backup of {source} to {target} failed: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot write the backup {target}: {exc.strerror}") from None
        finally:
            reader.close()
            with suppress(OSError):
                partial.unlink()
        return replace(report, size=target.stat().st_size)


# -- backup helpers (see Store.backup) ------------------------------------------

def _check_copy(copy: sqlite3.Connection, target: Path) -> BackupReport:
    """Prove a fresh copy sound before it replaces anything (see Store.backup)."""
    problems = [row[0] for row in copy.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise StoreError(f"the copy failed PRAGMA integrity_check: {'; '.join(problems[:3])}")
    rows = copy.execute(
        "SELECT seq, at, actor, address, action, subject, details, prev_hash, hash "
        "FROM audit_events ORDER BY seq").fetchall()
    broken = audit.first_broken(tuple(r) for r in rows)
    if broken is not None:
        raise StoreError(f"the ledger's audit chain is broken ({broken}); the copy was "
                         "not kept — run `broadcaster audit verify`")

    def count(table: str) -> int:
        return int(copy.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608

    return BackupReport(path=target, size=0,
                        schema_version=int(copy.execute("PRAGMA user_version").fetchone()[0]),
                        alerts=count("alerts"), deliveries=count("deliveries"),
                        users=count("users"), audit_events=len(rows))


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: flush the directory entry too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
    return statements


def _delivery(row: sqlite3.Row) -> Delivery:
    receipt = None
    if row["remote_id"] is not None or row["url"] is not None:
        receipt = Receipt(row["remote_id"], row["url"], json.loads(row["receipt_extra"] or "{}"))
    return Delivery(
        id=row["id"], alert_id=row["alert_id"], channel=row["channel"],
        state=DeliveryState(row["state"]), attempts=row["attempts"], headline=row["headline"],
        text=row["text"], error=row["error"], receipt=receipt, queued_at=_ts(row["queued_at"]),
        not_before=parse_ts(row["not_before"]), first_attempt_at=parse_ts(row["first_attempt_at"]),
        delivered_at=parse_ts(row["delivered_at"]),
    )


def _user(row: sqlite3.Row) -> User:
    return User(id=row["id"], name=row["name"], role=row["role"], token_hash=row["token_hash"],
                password_hash=row["password_hash"], disabled=bool(row["disabled"]),
                created_at=_ts(row["created_at"]))


P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """The Store behind one dedicated thread, for use from the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def run(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, *args,
                                                                            **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()


class DaemonLock:
    """Only one daemon per database: an exclusive lock on ``<database>.lock``."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the lock file {self.path} ({exc.strerror}); the database "
                "folder must be writable for the service (StateDirectory=)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another broadcaster daemon (pid {holder}) is using {self.path.with_suffix('')}"
                "; stop it first — two daemons on one database are not supported"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
