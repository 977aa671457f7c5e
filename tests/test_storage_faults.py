"""A ledger that cannot persist: the API answers 503, nothing is accepted or sent,
/readyz says why, and everything works again once the disk does.

The faults are real: the database lives on a small tmpfs that is filled up, or
another program holds SQLite's write lock. A filesystem cannot be remounted
read-only under a process that has files open for writing (the kernel refuses),
so a read-only disk is tested at start-up. Mounting needs root (CI runs as root);
elsewhere those tests skip.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}
BODY = {"template": "evakuierung", "variables": VARIABLES, "mode": "live"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(directory: Path) -> Path:
    """Write until the disk is full. Unbuffered, and the error caught around the whole
    `with`: closing a buffered file on a full disk raises too."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 65536)
    return filler


def _start(tmp_path: Path, disk: Path, sandbox: SandboxThread,
           daemons: list[Daemon]) -> tuple[Daemon, str]:
    port = free_port()
    config = write_config(tmp_path, webhook_channel("leitstelle", sandbox.url),
                          database=disk / "broadcaster.db", port=port)
    token = add_user(config, "duty-1", "officer")
    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    status, alert = daemon.api("POST", "/api/v1/alerts", BODY, token)
    assert status == 201
    # Delivered before the fault: what the sandbox holds afterwards is the baseline.
    wait_for(lambda: any(p["extra"]["id"] == alert["id"] for p in sandbox.posts()),
             message="the first alert's post")
    return daemon, token


def _count(daemon: Daemon, token: str) -> int:
    return len(daemon.api("GET", "/api/v1/alerts?limit=500", token=token)[1]["alerts"])


def test_disk_full_refuses_with_503_and_accepts_nothing(
        tmp_path: Path, small_disk: Path, live_sandbox: SandboxThread,
        daemons: list[Daemon]) -> None:
    daemon, token = _start(tmp_path, small_disk, live_sandbox, daemons)
    alerts_before = _count(daemon, token)
    filler = _fill(small_disk)
    posts_before = len(live_sandbox.posts())

    status, error = daemon.api("POST", "/api/v1/alerts", BODY, token)
    assert status == 503
    assert "disk is full" in error["error"]["message"]
    assert "nothing was accepted" in error["error"]["message"]
    status, ready = daemon.api("GET", "/readyz")
    assert status == 503
    assert any("disk is full" in reason for reason in ready["reasons"])

    filler.unlink()
    assert _count(daemon, token) == alerts_before
    assert len(live_sandbox.posts()) == posts_before
    assert daemon.api("GET", "/readyz")[0] == 200
    status, _ = daemon.api("POST", "/api/v1/alerts", BODY, token)
    assert status == 201


def test_database_locked_by_another_program_refuses_with_503(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    disk = tmp_path / "state"
    disk.mkdir()
    daemon, token = _start(tmp_path, disk, live_sandbox, daemons)
    alerts_before = _count(daemon, token)
    posts_before = len(live_sandbox.posts())
    intruder = sqlite3.connect(disk / "broadcaster.db", isolation_level=None)
    intruder.execute("BEGIN IMMEDIATE")  # an open sqlite3 shell mid-transaction
    try:
        status, error = daemon.api("POST", "/api/v1/alerts", BODY, token, timeout=30)
        assert status == 503
        assert "not writable" in error["error"]["message"]
        status, ready = daemon.api("GET", "/readyz", timeout=30)
        assert status == 503 and "write lock" in " ".join(ready["reasons"])
    finally:
        intruder.execute("ROLLBACK")
        intruder.close()
    assert _count(daemon, token) == alerts_before
    assert len(live_sandbox.posts()) == posts_before
    assert daemon.api("GET", "/readyz")[0] == 200
    assert daemon.api("POST", "/api/v1/alerts", BODY, token)[0] == 201


def test_daemon_on_a_read_only_disk_refuses_to_start(
        tmp_path: Path, small_disk: Path, live_sandbox: SandboxThread) -> None:
    config = write_config(tmp_path, webhook_channel("leitstelle", live_sandbox.url),
                          database=small_disk / "broadcaster.db")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = run_cli("serve", "--config", str(config), timeout=30)
    assert result.returncode == 1
    assert str(small_disk) in result.stderr
    assert "Traceback" not in result.stderr
