"""Fixtures: a running sandbox, daemons that are always stopped after a test, and the
ledger on both backends (SQLite and a real PostgreSQL server started for the run)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.server import RunningSandbox, running_sandbox
from broadcaster.store import Ledger
from broadcaster.store.postgres import Connection, PostgresLedger
from broadcaster.store.sqlite import SqliteLedger
from tests.postgres import ROLE_PASSWORD, PostgresServer
from tests.support import LEDGER_PASSWORD_ENV, Daemon, SandboxThread, free_port

BACKENDS = ["sqlite", "postgresql"]
# Daemons and CLI runs started by tests find the PostgreSQL password here.
os.environ[LEDGER_PASSWORD_ENV] = ROLE_PASSWORD


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run; each test gets its own database."""
    server = PostgresServer().start()
    yield server
    server.kill()


def _database(backend: str, directory: Path, server: PostgresServer | None) -> Path | str:
    if backend == "sqlite":
        return directory / "broadcaster.db"
    assert server is not None
    return server.uri(server.create_database())


@pytest.fixture(params=BACKENDS)
def ledger_database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """``[service] database`` for a test that runs on both backends: a SQLite file, or
    a postgresql:// URI of a fresh database (password in $LEDGER_PASSWORD)."""
    server = request.getfixturevalue("postgres_server") if request.param != "sqlite" else None
    return _database(request.param, tmp_path, server)


@pytest.fixture(params=BACKENDS, scope="module")
def module_ledger_database(request: pytest.FixtureRequest,
                           tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """``ledger_database`` for a module's shared daemon."""
    server = request.getfixturevalue("postgres_server") if request.param != "sqlite" else None
    return _database(request.param, tmp_path_factory.mktemp("ledger"), server)


def ledger_for(database: Path | str) -> Ledger:
    """Open the ledger a test's daemon uses, to look inside it."""
    if isinstance(database, Path):
        return SqliteLedger(database)
    return PostgresLedger(Connection(database, ROLE_PASSWORD))


@pytest.fixture
def ledger(ledger_database: Path | str) -> Iterator[Ledger]:
    """An open ledger on each backend, closed after the test."""
    opened = ledger_for(ledger_database)
    yield opened
    opened.close()


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A sandbox in the test's event loop, on free ports."""
    async with running_sandbox(SandboxOptions(port=0, smtp_port=0)) as running:
        yield running


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Collects daemons a test starts, and stops every one of them afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def port() -> int:
    return free_port()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture
def artifacts() -> Path:
    """Where tests leave files for people to look at (screenshots)."""
    path = Path(__file__).resolve().parent.parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def live_sandbox() -> Iterator[SandboxThread]:
    """A sandbox in its own thread, for tests that run the daemon as a subprocess."""
    running = SandboxThread().start()
    yield running
    running.stop()
