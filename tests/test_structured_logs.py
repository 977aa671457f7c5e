"""The daemon's log as journald receives it: one JSON object per stderr line, delivery
outcomes with alert, delivery, channel, attempt and duration, and no secret anywhere
— including a token read from $CREDENTIALS_DIRECTORY as systemd provides it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from broadcaster.logs import JsonFormatter, KeyValueFormatter, stderr_is_journal
from tests.support import (
    REPO,
    WEBHOOK_SECRET,
    SandboxThread,
    add_user,
    free_port,
    http,
    wait_for,
    webhook_channel,
    write_config,
)

TELEGRAM_TOKEN = "918273645:AAHjsonLogTestTokenNeverShown-77"
OUTCOMES = {"delivery.delivered", "delivery.retryable", "delivery.permanent",
            "delivery.unknown"}
VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}


def test_json_log_lines_carry_delivery_outcomes_and_no_secret(
        tmp_path: Path, live_sandbox: SandboxThread) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "telegram_token").write_text(TELEGRAM_TOKEN + "\n")
    channels = (
        webhook_channel("leitstelle", live_sandbox.url)
        + webhook_channel("flaky", live_sandbox.url, extra="timeout = 2")
        + webhook_channel("held", live_sandbox.url, extra='on_unknown = "hold"\ntimeout = 2')
        + f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@stadt_warnung"
token = {{ file = "telegram_token" }}
api_base = "{live_sandbox.url}/telegram"
""")
    port = free_port()
    config = write_config(tmp_path, channels, port=port, service='log_format = "json"')
    officer = add_user(config, "duty-1", "officer")
    live_sandbox.fault("webhook", "error", target="flaky", value=503, count=1)
    live_sandbox.fault("webhook", "drop_after_receive", target="held", count=1)

    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with stderr_path.open("w") as stderr, stdout_path.open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "serve", "--config", str(config)],
            stdout=stdout, stderr=stderr, cwd=REPO,
            env={**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                 "CREDENTIALS_DIRECTORY": str(credentials)},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url, process), timeout=20, message="the daemon")
        status, alert = http("POST", url + "/api/v1/alerts", {
            "template": "evakuierung", "variables": VARIABLES, "mode": "live"}, officer)
        assert status == 201, alert

        def settled() -> bool:
            found = http("GET", f"{url}/api/v1/alerts/{alert['id']}", token=officer)[1]
            return all(d["state"] in ("delivered", "unknown", "failed")
                       for d in found["deliveries"])
        wait_for(settled, timeout=30, message="every delivery to settle")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0

    text = stderr_path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "msg"} <= set(r) for r in records)
    outcomes = [r for r in records if r["msg"] in OUTCOMES]
    for record in outcomes:
        assert record["alert"] == alert["id"]
        assert record["delivery"] in {d["id"] for d in alert["deliveries"]}
        assert isinstance(record["attempt"], int) and record["attempt"] >= 1
        assert isinstance(record["duration"], int | float) and record["duration"] >= 0
        assert record["state"] in ("queued", "delivered", "unknown", "failed")
    seen = {(r["channel"], r["msg"], r["attempt"]) for r in outcomes}
    assert {("leitstelle", "delivery.delivered", 1), ("telegram", "delivery.delivered", 1),
            ("flaky", "delivery.retryable", 1), ("flaky", "delivery.delivered", 2),
            ("held", "delivery.unknown", 1)} <= seen
    # An unknown delivery needs a person: a warning, which journalctl -p warning shows.
    assert {r["level"] for r in outcomes if r["msg"] == "delivery.unknown"} == {"warning"}
    everything = text + stdout_path.read_text(encoding="utf-8")
    for secret in (TELEGRAM_TOKEN, TELEGRAM_TOKEN.split(":")[1], WEBHOOK_SECRET, officer):
        assert secret not in everything


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the daemon exited with {process.returncode}")
    try:
        return http("GET", url + "/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def _record(level: int = logging.WARNING) -> logging.LogRecord:
    record = logging.LogRecord("broadcaster.dispatch", level, __file__, 1, "delivery.unknown",
                               None, None)
    record.structured = {"channel": "telegram", "attempt": 1}
    return record


def test_under_journald_lines_carry_a_priority_and_no_time_of_their_own(
        tmp_path: Path) -> None:
    stream_file = tmp_path / "stream"
    with stream_file.open("w") as stream:
        info = os.fstat(stream.fileno())
        journal = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert stderr_is_journal(stream, journal)
        assert not stderr_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:1"})
        assert not stderr_is_journal(stream, {})
    line = KeyValueFormatter(journal=True).format(_record())
    assert line == "<4>level=warning logger=broadcaster.dispatch msg=delivery.unknown " \
                   "channel=telegram attempt=1"
    assert JsonFormatter(journal=True).format(_record(logging.ERROR)).startswith(
        '<3>{"level": "error"')


def test_elsewhere_lines_start_with_a_utc_time() -> None:
    line = KeyValueFormatter().format(_record())
    assert line.startswith("time=20") and line.split(" ", 1)[0].endswith("Z")
    document: dict[str, Any] = json.loads(JsonFormatter().format(_record()))
    assert document["time"].endswith("Z") and document["channel"] == "telegram"
