"""Starting and stopping the daemon as systemd does: a broken configuration or a
missing credential ends the start with status 2 and a message naming the file, key
or credential — before the database is touched; SIGTERM during a fan-out stops
taking requests, lets attempts in flight finish within the grace period, exits 0,
and the next start resolves whatever was cut off, losing nothing."""

from __future__ import annotations

import http.client as http_client
import os
import signal
import sqlite3
import time
import urllib.error
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from broadcaster.app import SHUTDOWN_GRACE
from tests.support import (
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    http,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}
TELEGRAM = """
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@stadt_warnung"
token = { file = "telegram_token" }
api_base = "http://127.0.0.1:9/telegram"
"""


def _untouched(database: Path) -> None:
    leftovers = [p.name for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert leftovers == [], f"the start touched the database: {leftovers}"


@pytest.mark.parametrize(("service", "channels", "key"), [
    ('log_format = "xml"', "", "key 'service.log_format'"),
    ("", TELEGRAM.replace('chat_id = "@stadt_warnung"', 'chat = "@stadt_warnung"'),
     "channel 'telegram', key 'chat'"),
    ("", TELEGRAM.replace('kind = "telegram"', 'kind = "telegramm"'),
     "channel 'telegram', key 'kind'"),
    ("", webhook_channel("leitstelle", "http://127.0.0.1:9", extra="timeout = -1"),
     "channel 'leitstelle', key 'timeout'"),
], ids=["service-key", "unknown-channel-key", "unknown-kind", "negative-timeout"])
def test_a_broken_configuration_exits_2_naming_file_and_key(
        tmp_path: Path, service: str, channels: str, key: str) -> None:
    database = tmp_path / "state" / "broadcaster.db"
    config = write_config(tmp_path, channels, service=service, database=database)
    result = run_cli("serve", "--config", str(config), timeout=30)
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr and key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not database.parent.exists()  # not even its folder


@pytest.mark.parametrize("fault", ["missing", "a directory", "mode 000"])
def test_a_credential_that_cannot_be_read_exits_2_naming_it(tmp_path: Path, fault: str) -> None:
    if fault == "mode 000" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000; the 'a directory' case covers unreadable")
    credentials = tmp_path / "credentials"  # as systemd's LoadCredential= would provide
    credentials.mkdir()
    token = credentials / "telegram_token"
    if fault == "a directory":
        token.mkdir()
    elif fault == "mode 000":
        token.write_text("123456789:AAHsecret")
        token.chmod(0)
    database = tmp_path / "broadcaster.db"
    config = write_config(tmp_path, TELEGRAM, database=database)
    result = run_cli("serve", "--config", str(config),
                     env={"CREDENTIALS_DIRECTORY": str(credentials)}, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "channel 'telegram', key 'token'" in result.stderr
    assert "telegram_token" in result.stderr and str(credentials) in result.stderr
    assert "LoadCredential=" in result.stderr  # says where to fix it
    assert "Traceback" not in result.stderr
    _untouched(database)


# -- SIGTERM during a fan-out ---------------------------------------------------------

ALERTS = 4
QUICK_MS = 2_500  # finishes within the grace period
SLOW_MS = 60_000  # does not
CHANNELS = {"quick": QUICK_MS, "slow1": SLOW_MS, "slow2": SLOW_MS, "held": SLOW_MS}


def _fanout_channels(url: str) -> str:
    return "".join(
        webhook_channel(name, url, extra=f"max_in_flight = {ALERTS}\nrate = 100\ntimeout = 90"
                        + ('\non_unknown = "hold"' if name == "held" else ""))
        for name in CHANNELS)


def _sending(daemon: Daemon) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for line in http("GET", daemon.url + "/metrics")[1].splitlines():
        if line.startswith("broadcaster_deliveries{") and 'state="sending"' in line:
            channel = line.split('channel="', 1)[1].split('"', 1)[0]
            counts[channel] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def _refuses_connections(url: str) -> bool:
    try:
        http("GET", url + "/healthz", timeout=1)
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    except ConnectionRefusedError:
        return True
    except (OSError, http_client.HTTPException):
        return False  # caught in the moment the socket closed (reset, timeout): ask again
    return False


def _ledger_states(database: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT alert_id, channel, state FROM deliveries").fetchall()
    return {(alert, channel): state for alert, channel, state in rows}


@pytest.mark.slow
def test_sigterm_during_a_fanout_exits_0_in_bound_and_the_restart_loses_nothing(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    port = free_port()
    database = tmp_path / "broadcaster.db"
    config = write_config(tmp_path, _fanout_channels(live_sandbox.url), port=port,
                          database=database)
    officer = add_user(config, "duty-1", "officer")
    for name, latency in CHANNELS.items():
        live_sandbox.fault("webhook", "latency", target=name, value=latency)
    first = Daemon(config, port)
    daemons.append(first.start())
    accepted = []
    for _ in range(ALERTS):
        status, alert = first.api("POST", "/api/v1/alerts", {
            "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, officer)
        assert status == 201, alert
        accepted.append(alert["id"])
    wait_for(lambda: _sending(first) == dict.fromkeys(CHANNELS, ALERTS), timeout=15,
             message="every delivery in flight")

    assert first.process is not None
    began = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    # Nothing new is accepted while the attempts in flight are given their grace.
    wait_for(lambda: _refuses_connections(first.url), timeout=SHUTDOWN_GRACE,
             message="the port to close")
    assert first.process.poll() is None, "exited before the grace period of the slow ones"
    assert first.process.wait(4 * SHUTDOWN_GRACE) == 0, first.output()
    took = time.monotonic() - began
    assert took <= 2 * SHUTDOWN_GRACE + 3, f"stopping took {took:.1f} s"

    states = _ledger_states(database)
    assert len(states) == ALERTS * len(CHANNELS)
    for (_, channel), state in states.items():
        # quick finished within the grace; the others were cut off, still `sending`
        assert state == ("delivered" if channel == "quick" else "sending"), (channel, state)
    log = first.output()
    assert f"msg=lane.stopped channel=quick finished={ALERTS} interrupted=0" in log
    assert f"msg=lane.stopped channel=slow1 finished=0 interrupted={ALERTS}" in log

    live_sandbox.clear_faults()
    second = Daemon(config, port)
    daemons.append(second.start())

    def settled() -> list[dict[str, Any]] | None:
        found = [second.api("GET", f"/api/v1/alerts/{i}", token=officer)[1] for i in accepted]
        final = all(d["state"] in ("delivered", "unknown", "failed")
                    for a in found for d in a["deliveries"])
        return found if final else None

    alerts = wait_for(settled, timeout=30, message="every delivery to be resolved")
    assert second.stop() == 0
    for alert in alerts:
        states_now = {d["channel"]: d["state"] for d in alert["deliveries"]}
        assert states_now == {"quick": "delivered", "slow1": "delivered",
                              "slow2": "delivered", "held": "unknown"}
        held = next(d for d in alert["deliveries"] if d["channel"] == "held")
        assert "stopped during attempt 1" in held["error"]
    assert "sending" not in _ledger_states(database).values()
    assert "delivery.recovered" in second.output()
    # Each quick delivery went out exactly once: the restart did not resend it.
    quick = [p for p in live_sandbox.posts("webhook") if p["target"] == "quick"]
    assert sorted(p["extra"]["id"] for p in quick) == sorted(accepted)
