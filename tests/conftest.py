"""Fixtures: a running sandbox, and daemons that are always stopped after a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.server import RunningSandbox, running_sandbox
from tests.support import Daemon, SandboxThread, free_port


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
