"""The PostgreSQL backend: the ledger a city can replicate and fail over.

psycopg 3 with a psycopg_pool connection pool: libpq underneath, so multi-host URIs
with ``target_session_attrs=read-write`` find the primary after a failover, and
``.pgpass`` and the ``PG*`` environment work as for every libpq client. Every
connection runs with ``synchronous_commit = on``: a commit returns once the
primary has flushed it (and, where the cluster configures synchronous standbys,
once they have it too), so "accepted" means committed.

Connections are checked when taken from the pool, so after a restart or failover
the pool drops dead connections and reconnects by itself; a call that cannot get a
working connection within ``POOL_TIMEOUT`` raises StoreUnavailable (the API answers
503, nothing half-done: each transition is one transaction).

The shared SQL uses ``?`` placeholders; ``_translate`` rewrites them for psycopg.
Times are ``timestamptz`` columns read back in the ledger's text form
(``records.ts``), so the shared code sees the same values from both backends.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import Buffer
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import RowMaker
from psycopg.types.datetime import TimestamptzLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from broadcaster.errors import (
    DatabaseUnreachable,
    StoreError,
    StoreUnavailable,
)
from broadcaster.store.base import Features, Tx
from broadcaster.store.deliveries import DUE_COLUMNS, DUE_WHERE
from broadcaster.store.ledger import Ledger
from broadcaster.store.records import AuditEntry, Lease, NewAlert, ts
from broadcaster.store.schema_postgres import MIGRATIONS, SCHEMA_VERSION

# The pool warns at every failed connection attempt while the server is away; the
# daemon says it once (ledger.unavailable) and again when it is back.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

FEATURES = Features(name="postgresql", several_nodes=True, notifies=True,
                    commits_may_hang=True, writers=4, concurrent_readers=4)
MIN_SERVER_VERSION = 130000  # PostgreSQL 13
POOL_TIMEOUT = 3.0  # seconds a call waits for a working connection before 503
CONNECT_TIMEOUT = 5  # libpq connect_timeout, unless the URI sets one
WORK_CHANNEL = "broadcaster_work"  # LISTEN/NOTIFY: channels with new work
NOTIFY_PAYLOAD_MAX = 7000  # PostgreSQL's limit is 8000 bytes; beyond: wake every lane
# Advisory lock keys (arbitrary, fixed): the audit chain, migrations.
_AUDIT_LOCK = 7_251_001
_MIGRATION_LOCK = 7_251_002


# The server answered and said no: waiting for it will not help (a server that is
# starting up, shutting down or full says other words, and may take us later).
_REFUSALS = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
             "permission denied", "role", "authentication failed")


@dataclass(frozen=True)
class Connection:
    """Where the ledger is: a libpq URI without a password, and the password if
    configured (else libpq's own ``.pgpass`` and ``PGPASSWORD`` apply)."""

    uri: str
    password: str | None = None

    def kwargs(self) -> dict[str, Any]:
        # Keepalives: a connection to a server that vanished without a word (a cut
        # network, a frozen host) fails within about half a minute instead of hanging.
        extra: dict[str, Any] = {"application_name": "broadcaster", "keepalives": 1,
                                 "keepalives_idle": 10, "keepalives_interval": 5,
                                 "keepalives_count": 3}
        if "connect_timeout" not in conninfo_to_dict(self.uri):
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if self.password is not None:
            extra["password"] = self.password
        return extra

    @property
    def hosts(self) -> str:
        """The server(s) for messages: hosts, ports and database, never a password."""
        params = conninfo_to_dict(self.uri)
        hosts = str(params.get("host") or "the local socket").split(",")
        ports = str(params.get("port") or "").split(",")
        if len(ports) == 1:
            ports = ports * len(hosts)
        servers = ",".join(f"{host}:{port}" if port else host
                           for host, port in zip(hosts, ports, strict=False))
        return f"{servers}/{params.get('dbname') or params.get('user') or ''}"

    def connect(self) -> psycopg.Connection[Any]:
        """One direct connection (autocommit), or DatabaseUnreachable saying why."""
        try:
            return psycopg.connect(self.uri, autocommit=True, **self.kwargs())
        except psycopg.OperationalError as exc:
            # libpq gives no SQLSTATE for a failed connection, only the server's words.
            refused = any(words in str(exc) for words in _REFUSALS)
            raise DatabaseUnreachable(
                f"cannot connect to the PostgreSQL ledger at {self.hosts}: {describe(exc)}; "
                "check [service] database and database_password, and that the server "
                "runs and accepts this host", may_come_back=not refused,
            ) from None


_DUE_LATERAL = f"""
    SELECT t.* FROM unnest(CAST(? AS text[]), CAST(? AS integer[])) AS c(channel, n)
    CROSS JOIN LATERAL (
        SELECT {DUE_COLUMNS} FROM deliveries d JOIN alerts a ON a.id = d.alert_id
        WHERE d.channel = c.channel COLLATE "C" AND {DUE_WHERE}
        ORDER BY d.queued_at, d.id LIMIT c.n
        FOR UPDATE OF d SKIP LOCKED) t"""  # noqa: S608 - constants


@functools.lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (no literal in our SQL
    contains a question mark; a literal percent sign is doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgRow:
    """A result row by position and by column name, like sqlite3.Row."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: Mapping[str, int]) -> None:
        self._values = values
        self._names = names

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return functools.partial(PgRow, names=names)


class _LedgerTime(TimestamptzLoader):
    """timestamptz as the ledger's text form (``records.ts``)."""

    def load(self, data: Buffer) -> str:  # type: ignore[override]
        moment: datetime = super().load(data)
        return ts(moment)


def _configure(connection: psycopg.Connection[Any]) -> None:
    connection.adapters.register_loader("timestamptz", _LedgerTime)
    connection.row_factory = _rows
    connection.execute("SET synchronous_commit = on")


class _PgTx:
    """An open transaction with the shared SQL's placeholders."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self._connection.execute(_translate(sql), parameters)

    def executemany(self, sql: str, seq_of_parameters: Sequence[Sequence[Any]], /) -> None:
        if seq_of_parameters:
            with self._connection.cursor() as cursor:
                cursor.executemany(_translate(sql), seq_of_parameters)


class _KeyRace(Exception):
    """Two accepts with one Idempotency-Key committed at the same moment."""


def describe(exc: BaseException) -> str:
    """libpq's first line, without the noise (it never contains the password)."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first.removeprefix("connection failed: ")


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database (13 or newer)."""

    features = FEATURES

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        with self._first_contact() as first:
            self._check_server(first)
            self._migrate(first)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            connection.uri, kwargs={**connection.kwargs(), "autocommit": True},
            min_size=1, max_size=FEATURES.writers + FEATURES.concurrent_readers + 1,
            configure=_configure, check=ConnectionPool.check_connection,
            timeout=POOL_TIMEOUT, reconnect_timeout=60.0, name="ledger", open=False,
        )
        self._pool.open(wait=False)

    def __str__(self) -> str:
        return f"PostgreSQL {self.connection.hosts}"

    def close(self) -> None:
        self._pool.close()

    # -- start-up -------------------------------------------------------------

    @contextmanager
    def _first_contact(self) -> Iterator[psycopg.Connection[Any]]:
        """One direct connection, so a wrong host or password fails at once and
        clearly instead of after the pool's retries."""
        first = self.connection.connect()
        try:
            _configure(first)
            yield first
        finally:
            first.close()

    def _check_server(self, connection: psycopg.Connection[Any]) -> None:
        problem = server_version_problem(connection.info.server_version)
        if problem is not None:
            raise StoreError(f"the PostgreSQL server at {self.connection.hosts} {problem}")

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        # Several nodes may start together: one migrates, the others wait for it.
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                version = _schema_version(connection)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the PostgreSQL ledger at {self.connection.hosts} has schema "
                        f"version {version}, newer than this broadcaster ({SCHEMA_VERSION}); "
                        "upgrade broadcaster or restore a backup"
                    )
                for step in range(version, SCHEMA_VERSION):
                    with connection.transaction():
                        connection.execute(MIGRATIONS[step].encode())
                        connection.execute(
                            "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (str(step + 1),))
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot migrate the PostgreSQL ledger at "
                                   f"{self.connection.hosts}: {describe(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot migrate the PostgreSQL ledger at "
                             f"{self.connection.hosts}: {describe(exc)}; the database user "
                             "needs CREATE on the schema") from None

    @property
    def schema_version(self) -> int:
        with self._pool.connection() as connection:
            return _schema_version(connection)

    # -- plumbing -------------------------------------------------------------

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[Tx]:
        # Every commit is durable here (synchronous_commit = on for every connection).
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield _PgTx(connection)
        except pg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "alerts_idempotency":
                raise _KeyRace from None
            raise self._unavailable(exc) from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._unavailable(exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._pool.connection() as connection:
                return connection.execute(_translate(sql), params).fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def raw_transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on a plain connection, for this package's bulk copy only."""
        with self._pool.connection() as connection, connection.transaction():
            yield connection

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Any database error as the API's 503: the server's problem, not the caller's,
        and the transaction was rolled back."""
        why = ("no working connection" if isinstance(exc, PoolTimeout) else describe(exc))
        return StoreUnavailable(
            f"cannot persist to the PostgreSQL ledger at {self.connection.hosts} ({why}); "
            "nothing was accepted"
        )

    def _lock_audit_chain(self, db: Tx) -> None:
        # Held to the end of the transaction: appends from every process take turns.
        db.execute("SELECT pg_advisory_xact_lock(?)", (_AUDIT_LOCK,))

    def _announce(self, db: Tx, channels: Sequence[str]) -> None:
        payload = ",".join(sorted(set(channels)))
        if len(payload.encode()) > NOTIFY_PAYLOAD_MAX:
            payload = "*"
        db.execute("SELECT pg_notify(?, ?)", (WORK_CHANNEL, payload))

    async def watch_for_work(self, wake: Callable[[Sequence[str] | None], None]) -> None:
        from broadcaster.store.listener import listen_for_work

        await listen_for_work(self.connection, wake)

    _for_update = " FOR UPDATE"

    _claim_skip = " FOR UPDATE SKIP LOCKED"

    # Bulk writes as one statement over arrays: one round trip instead of one per row.

    def _mark_claimed(self, db: Tx, claimed: Sequence[tuple[str, int]], stamp: str,
                      lease: Lease | None) -> None:
        ids, numbers = [c[0] for c in claimed], [c[1] for c in claimed]
        db.execute(
            "UPDATE deliveries d SET state = 'sending', attempts = v.number, "
            "first_attempt_at = COALESCE(d.first_attempt_at, CAST(? AS timestamptz)), "
            "updated_at = CAST(? AS timestamptz), lease_node = ?, "
            "lease_until = CAST(? AS timestamptz) "
            "FROM unnest(CAST(? AS text[]), CAST(? AS integer[])) AS v(id, number) "
            "WHERE d.id = v.id COLLATE \"C\"",
            (stamp, stamp, lease.node if lease else None, ts(lease.until) if lease else None,
             ids, numbers))
        db.execute(
            "INSERT INTO attempts (delivery_id, number, started_at) "
            "SELECT v.id, v.number, CAST(? AS timestamptz) "
            "FROM unnest(CAST(? AS text[]), CAST(? AS integer[])) AS v(id, number)",
            (stamp, ids, numbers))

    def _save_budgets(self, db: Tx, budgets: dict[str, float], stamp: str) -> None:
        db.execute(
            "UPDATE channel_budgets b SET tokens = v.tokens, updated_at = CAST(? AS timestamptz) "
            "FROM unnest(CAST(? AS text[]), CAST(? AS double precision[])) AS v(channel, tokens) "
            "WHERE b.channel = v.channel COLLATE \"C\"",
            (stamp, list(budgets), list(budgets.values())))

    def _due_rows(self, db: Tx, wants: dict[str, int], stamp: str) -> dict[str, list[Any]]:
        """Every channel's due deliveries in one round trip (LATERAL over the channels).
        Claims lock the rows they take; another node claiming at the same moment skips
        them instead of waiting for them or taking them twice."""
        found: dict[str, list[Any]] = {channel: [] for channel in wants}
        if wants:
            rows = db.execute(_DUE_LATERAL, (list(wants), [n + 1 for n in wants.values()],
                                             stamp)).fetchall()
            for row in rows:
                found[row[1]].append(row)
        return found

    def accept_alert(self, alert: NewAlert, entry: AuditEntry) -> tuple[str, bool]:
        try:
            return super().accept_alert(alert, entry)
        except _KeyRace:
            # The same key committed a moment ago by a parallel request: now it is
            # found, and answered as the repeat it is.
            return super().accept_alert(alert, entry)


def server_version_problem(version: int) -> str | None:
    """Why a server of this version (libpq's number, e.g. 150018) cannot hold the ledger."""
    if version < MIN_SERVER_VERSION:
        return (f"is version {version // 10000}; broadcaster needs PostgreSQL 13 or newer: "
                "upgrade the server")
    return None


def _schema_version(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else 0
