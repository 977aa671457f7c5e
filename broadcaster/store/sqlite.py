"""The SQLite backend: the embedded default, one file beside the service.

WAL mode; the accept transaction is committed with ``synchronous=FULL`` (on disk
before the API answers), later transitions with NORMAL (durable against a crash
of the process; power loss may lose the last moments of state changes, never an
accepted alert). One writer connection, used from one thread at a time (the
daemon's ledger thread); reads from other threads (``attach_reader``) get a
connection of their own, which WAL lets read while the writer writes.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from broadcaster.errors import AlreadyRunning, StoreError, StoreUnavailable
from broadcaster.store.base import Features, Tx
from broadcaster.store.ledger import Ledger
from broadcaster.store.schema_sqlite import MIGRATIONS, SCHEMA_VERSION

FEATURES = Features(name="sqlite", several_nodes=False, notifies=False,
                    commits_may_hang=False, writers=1, concurrent_readers=2)
_STORE_FULL_HINTS = ("disk is full", "database or disk is full")


def unavailable(exc: sqlite3.Error, path: Path) -> StoreUnavailable:
    """A person's reading of an SQLite error: what is wrong with the file."""
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


class SqliteLedger(Ledger):
    """One SQLite database file."""

    features = FEATURES

    def __init__(self, path: Path) -> None:
        self.path = path
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise unavailable(exc, path) from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc.strerror}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                             timeout=5.0)
        db.row_factory = sqlite3.Row
        return db

    def attach_reader(self) -> None:
        """Give the calling thread a read-only connection of its own (for ``_read``)."""
        reader = self._connect()
        reader.execute("PRAGMA query_only=ON")
        self._readers.connection = reader
        self._reader_connections.append(reader)

    def close(self) -> None:
        for reader in self._reader_connections:
            reader.close()
        self._db.close()

    def __str__(self) -> str:
        return str(self.path)

    def rows(self, sql: str) -> Iterator[Any]:
        """Stream the rows of one query (a copy of the whole ledger), not all at once."""
        yield from self._db.execute(sql)

    # -- schema ---------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this broadcaster "
                f"({SCHEMA_VERSION}); upgrade broadcaster or restore a backup"
            )
        for step in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements(MIGRATIONS[step]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={step + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- plumbing -------------------------------------------------------------

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[Tx]:
        try:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise unavailable(exc, self.path) from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise unavailable(exc, self.path) from None
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

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        db = getattr(self._readers, "connection", None) or self._db
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise unavailable(exc, self.path) from None


def statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit)."""
    found, current = [], []
    for line in script.splitlines():
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement:
                found.append(statement)
            current = []
    return found


class DaemonLock:
    """Only one daemon per SQLite file: an exclusive lock on ``<database>.lock``."""

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
                "; stop it first — several daemons on one ledger need PostgreSQL "
                "([service] database = \"postgresql://…\")"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
