"""Crash safety: kill -9 with deliveries in flight, restart, and one daemon per database."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.support import (
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    http,
    run_cli,
    wait_for,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}
CHANNELS = ["partner1", "partner2", "partner3", "partner4", "held"]
ALERTS = 10  # × 5 channels = 50 deliveries in flight


def _channels(url: str) -> str:
    blocks = []
    for name in CHANNELS:
        policy = 'on_unknown = "hold"' if name == "held" else ""
        blocks.append(f"""
[[channel]]
name = "{name}"
kind = "webhook"
url = "{url}/webhook/{name}"
secret = {{ env = "WEBHOOK_SECRET" }}
max_in_flight = {ALERTS}
rate = 100
timeout = 30
{policy}
""")
    return "".join(blocks)


def _sending(daemon: Daemon) -> int:
    metrics = http("GET", daemon.url + "/metrics")[1]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("broadcaster_deliveries{") and 'state="sending"' in line)


def test_kill_9_with_50_deliveries_in_flight_loses_nothing(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        ledger_database: Path | str) -> None:
    port = free_port()
    config = write_config(tmp_path, _channels(live_sandbox.url), port=port,
                          database=ledger_database)
    token = add_user(config, "duty-1", "officer")
    live_sandbox.fault("webhook", "latency", value=60_000)  # every request hangs a minute
    first = Daemon(config, port)
    daemons.append(first.start())
    accepted = []
    for _ in range(ALERTS):
        status, alert = first.api("POST", "/api/v1/alerts", {
            "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, token)
        assert status == 201
        accepted.append(alert["id"])
    wait_for(lambda: _sending(first) == ALERTS * len(CHANNELS), timeout=15,
             message="50 deliveries in flight")

    first.kill()
    live_sandbox.clear_faults()
    second = Daemon(config, port)
    daemons.append(second.start())

    def settled() -> list[dict[str, Any]] | None:
        found = [second.api("GET", f"/api/v1/alerts/{i}", token=token)[1] for i in accepted]
        final = all(d["state"] in ("delivered", "unknown", "failed")
                    for a in found for d in a["deliveries"])
        return found if final else None

    alerts = wait_for(settled, timeout=30, message="every delivery to be resolved")
    listed = second.api("GET", "/api/v1/alerts?limit=100", token=token)[1]["alerts"]
    assert {a["id"] for a in listed} == set(accepted)
    for alert in alerts:
        states = {d["channel"]: d["state"] for d in alert["deliveries"]}
        assert set(states) == set(CHANNELS)
        assert states.pop("held") == "unknown"  # cannot dedupe: an officer decides
        assert set(states.values()) == {"delivered"}
        held = next(d for d in alert["deliveries"] if d["channel"] == "held")
        assert "stopped during attempt 1" in held["error"]

    alert_of_key: dict[str, set[str]] = defaultdict(set)
    for post in live_sandbox.posts("webhook"):
        alert_of_key[post["idempotency_key"]].add(post["extra"]["id"])
    assert all(len(ids) == 1 for ids in alert_of_key.values())
    assert not any(p["target"] == "held" for p in live_sandbox.posts("webhook"))


def test_a_second_daemon_on_the_same_ledger_under_the_same_name_refuses_to_start(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        ledger_database: Path | str) -> None:
    port = free_port()
    config = write_config(tmp_path, _channels(live_sandbox.url), port=port,
                          database=ledger_database)
    first = Daemon(config, port)
    daemons.append(first.start())
    second_config = tmp_path / "second.toml"
    second_config.write_text(config.read_text().replace(f":{port}", f":{free_port()}"))
    result = run_cli("serve", "--config", str(second_config), timeout=60)
    assert result.returncode == 1
    if isinstance(ledger_database, Path):  # SQLite names the process holding the file
        assert "another broadcaster daemon" in result.stderr
        assert "need PostgreSQL" in result.stderr
        assert str(first.process.pid) in result.stderr  # type: ignore[union-attr]
    else:  # several nodes may share PostgreSQL, but each under its own name
        assert "is already running" in result.stderr and "--node" in result.stderr
    assert "Traceback" not in result.stderr
    assert http("GET", first.url + "/readyz")[0] == 200
