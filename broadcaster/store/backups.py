"""Backups of either backend, for `broadcaster backup`.

SQLite: an online copy with SQLite's backup API, checked before it is kept.
PostgreSQL: ``pg_dump`` in its custom format (restore with ``pg_restore``), when
it is installed; otherwise the exact command to run is the error message. Both
write beside the target and rename, so the target is the old file or a whole new
one, never half of either.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from broadcaster import audit
from broadcaster.errors import StoreError, StoreUnavailable
from broadcaster.store.records import BackupReport
from broadcaster.store.sqlite import unavailable

if TYPE_CHECKING:
    from broadcaster.store.postgres import PostgresLedger

def backup_sqlite(source: Path, target: Path) -> BackupReport:
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
        raise unavailable(exc, source) from None
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


# -- backup helpers (see backup_sqlite) ------------------------------------------

def _check_copy(copy: sqlite3.Connection, target: Path) -> BackupReport:
    """Prove a fresh copy sound before it replaces anything (see backup_sqlite)."""
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





def backup_postgres(ledger: PostgresLedger, target: Path) -> BackupReport:
    """Dump the PostgreSQL ledger with ``pg_dump --format=custom`` to ``target``.

    pg_dump reads one consistent snapshot while the daemons go on. The password
    reaches it through ``PGPASSWORD`` in its environment, never its command line.
    The dump is checked by listing it with ``pg_restore --list`` before it replaces
    anything. Without pg_dump (Debian: postgresql-client), the error says what to
    run instead.
    """
    uri = ledger.connection.uri
    command = "pg_dump --format=custom --file=" + str(target)
    dump, restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if dump is None or restore is None:
        raise StoreError(
            "pg_dump is not installed here (Debian: apt install postgresql-client); "
            f"back up the PostgreSQL ledger with: PGPASSWORD=… {command} '{uri}'"
        )
    broken = ledger.verify_audit()
    if broken is not None:
        raise StoreError(f"the ledger's audit chain is broken ({broken}); no backup was "
                         "written — run `broadcaster audit verify`")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    environ = dict(os.environ)
    if ledger.connection.password is not None:
        environ["PGPASSWORD"] = ledger.connection.password
    try:
        commands: list[list[str]] = [
            [dump, "--format=custom", f"--file={partial}", "--no-password", uri],
            [restore, "--list", str(partial)]]
        for argv in commands:
            done = subprocess.run(  # noqa: S603 - a list of arguments, no shell
                argv, env=environ, capture_output=True, text=True, timeout=3600, check=False)
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise StoreError(f"{Path(argv[0]).name} failed: {why}")
        os.chmod(partial, 0o600)
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
        _fsync_directory(target.parent)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror}") from None
    finally:
        with suppress(OSError):
            partial.unlink()
    counts = ledger.table_counts()
    return BackupReport(path=target, size=target.stat().st_size,
                        schema_version=ledger.schema_version, alerts=counts["alerts"],
                        deliveries=counts["deliveries"], users=counts["users"],
                        audit_events=counts["audit_events"], checked="pg_restore reads it")
