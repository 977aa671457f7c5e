"""People: users and their tokens, console sessions, and the login throttle.

Console sessions and the throttle live in the ledger, not in memory, so a login
survives a restart and the throttle counts across every process on the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from broadcaster.errors import Conflict, NotFound
from broadcaster.store.auditlog import AuditLog
from broadcaster.store.base import marks
from broadcaster.store.records import AuditEntry, ConsoleSession, User, from_ts, parse_ts, ts


class Accounts(AuditLog):
    # -- users ----------------------------------------------------------------

    def add_user(self, user: User, entry: AuditEntry) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user.name,)).fetchone():
                raise Conflict(f"user {user.name!r} exists already")
            db.execute(
                "INSERT INTO users (id, name, role, token_hash, password_hash, disabled, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user.id, user.name, user.role, user.token_hash, user.password_hash,
                 user.disabled, ts(user.created_at)),
            )
            self._append_audit(db, entry, user.created_at)

    def get_user(self, user_id: str) -> User | None:
        rows = self._read("SELECT * FROM users WHERE id = ?", (user_id,))
        return user_from_row(rows[0]) if rows else None

    def find_user(self, name: str) -> User | None:
        rows = self._read("SELECT * FROM users WHERE name = ?", (name,))
        return user_from_row(rows[0]) if rows else None

    def list_users(self) -> list[User]:
        return [user_from_row(r) for r in self._read("SELECT * FROM users ORDER BY name")]

    def set_user_disabled(self, name: str, disabled: bool, entry: AuditEntry,
                          now: datetime) -> None:
        with self._write() as db:
            changed = db.execute("UPDATE users SET disabled = ? WHERE name = ?",
                                 (disabled, name)).rowcount
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
        return ConsoleSession(row["id_hash"], user_from_row(row), from_ts(row["s_created"]),
                              from_ts(row["last_seen_at"]), from_ts(row["expires_at"]))

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
        rows = self._read(
            f"SELECT MAX(locked_until) FROM login_throttle WHERE subject IN ({marks(subjects)}) "  # noqa: S608
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
                # The row exists first, then is locked: failures counted on several
                # nodes at the same moment all count.
                db.execute("INSERT INTO login_throttle (subject, failures, window_start) "
                           "VALUES (?, 0, ?) ON CONFLICT (subject) DO NOTHING",
                           (subject, ts(now)))
                row = db.execute("SELECT failures, window_start, locked_until FROM "  # noqa: S608 - constants
                                 "login_throttle WHERE subject = ?" + self._for_update,
                                 (subject,)).fetchone()
                failures, start = (0, now) if row is None else (row[0], from_ts(row[1]))
                if row is not None and row[2] is not None and from_ts(row[2]) > now:
                    locked.append(from_ts(row[2]))
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


def user_from_row(row: Any) -> User:
    return User(id=row["id"], name=row["name"], role=row["role"], token_hash=row["token_hash"],
                password_hash=row["password_hash"], disabled=bool(row["disabled"]),
                created_at=from_ts(row["created_at"]))
