"""`broadcaster backup`: a consistent copy taken while the daemon accepts and delivers.
The copy passes PRAGMA integrity_check, holds every alert accepted before it began,
its audit chain verifies, and a daemon starts on it — the restore."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

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
CHANNELS = ("leitstelle", "presse", "partner")


class Sender(threading.Thread):
    """Keeps an officer sending alerts until stopped, as during a busy night."""

    def __init__(self, daemon: Daemon, token: str) -> None:
        super().__init__(name="sender", daemon=True)
        self.daemon_under_test = daemon
        self.token = token
        self.accepted: list[str] = []
        self.refused: list[object] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            status, alert = self.daemon_under_test.api("POST", "/api/v1/alerts", {
                "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, self.token)
            if status == 201:
                self.accepted.append(alert["id"])
            else:
                self.refused.append(alert)


def test_a_backup_taken_while_delivering_is_consistent_and_restores(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    port = free_port()
    channels = "".join(webhook_channel(name, live_sandbox.url, extra="max_in_flight = 4")
                       for name in CHANNELS)
    config = write_config(tmp_path, channels, port=port)
    officer = add_user(config, "duty-1", "officer")
    live_sandbox.fault("webhook", "latency", value=50)  # deliveries stay in flight a while
    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    sender = Sender(daemon, officer)
    sender.start()
    try:
        wait_for(lambda: len(sender.accepted) >= 10, timeout=20, message="ten alerts accepted")
        before = list(sender.accepted)
        copy = tmp_path / "backups" / "copy.db"
        copy.parent.mkdir()
        result = run_cli("backup", str(copy), "--config", str(config))
        during = len(sender.accepted)
        wait_for(lambda: len(sender.accepted) >= during + 5, timeout=20,
                 message="the daemon to go on accepting after the backup")
    finally:
        sender.stopping.set()
        sender.join(20)
    assert result.returncode == 0, result.stderr
    assert "backup written" in result.stdout and "audit chain intact" in result.stdout
    assert sender.refused == []

    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        in_copy = {row[0] for row in db.execute("SELECT id FROM alerts")}
        deliveries = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        in_flight = db.execute("SELECT COUNT(*) FROM deliveries WHERE state IN "
                               "('queued', 'sending')").fetchone()[0]
    assert set(before) <= in_copy
    assert in_flight > 0  # taken mid-delivery: the restore has to finish those
    assert deliveries == len(in_copy) * len(CHANNELS)  # never an alert without its deliveries
    assert not Path(f"{copy}-wal").exists()
    assert copy.stat().st_mode & 0o077 == 0  # as private as the database
    assert daemon.stop() == 0

    # Restore: a daemon on the copy, as after `cp` over /var/lib/broadcaster/broadcaster.db.
    restored_port = free_port()
    restored_config = tmp_path / "restored.toml"
    restored_config.write_text(
        config.read_text().replace(f":{port}", f":{restored_port}").replace(
            str(tmp_path / "broadcaster.db"), str(copy)))
    verified = run_cli("audit", "verify", "--config", str(restored_config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    live_sandbox.clear_faults()
    restored = Daemon(restored_config, restored_port)
    daemons.append(restored.start())

    def all_resolved() -> bool:
        alerts = restored.api("GET", "/api/v1/alerts?limit=500", token=officer)[1]["alerts"]
        return {a["id"] for a in alerts} == in_copy and all(
            d["state"] == "delivered" for a in alerts for d in a["deliveries"])

    wait_for(all_resolved, timeout=30, message="the restored daemon to deliver everything")
    assert restored.stop() == 0


def test_a_directory_gets_time_stamped_copies_and_keep_prunes_the_oldest(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, webhook_channel("leitstelle", "http://127.0.0.1:9"))
    add_user(config, "duty-1", "officer")  # creates the database
    backups = tmp_path / "backups"
    backups.mkdir()
    old = [backups / f"broadcaster-2026010{day}T023000Z.db" for day in (1, 2, 3)]
    for path in old:
        path.write_bytes(b"an older copy")
    (backups / "notes.txt").write_text("not a backup")
    result = run_cli("backup", str(backups), "--keep", "2", "--config", str(config))
    assert result.returncode == 0, result.stderr
    # With the daemon stopped, the backup leaves no -wal/-shm files of its own behind
    # (they would belong to whoever ran it, and the service could not write them).
    assert sorted(p.name for p in tmp_path.glob("broadcaster.db*")) == ["broadcaster.db"]
    oldest_kept, fresh, notes = sorted(p.name for p in backups.iterdir())
    assert (oldest_kept, notes) == (old[2].name, "notes.txt")
    assert re.fullmatch(r"broadcaster-\d{8}T\d{6}Z\.db", fresh) and fresh > oldest_kept
    with sqlite3.connect(f"file:{backups / fresh}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert "removed old backup" in result.stdout


def test_backup_refuses_what_makes_no_sense(tmp_path: Path) -> None:
    config = write_config(tmp_path, webhook_channel("leitstelle", "http://127.0.0.1:9"))
    database = tmp_path / "broadcaster.db"
    missing = run_cli("backup", str(tmp_path / "copy.db"), "--config", str(config))
    assert missing.returncode == 1 and "no database file" in missing.stderr
    assert not database.exists()
    add_user(config, "duty-1", "officer")
    onto_itself = run_cli("backup", str(database), "--config", str(config))
    assert onto_itself.returncode == 1 and "live database" in onto_itself.stderr
    keep_for_a_file = run_cli("backup", str(tmp_path / "copy.db"), "--keep", "3",
                              "--config", str(config))
    assert keep_for_a_file.returncode == 2 and "--keep" in keep_for_a_file.stderr
