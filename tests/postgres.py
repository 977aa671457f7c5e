"""A real PostgreSQL server for the tests: initdb into a temporary folder, a free port.

Debian's ``postgresql`` package provides the programs (``make test`` installs it
when missing); a missing server is an error, never a skip. PostgreSQL refuses to
run as root, so as root its programs run as the ``postgres`` system user
(``runuser``), in a folder that user owns.

Logins over TCP need a password (scram-sha-256), so tests can prove a wrong one
is refused; the role ``broadcaster`` owns a fresh database per test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

SUPERUSER_PASSWORD = "test-superuser-password"
ROLE = "broadcaster"
ROLE_PASSWORD = "test-ledger-password"


def bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs Debian's "
                       "postgresql package) or apt install postgresql")


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1."""

    def __init__(self, fsync: bool = False) -> None:
        self.bin = bindir()
        self.root = Path(tempfile.mkdtemp(prefix="broadcaster-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.fsync = fsync
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, program: str, *args: str, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / program), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check,
                              timeout=timeout, cwd=self.root)

    def start(self) -> PostgresServer:
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n", encoding="utf-8")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
                  "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8")
        pwfile.unlink()
        settings = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                    f"unix_socket_directories = '{self.root}'", "max_connections = 200",
                    # Test speed only: a crash of this machine is not what is tested.
                    f"fsync = {'on' if self.fsync else 'off'}",
                    "full_page_writes = off" if not self.fsync else "",
                    "log_min_messages = warning"]
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n".join(settings) + "\n")
        self.ctl("start")
        self.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'")
        return self

    def ctl(self, action: str, *extra: str) -> None:
        """pg_ctl start | stop | restart, waiting until it is done."""
        args = ["-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "server.log")]
        if action in ("stop", "restart"):
            args += ["-m", "fast"]
        self._run("pg_ctl", action, *args, *extra)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser (over the socket) and return its output."""
        done = self._run("psql", "-X", "-q", "-t", "-A", "-h", str(self.root),
                         "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-c", statement)
        return done.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the broadcaster role; returns its name."""
        name = name or f"ledger_{secrets.token_hex(6)}"
        self.sql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def restore(self, dump: Path, database: str) -> None:
        """pg_restore a custom-format dump into an empty database, as the guide says."""
        copy = self.root / dump.name
        shutil.copy(dump, copy)
        if self._as_postgres:
            shutil.chown(copy, "postgres")
        self._run("pg_restore", "--no-owner", "--role", ROLE, "-h", str(self.root),
                  "-p", str(self.port), "-U", "postgres", "-d", database, str(copy))

    def uri(self, database: str, user: str = ROLE) -> str:
        """The libpq URI of a database, without a password (it comes separately)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def standby(self, name: str = "standby1") -> PostgresServer:
        """A streaming standby of this server (pg_basebackup), running, and made the
        synchronous one: a commit here returns only once the standby has it."""
        standby = PostgresServer(fsync=self.fsync)
        environment = {**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD}
        argv = [str(self.bin / "pg_basebackup"), "-D", str(standby.data), "-h", "127.0.0.1",
                "-p", str(self.port), "-U", "postgres", "-X", "stream", "-R", "--checkpoint=fast",
                "-d", f"application_name={name}"]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", "env",
                    f"PGPASSWORD={SUPERUSER_PASSWORD}", *argv]
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120,
                       env=environment, cwd=standby.root)
        with open(standby.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\nport = {standby.port}\nunix_socket_directories = "
                       f"'{standby.root}'\n")
        standby.ctl("start")
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
        self.sql("SELECT pg_reload_conf()")
        return standby

    def promote(self) -> None:
        """Make this standby the primary."""
        self._run("pg_ctl", "promote", "-D", str(self.data), "-w", "-t", "60")

    def crash(self) -> None:
        """SIGKILL the postmaster, as a power cut would take the machine."""
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = subprocess.run(["pgrep", "-f", f"-D {self.data}"], capture_output=True,
                                     text=True, check=False)
            if not listing.stdout.strip():
                break
            time.sleep(0.05)
        # Its children notice the dead postmaster and exit; kill any straggler.
        subprocess.run(["pkill", "-9", "-f", str(self.data)], check=False)

    def stop(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            os.kill(int(pidfile.read_text().splitlines()[0]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            return  # crashed: nothing to stop (pg_ctl would wait for it in vain)
        self.ctl("stop")

    def kill(self) -> None:
        """Stop the server and remove its folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_accepting(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port),
                         check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("PostgreSQL did not come up")
