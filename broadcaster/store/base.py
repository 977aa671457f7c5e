"""What every backend provides to the shared SQL: connections, transactions, errors.

The state transitions (``deliveries.py``, ``timeline.py``, ``accounts.py``,
``auditlog.py``, ``reading.py``) are written once, in SQL that SQLite and
PostgreSQL both understand, with ``?`` placeholders. A backend subclass of
``Plumbing`` gives them a transaction (``_write``), a read (``_read``) and a few
named capabilities (``Features``); it overrides a transition only where the two
engines really differ, and callers never ask which engine they talk to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class Row(Protocol):
    """A result row: by position and by column name (sqlite3.Row and ours for psycopg)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction: the subset of DB-API both backends' connections offer."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Sequence[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True)
class Features:
    """What a backend can do that the other cannot; callers ask these, never the engine."""

    name: str  # "sqlite" or "postgresql", for messages and metrics only
    several_nodes: bool  # several daemons may share the ledger
    notifies: bool  # commits wake listeners in other processes (LISTEN/NOTIFY)
    # A commit may wait without end (PostgreSQL holding it for a synchronous standby
    # that is gone), where SQLite gives up after its lock timeout.
    commits_may_hang: bool
    writers: int  # transactions that may run at once in one process
    concurrent_readers: int  # reads that may run beside the writers


class Plumbing(ABC):
    """The backend's half of the contract; the shared transitions build on it."""

    features: Features
    # Appended to a SELECT whose rows the transaction goes on to change, where the
    # backend has several writers (PostgreSQL: " FOR UPDATE"); SQLite has one.
    _for_update = ""

    @abstractmethod
    def _write(self, durable: bool = False) -> AbstractContextManager[Tx]:
        """One write transaction. ``durable``: on disk (and on a synchronous standby,
        where one is configured) before it returns. Raises StoreUnavailable when the
        database cannot take it; rolls back on any exception."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query outside a write transaction."""

    def _lock_audit_chain(self, db: Tx) -> None:
        """Serialise appends to the audit chain within ``db`` (a no-op where the
        backend has one writer at a time)."""
        return None

    def _announce(self, db: Tx, channels: Sequence[str]) -> None:
        """Tell other processes on the ledger, on commit, that these channels have
        work (where the backend ``notifies``; a no-op otherwise)."""
        return None

    def _announce_alert(self, db: Tx, alert_id: str) -> None:
        """``_announce`` the channels of one alert's deliveries."""
        if self.features.notifies:
            rows = db.execute("SELECT channel FROM deliveries WHERE alert_id = ?",
                              (alert_id,)).fetchall()
            self._announce(db, [r[0] for r in rows])

    async def watch_for_work(self, wake: Callable[[Sequence[str] | None], None]) -> None:
        """Call ``wake(channels)`` (None: every channel) whenever another process
        announces work, until cancelled; returns at once where the backend cannot
        announce (one process per ledger: its own lanes are woken directly)."""
        return None

    def attach_reader(self) -> None:
        """Prepare the calling thread for reads beside the writer (``Database.read``)."""
        return None

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


# Every alert of one thread: the root (the parameter) and all that follow it up.
THREAD = """
    WITH RECURSIVE thread(id) AS (
        SELECT id FROM alerts WHERE id = ? UNION SELECT a.id FROM alerts a JOIN thread t
        ON a.references_id = t.id
    )
"""


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?`` for an IN list of these values."""
    return ",".join("?" * len(values))
