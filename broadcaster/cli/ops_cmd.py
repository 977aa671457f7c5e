"""Operations on the ledger file: `broadcaster backup`.

A backup is taken online, while the daemon runs and delivers (see
``Store.backup``): it does not stop the service and needs no credentials, only
the configuration to find the database. Given a directory, it names the copy
after the time (``broadcaster-20261123T031209Z.db``) and ``--keep N`` removes the
oldest such copies beyond N, so a systemd timer can run it as is.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from broadcaster.cli.common import EXIT_INVALID, EXIT_OK, CommandFailed, add_config_option, load
from broadcaster.models import utcnow
from broadcaster.store import Store

PREFIX = "broadcaster-"
SUFFIX = ".db"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup", help="copy the database consistently while the daemon runs",
        description="Copy the ledger with SQLite's online backup API. The daemon keeps "
        "running and delivering; the copy is checked (integrity, audit chain) before it "
        "is kept. Restore: stop the service, put the copy in place of the database "
        "(removing its -wal and -shm files), start the service.",
    )
    backup.add_argument("path", type=Path, metavar="PATH",
                        help="a file to write, or a directory for a time-stamped copy")
    backup.add_argument("--keep", type=int, metavar="N",
                        help="with a directory: keep only the newest N copies in it")
    add_config_option(backup)
    backup.set_defaults(handler=run_backup)


def run_backup(args: argparse.Namespace) -> int:
    keep: int | None = args.keep
    if keep is not None and keep < 1:
        raise CommandFailed("--keep must be at least 1", EXIT_INVALID)
    database = load(args, secrets=False).service.database
    target: Path = args.path
    directory = target.is_dir() or str(target).endswith("/")
    if directory:
        target.mkdir(parents=True, exist_ok=True)
        target = target / backup_name(utcnow())
    elif keep is not None:
        raise CommandFailed("--keep needs a directory as PATH", EXIT_INVALID)
    report = Store.backup(database, target)
    print(f"backup written: {report.path} ({report.size / 1_048_576:.1f} MiB, schema "
          f"{report.schema_version}, {report.alerts} alert(s), {report.deliveries} "
          f"delivery(ies), {report.users} user(s); integrity ok, audit chain intact with "
          f"{report.audit_events} event(s))")
    if directory and keep is not None:
        for old in prune(target.parent, keep):
            print(f"removed old backup {old}")
    return EXIT_OK


def backup_name(moment: datetime) -> str:
    return f"{PREFIX}{moment.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` time-stamped copies; returns what went."""
    copies = sorted(p for p in directory.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())
    doomed = copies[:-keep] if len(copies) > keep else []
    for path in doomed:
        path.unlink()
    return doomed
