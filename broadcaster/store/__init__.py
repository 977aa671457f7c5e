"""The ledger: every piece of durable state, behind one contract, in SQLite or PostgreSQL.

    records.py      what goes in and comes out (NewAlert, Claim, Outcome, User …)
    base.py         what a backend provides: transactions, reads, capabilities
    ledger.py       Ledger: the contract, every transition written once, composed of
                    deliveries.py (accept, claim, finish, recover, officers' actions)
                    timeline.py   (scheduled sends, reminders, expiry, retention)
                    accounts.py   (users, console sessions, login throttle)
                    auditlog.py   (the hash chain) and reading.py (alerts back out)
    sqlite.py       the embedded default       schema_sqlite.py    its migrations
    postgres.py     the production server      schema_postgres.py  the same versions
    backups.py      `broadcaster backup`       transfer.py         SQLite → PostgreSQL
    runner.py       Database: the ledger on threads, for the event loop
    listener.py     LISTEN for work announced by other processes (PostgreSQL)

Nothing outside this package writes SQL, and nothing outside it asks which
backend it talks to except through ``Ledger.features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from broadcaster.config import PostgresDatabase
from broadcaster.store.ledger import Ledger
from broadcaster.store.records import (
    IDEMPOTENCY_WINDOW,
    SCHEDULED,
    AuditEntry,
    BackupReport,
    Claim,
    ConsoleSession,
    DueDelivery,
    NewAlert,
    NewDelivery,
    NodeRecord,
    Outcome,
    Recovered,
    User,
)
from broadcaster.store.runner import Database

if TYPE_CHECKING:
    from broadcaster.store.postgres import Connection

__all__ = [
    "IDEMPOTENCY_WINDOW", "SCHEDULED", "AuditEntry", "BackupReport", "Claim", "ConsoleSession",
    "Database", "DueDelivery", "Ledger", "NewAlert", "NewDelivery", "NodeRecord", "Outcome",
    "Recovered", "User", "backup", "daemon_lock", "open_database", "open_ledger", "reach",
]


class Lock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


def postgres_connection(database: PostgresDatabase) -> Connection:
    """The backend's connection details for a configured PostgreSQL ledger."""
    from broadcaster.store.postgres import Connection

    database.check_password()
    password = database.password.reveal() if database.password is not None else None
    return Connection(database.uri, password)


def open_ledger(database: Path | PostgresDatabase) -> Ledger:
    """The ledger at ``[service] database``, migrated to the current schema."""
    if isinstance(database, PostgresDatabase):
        from broadcaster.store.postgres import PostgresLedger

        return PostgresLedger(postgres_connection(database))
    from broadcaster.store.sqlite import SqliteLedger

    return SqliteLedger(database)


def open_database(database: Path | PostgresDatabase) -> Database:
    """The ledger behind threads for the daemon (see runner.py)."""
    ledger = open_ledger(database)
    return Database(ledger)


def reach(database: Path | PostgresDatabase) -> None:
    """Prove the ledger's server answers and accepts the login (one connection, closed
    again); DatabaseUnreachable if not. A SQLite file needs no server."""
    if isinstance(database, PostgresDatabase):
        postgres_connection(database).connect().close()


def daemon_lock(database: Path | PostgresDatabase) -> Lock | None:
    """The lock that keeps a second daemon off a SQLite file; None for PostgreSQL,
    where several nodes share the ledger (the node registry keeps names apart)."""
    if isinstance(database, PostgresDatabase):
        return None
    from broadcaster.store.sqlite import DaemonLock

    return DaemonLock(database)


def backup(database: Path | PostgresDatabase, target: Path) -> BackupReport:
    """`broadcaster backup`: a consistent copy of the ledger while the daemon runs."""
    from broadcaster.store import backups

    if isinstance(database, PostgresDatabase):
        from broadcaster.store.postgres import PostgresLedger

        ledger = PostgresLedger(postgres_connection(database))
        try:
            return backups.backup_postgres(ledger, target)
        finally:
            ledger.close()
    return backups.backup_sqlite(database, target)
