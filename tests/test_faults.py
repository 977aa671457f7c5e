"""Faulty channels through the real daemon: each ends where DESIGN.md says, with its
attempts recorded, and the healthy channel is delivered on time regardless."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support import (
    WEBHOOK_SECRET,
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    wait_for,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}


def _webhook(name: str, url: str, secret_env: str = "WEBHOOK_SECRET", extra: str = "") -> str:
    return f"""
[[channel]]
name = "{name}"
kind = "webhook"
url = "{url}/webhook/{name}"
secret = {{ env = "{secret_env}" }}
timeout = 1
give_up_after = 30
{extra}
"""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_each_fault_ends_in_its_prescribed_state(tmp_path: Path,
                                                 live_sandbox: SandboxThread,
                                                 daemons: list[Daemon],
                                                 ledger_database: Path | str) -> None:
    url = live_sandbox.url
    channels = "".join([
        _webhook("healthy", url),
        _webhook("error500", url),
        _webhook("limited", url),
        _webhook("hanging", url),
        _webhook("dropping", url),
        _webhook("dropping_held", url, extra='on_unknown = "hold"'),
        _webhook("revoked", url, secret_env="REVOKED_SECRET"),
    ])
    port = free_port()
    config = write_config(tmp_path, channels, port=port, database=ledger_database)
    token = add_user(config, "duty-1", "officer")
    live_sandbox.fault("webhook", "error", target="error500", value=500, count=2)
    live_sandbox.fault("webhook", "ratelimit", target="limited", value=2, count=1)
    live_sandbox.fault("webhook", "hang", target="hanging", count=1)
    live_sandbox.fault("webhook", "drop_after_receive", target="dropping", count=1)
    live_sandbox.fault("webhook", "drop_after_receive", target="dropping_held", count=1)
    daemon = Daemon(config, port, env={"REVOKED_SECRET": "revoked"})
    daemons.append(daemon.start())

    status, alert = daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, token)
    assert status == 201, alert

    def settled() -> dict[str, Any] | None:
        found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1]
        final = all(d["state"] in ("delivered", "failed", "unknown")
                    for d in found["deliveries"])
        return found if final else None

    done = wait_for(settled, timeout=30, message="every delivery to settle")
    by_channel = {d["channel"]: d for d in done["deliveries"]}

    healthy = by_channel["healthy"]
    assert healthy["state"] == "delivered" and healthy["attempts"] == 1
    latency = (_time(healthy["delivered_at"]) - _time(done["created_at"])).total_seconds()
    assert latency < 1.0, f"the healthy channel waited {latency:.2f} s for the faulty ones"

    assert by_channel["error500"]["state"] == "delivered"
    assert by_channel["error500"]["attempts"] == 3

    limited = by_channel["limited"]
    assert limited["state"] == "delivered" and limited["attempts"] == 2
    waited = (_time(limited["delivered_at"]) - _time(done["created_at"])).total_seconds()
    assert waited >= 2.0, "Retry-After: 2 was not honoured"

    assert by_channel["hanging"]["state"] == "delivered"  # webhooks dedupe: retried
    assert by_channel["hanging"]["attempts"] == 2
    assert by_channel["dropping"]["state"] == "delivered"
    assert by_channel["dropping"]["attempts"] == 2

    held = by_channel["dropping_held"]
    assert held["state"] == "unknown" and held["attempts"] == 1
    assert "connection lost" in held["error"]

    revoked = by_channel["revoked"]
    assert revoked["state"] == "failed" and revoked["attempts"] == 1
    assert "credentials rejected" in revoked["error"]
    assert WEBHOOK_SECRET not in daemon.output() and "revoked" not in revoked["error"]

    status, metrics = daemon.api("GET", "/metrics")
    assert 'broadcaster_delivery_attempts_total{channel="error500",result="retryable"} 2.0' \
        in metrics
    assert 'broadcaster_deliveries_total{channel="revoked",outcome="failed"} 1.0' in metrics
    assert 'broadcaster_deliveries{channel="dropping_held",state="unknown"} 1.0' in metrics


def test_hold_then_officer_retry(tmp_path: Path, live_sandbox: SandboxThread,
                                 daemons: list[Daemon]) -> None:
    port = free_port()
    config = write_config(tmp_path, _webhook("partner", live_sandbox.url,
                                             extra='on_unknown = "hold"'), port=port)
    token = add_user(config, "duty-1", "officer")
    live_sandbox.fault("webhook", "drop_after_receive", target="partner", count=1)
    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    _, alert = daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, token)

    def delivery() -> dict[str, Any]:
        return daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1][
            "deliveries"][0]

    held = wait_for(lambda: (d := delivery())["state"] == "unknown" and d, message="unknown")
    status, retried = daemon.api("POST", f"/api/v1/deliveries/{held['id']}/retry", token=token)
    assert status == 200 and retried["state"] == "queued"
    wait_for(lambda: delivery()["state"] == "delivered", message="delivered after retry")
    status, error = daemon.api("POST", f"/api/v1/deliveries/{held['id']}/retry", token=token)
    assert status == 409 and "only failed or unknown" in error["error"]["message"]
