"""Scheduled alerts, health checks and their CLI through the real daemon."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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

VARIABLES = {"area": "Oberwerth", "reason": "Entschärfung einer Fliegerbombe",
             "until": "09:00", "shelter": "Rhein-Mosel-Halle"}


def _at(seconds: float) -> datetime:
    """A moment ahead, to the millisecond, as it travels in the API."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _start(tmp_path: Path, sandbox: SandboxThread, daemons: list[Daemon],
           extra: str = "", database: Path | str | None = None) -> tuple[Daemon, str]:
    port = free_port()
    config = write_config(tmp_path, webhook_channel("leitstelle", sandbox.url) + extra,
                          port=port, database=database)
    token = add_user(config, "duty-1", "officer")
    daemon = Daemon(config, port, env={"TELEGRAM_TOKEN": "123456:sandbox-token"})
    daemons.append(daemon.start())
    return daemon, token


def _scheduled(daemon: Daemon, token: str, send_at: str, **extra: Any) -> tuple[int, Any]:
    return daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": VARIABLES, "mode": "live",
        "send_at": send_at, **extra}, token)


def _posts_for(sandbox: SandboxThread, alert_id: str) -> list[dict[str, Any]]:
    return [p for p in sandbox.posts("webhook") if p["extra"]["id"] == alert_id]


@pytest.mark.parametrize("send_at, words", [
    ("2020-01-01 06:00", "in the past"),
    (None, "more than 30 days ahead"),
    ("übermorgen", "not a time"),
])
def test_a_bad_send_at_is_refused_naming_the_field(tmp_path: Path, live_sandbox: SandboxThread,
                                                   daemons: list[Daemon], send_at: str | None,
                                                   words: str) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons)
    value = send_at or _iso(datetime.now(UTC) + timedelta(days=31))
    status, error = _scheduled(daemon, token, value)
    assert status == 422
    assert words in error["error"]["details"]["send_at"]


def test_a_cron_that_never_fires_is_refused(tmp_path: Path, live_sandbox: SandboxThread,
                                            daemons: list[Daemon]) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons)
    status, error = daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": VARIABLES, "mode": "live",
        "repeat": {"every": "0 0 30 2 *"}}, token)
    assert status == 422
    assert "never fires" in error["error"]["details"]["repeat.every"]


def test_a_scheduled_alert_waits_then_fires_within_a_second(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        ledger_database: Path | str) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons, database=ledger_database)
    send_at = _at(2)
    status, alert = _scheduled(daemon, token, _iso(send_at))
    assert status == 201 and alert["state"] == "scheduled"
    assert [d["state"] for d in alert["deliveries"]] == ["queued"]
    assert _posts_for(live_sandbox, alert["id"]) == []

    def delivered() -> dict[str, Any] | None:
        found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1]
        return found if found["state"] == "delivered" else None
    done = wait_for(delivered, timeout=10, message="the scheduled alert")
    fired = _time(done["fired_at"])
    assert send_at <= fired < send_at + timedelta(seconds=1)
    assert done["late_seconds"] < 1.0
    assert len(_posts_for(live_sandbox, alert["id"])) == 1


def test_a_scheduled_alert_can_be_cancelled_before_it_fires(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        ledger_database: Path | str) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons, database=ledger_database)
    send_at = _at(2)
    _, alert = _scheduled(daemon, token, _iso(send_at))
    result = run_cli("cancel", alert["id"],
                     env={"BROADCASTER_URL": daemon.url, "BROADCASTER_TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert "withdrawn" in result.stdout
    wait_for(lambda: datetime.now(UTC) > send_at + timedelta(seconds=1), timeout=5,
             message="the alert's time to pass")
    found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1]
    assert found["state"] == "cancelled"
    assert _posts_for(live_sandbox, alert["id"]) == []


def test_killed_before_its_time_it_fires_once_on_restart_marked_late(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        ledger_database: Path | str) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons, database=ledger_database)
    send_at = _at(2)
    _, alert = _scheduled(daemon, token, _iso(send_at))
    wait_for(lambda: datetime.now(UTC) > send_at - timedelta(seconds=1), timeout=5,
             message="one second before the alert")
    daemon.kill()
    wait_for(lambda: datetime.now(UTC) > send_at + timedelta(seconds=5), timeout=10,
             message="five seconds after the alert")
    assert _posts_for(live_sandbox, alert["id"]) == []
    restarted = Daemon(daemon.config, daemon.port, env=daemon.env)
    daemons.append(restarted.start())

    def delivered() -> dict[str, Any] | None:
        found = restarted.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1]
        return found if found["state"] == "delivered" else None
    done = wait_for(delivered, timeout=10, message="the late alert")
    assert 4.5 <= done["late_seconds"] < 10
    fired = [line for line in restarted.output().splitlines() if "msg=alert.fired" in line]
    assert len(fired) == 1 and "level=warning" in fired[0] and "late_seconds=" in fired[0]
    assert len(_posts_for(live_sandbox, alert["id"])) == 1


def test_a_revoked_token_is_noticed_within_one_health_interval(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    telegram = f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@stadt_warnung"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{live_sandbox.url}/telegram"
health_interval = 1
"""
    daemon, token = _start(tmp_path, live_sandbox, daemons, extra=telegram)

    def telegram_health() -> dict[str, Any]:
        channels = daemon.api("GET", "/api/v1/channels", token=token)[1]["channels"]
        return next(c for c in channels if c["name"] == "telegram")

    wait_for(lambda: telegram_health()["checked_at"] is not None, message="a first check")
    assert telegram_health()["up"] is True
    live_sandbox.fault("telegram", "error", value=401)  # the bot token was revoked
    revoked_at = time.monotonic()
    down = wait_for(lambda: (h := telegram_health())["up"] is False and h, timeout=5,
                    message="the channel to be down")
    assert time.monotonic() - revoked_at < 2.5  # within one interval, plus the check
    assert "token" in down["health"] and "renew" in down["health"]
    assert "sandbox-token" not in str(down)
    metrics = daemon.api("GET", "/metrics")[1]
    assert 'broadcaster_channel_up{channel="telegram"} 0.0' in metrics
    assert 'broadcaster_channel_credentials_ok{channel="telegram"} 0.0' in metrics
    live_sandbox.clear_faults()
    wait_for(lambda: telegram_health()["up"] is True, timeout=5, message="the channel back")


def test_channels_check_live_names_the_channel_whose_token_is_rejected(
        tmp_path: Path, live_sandbox: SandboxThread) -> None:
    channels = webhook_channel("leitstelle", live_sandbox.url) + f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@stadt_warnung"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{live_sandbox.url}/telegram"
"""
    config = write_config(tmp_path, channels)
    good = run_cli("channels", "check", "--live", "--config", str(config),
                   env={"TELEGRAM_TOKEN": "123456:sandbox-token"})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "bot @" in good.stdout
    bad = run_cli("channels", "check", "--live", "--config", str(config),
                  env={"TELEGRAM_TOKEN": "revoked"})
    assert bad.returncode == 1
    line = next(row for row in bad.stdout.splitlines() if row.startswith("telegram ") and
                " NO " in row)
    assert "token" in line
    assert "revoked" not in bad.stdout


def test_send_at_from_the_cli_schedules_in_local_time(tmp_path: Path,
                                                      live_sandbox: SandboxThread,
                                                      daemons: list[Daemon]) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons)
    local = (datetime.now(UTC) + timedelta(days=1)).astimezone().strftime("%Y-%m-%d") + " 06:00"
    args = ["send", "evakuierung", "--at", local, "--yes",
            *[arg for name, value in VARIABLES.items() for arg in ("--set", f"{name}={value}")]]
    result = run_cli(*args, env={"BROADCASTER_URL": daemon.url, "BROADCASTER_TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert "scheduled for" in result.stdout
    alert_id = result.stdout.split("accepted: ")[1].split()[0]
    found = daemon.api("GET", f"/api/v1/alerts/{alert_id}", token=token)[1]
    berlin = _time(found["send_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert berlin.strftime("%H:%M") == "06:00" and found["state"] == "scheduled"
