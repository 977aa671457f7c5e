"""Operations on the ledger: `broadcaster backup` and `broadcaster db migrate`.

A backup is taken online, while the daemon runs and delivers (see
``broadcaster.store.backups``): it does not stop the service and needs no credentials, only
the configuration to find the database. Given a directory, it names the copy
after the time (``broadcaster-20261123T031209Z.db``) and ``--keep N`` removes the
oldest such copies beyond N, so a systemd timer can run it as is.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from broadcaster.cli.common import EXIT_INVALID, EXIT_OK, CommandFailed, add_config_option, load
from broadcaster.config import POSTGRES_SCHEMES, postgres_uri_problem
from broadcaster.models import utcnow
from broadcaster.store import backup

PREFIX = "broadcaster-"
SUFFIX = ".db"  # a SQLite file
DUMP_SUFFIX = ".dump"  # pg_dump's custom format (pg_restore reads it)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup", help="copy the database consistently while the daemon runs",
        description="SQLite: copy the ledger with SQLite's online backup API; the copy is "
        "checked (integrity, audit chain) before it is kept. Restore: stop the service, put "
        "the copy in place of the database (removing its -wal and -shm files), start the "
        "service. PostgreSQL: pg_dump in its custom format, checked with pg_restore --list; "
        "restore with pg_restore (see docs/operations.md). The daemon keeps running and "
        "delivering either way.",
    )
    backup.add_argument("path", metavar="PATH",
                        help="a file to write, or a directory for a time-stamped copy")
    backup.add_argument("--keep", type=int, metavar="N",
                        help="with a directory: keep only the newest N copies in it")
    add_config_option(backup)
    backup.set_defaults(handler=run_backup)

    db = commands.add_parser("db", help="the ledger database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="copy the SQLite ledger into an empty PostgreSQL database",
        description="Copy every alert, delivery, attempt, user, session and audit event of "
        "the configured SQLite ledger into an empty PostgreSQL database, in one "
        "transaction. Stop the daemon first. The password comes from --password-file, "
        "PGPASSWORD or ~/.pgpass, never from the URI.")
    migrate.add_argument("--to", required=True, metavar="URI",
                         help="postgresql://USER@HOST[,HOST2]/DATABASE")
    migrate.add_argument("--password-file", type=Path, metavar="FILE",
                         help="a file holding the database password")
    add_config_option(migrate)
    migrate.set_defaults(handler=run_migrate)


def run_backup(args: argparse.Namespace) -> int:
    keep: int | None = args.keep
    if keep is not None and keep < 1:
        raise CommandFailed("--keep must be at least 1", EXIT_INVALID)
    database = load(args, secrets=False).service.database
    suffix = SUFFIX if isinstance(database, Path) else DUMP_SUFFIX
    target = Path(args.path)
    directory = target.is_dir() or args.path.endswith("/")  # Path drops a trailing slash
    if directory:
        target.mkdir(parents=True, exist_ok=True)
        target = target / backup_name(utcnow(), suffix)
    elif keep is not None:
        raise CommandFailed("--keep needs a directory as PATH", EXIT_INVALID)
    report = backup(database, target)
    print(f"backup written: {report.path} ({report.size / 1_048_576:.1f} MiB, schema "
          f"{report.schema_version}, {report.alerts} alert(s), {report.deliveries} "
          f"delivery(ies), {report.users} user(s); {report.checked}, audit chain intact with "
          f"{report.audit_events} event(s))")
    if directory and keep is not None:
        for old in prune(target.parent, keep, suffix):
            print(f"removed old backup {old}")
    return EXIT_OK


def backup_name(moment: datetime, suffix: str = SUFFIX) -> str:
    return f"{PREFIX}{moment.strftime('%Y%m%dT%H%M%SZ')}{suffix}"


def prune(directory: Path, keep: int, suffix: str = SUFFIX) -> list[Path]:
    """Delete all but the newest ``keep`` time-stamped copies; returns what went."""
    copies = sorted(p for p in directory.glob(f"{PREFIX}*{suffix}") if p.is_file())
    doomed = copies[:-keep] if len(copies) > keep else []
    for path in doomed:
        path.unlink()
    return doomed


def run_migrate(args: argparse.Namespace) -> int:
    from broadcaster.store.postgres import Connection, PostgresLedger
    from broadcaster.store.sqlite import SqliteLedger
    from broadcaster.store.transfer import copy_ledger

    source = load(args, secrets=False).service.database
    if not isinstance(source, Path):
        raise CommandFailed("the configured ledger is already PostgreSQL; `db migrate` "
                            "copies a SQLite ledger", EXIT_INVALID)
    uri: str = args.to
    problem = (postgres_uri_problem(uri) if uri.startswith(POSTGRES_SCHEMES)
               else "must be a postgresql:// URI")
    if problem is not None:
        raise CommandFailed(f"--to: {problem}", EXIT_INVALID)
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandFailed(f"--password-file {args.password_file}: {exc.strerror}",
                                EXIT_INVALID) from None
    if not source.is_file():
        raise CommandFailed(f"there is no SQLite ledger at {source}", EXIT_INVALID)
    from broadcaster.store.sqlite import DaemonLock

    lock = DaemonLock(source)
    lock.acquire()  # AlreadyRunning: the daemon must be stopped for a consistent copy
    try:
        sqlite = SqliteLedger(source)
        target = PostgresLedger(Connection(uri, password))
        try:
            report = copy_ledger(sqlite, target)
        finally:
            target.close()
            sqlite.close()
    finally:
        lock.release()
    rows = ", ".join(f"{count} {table}" for table, count in report.rows.items())
    print(f"copied {source} into {uri}: {rows}; audit chain verified on the copy")
    print("next: set [service] database to the URI and database_password to the password's "
          "file or variable, then start the service")
    return EXIT_OK
