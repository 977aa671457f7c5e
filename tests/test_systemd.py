"""systemd: the sd_notify client, the daemon's READY → WATCHDOG → STOPPING sequence
on a real datagram socket, and the unit files as systemd-analyze sees them."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from broadcaster.app import SHUTDOWN_GRACE
from broadcaster.systemd import Notifier, keep_alive, watchdog_interval
from tests.support import REPO, Daemon, eventually, free_port, http, webhook_channel, write_config

UNITS = REPO / "systemd"
INSTALLED_EXECUTABLE = "/opt/broadcaster/venv/bin/broadcaster"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")


class Receiver:
    """An AF_UNIX datagram socket standing in for systemd's notify socket; records
    each message with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.socket.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().split("\n")))

    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, lines in self.messages for line in lines]

    def times_of(self, line: str) -> list[float]:
        with self._lock:
            return [at for at, lines in self.messages if line in lines]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    form = getattr(request, "param", "abstract")
    if form == "path":
        address = str(tmp_path / "notify")
        if len(address) > 100:  # sun_path holds 108 bytes
            address = f"/tmp/broadcaster-notify-{uuid.uuid4().hex[:12]}"
    else:
        address = f"@broadcaster-test-{uuid.uuid4().hex}"
    running = Receiver(address)
    yield running
    running.close()
    if form == "path":
        Path(address).unlink(missing_ok=True)


# -- the sd_notify client ------------------------------------------------------

def test_notify_socket_forms() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == b"\0abstract"
    assert Notifier({"NOTIFY_SOCKET": "/run/systemd/notify"}).address == "/run/systemd/notify"
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        unset = Notifier(environ)
        assert not unset.enabled
        assert unset.notify("READY=1") is False  # nothing to talk to: does nothing


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    own = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(own) == 15.0
    # Inherited by a child process: not meant for it.
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    for environ in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}):
        assert watchdog_interval(environ) is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    assert notifier.notify("WATCHDOG=1") is False
    notifier.close()


async def test_watchdog_pings_stop_while_the_event_loop_is_blocked(receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address})
    pinger = asyncio.create_task(keep_alive(notifier, 0.02))

    def pings_beyond(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(receiver.times_of("WATCHDOG=1")) >= count
        return check

    try:
        await eventually(pings_beyond(3), timeout=5, message="three pings")
        blocked_from = time.monotonic()
        time.sleep(0.5)  # the fault: a handler that blocks the event loop
        blocked_until = time.monotonic()
        seen = len(receiver.times_of("WATCHDOG=1"))
        await eventually(pings_beyond(seen + 2), timeout=5,
                         message="pings after the loop is free again")
    finally:
        pinger.cancel()
        notifier.close()
    pings = receiver.times_of("WATCHDOG=1")
    assert [t for t in pings if blocked_from + 0.05 < t < blocked_until] == []
    assert any(t > blocked_until for t in pings)


# -- the daemon under a notify socket ------------------------------------------

@pytest.mark.parametrize("receiver", ["path", "abstract"], indirect=True)
def test_daemon_reports_ready_then_watchdog_then_stopping(
        tmp_path: Path, receiver: Receiver, daemons: list[Daemon]) -> None:
    port = free_port()
    config = write_config(tmp_path, webhook_channel("leitstelle", "http://127.0.0.1:9"),
                          port=port)
    daemon = Daemon(config, port, env={"NOTIFY_SOCKET": receiver.address,
                                       "WATCHDOG_USEC": "300000"})  # ping every 0.15 s
    daemons.append(daemon.start(wait=False))
    assert daemon.process is not None

    _wait(lambda: "READY=1" in receiver.lines(), daemon, "READY=1")
    # READY=1 means: ledger open, channels started, port listening.
    assert http("GET", daemon.url + "/readyz")[0] == 200
    _wait(lambda: len(receiver.times_of("WATCHDOG=1")) >= 3, daemon, "three watchdog pings")
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(20) == 0, daemon.output()
    _wait(lambda: "STOPPING=1" in receiver.lines(), daemon, "STOPPING=1", running=False)

    lines = receiver.lines()
    order = [line for line in lines if line in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
    first_ping, stopping = order.index("WATCHDOG=1"), order.index("STOPPING=1")
    assert order[0] == "READY=1" and order.count("READY=1") == 1
    assert first_ping == 1 and order[first_ping:stopping] == ["WATCHDOG=1"] * (stopping - 1)
    assert order[stopping:] == ["STOPPING=1"]
    assert any(line.startswith("STATUS=serving http://127.0.0.1:") for line in lines)
    assert any(line.startswith("STATUS=stopping") for line in lines)


def _wait(condition: Callable[[], bool], daemon: Daemon, what: str,
          running: bool = True) -> bool:
    assert daemon.process is not None
    deadline = time.monotonic() + 20
    while not condition():
        if running and daemon.process.poll() is not None:
            raise AssertionError(f"daemon exited before {what}:\n{daemon.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{daemon.output()}")
        time.sleep(0.02)
    return True


# -- the unit files --------------------------------------------------------------

def _unit(path: Path) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat; sections do not matter here)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_unit_is_a_watched_notify_service_with_credentials() -> None:
    unit = _unit(UNITS / "broadcaster.service")
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["broadcaster"]
    assert float(unit["WatchdogSec"][0]) >= 10
    # The stop is bounded by the request drain plus the dispatcher's grace.
    assert float(unit["TimeoutStopSec"][0]) >= 2 * SHUTDOWN_GRACE + 10
    assert unit["ExecStart"] == [f"{INSTALLED_EXECUTABLE} serve --wait-for-database "
                                 "--config /etc/broadcaster/channels.toml"]
    credentials = [value.split(":", 1) for value in unit["LoadCredential"]]
    assert credentials and all(path == f"/etc/broadcaster/credentials/{name}"
                               for name, path in credentials)


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["broadcaster.service", "broadcaster-backup.service"])
def test_security_exposure_is_at_most_2(unit: str) -> None:
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=true", str(UNITS / unit)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) <= 2.0, result.stdout
    assert "Unknown key" not in result.stderr, result.stderr


@needs_systemd_analyze
def test_units_verify_cleanly(tmp_path: Path) -> None:
    """verify checks that ExecStart= exists: the copies point at this checkout's
    console script instead of the installed path."""
    executable = Path(sys.executable).with_name("broadcaster")
    assert executable.is_file(), "the package is not installed in this environment"
    names = ["broadcaster.service", "broadcaster-backup.service", "broadcaster-backup.timer"]
    for name in names:
        text = (UNITS / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED_EXECUTABLE, str(executable)))
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
