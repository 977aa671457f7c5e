"""The daemon with a Telegram channel whose requests hang or are dropped: the webhook
beside it is delivered at once, the Telegram delivery is held as `unknown` (Telegram
cannot deduplicate a resend), and the token shows up nowhere — not in the log, the
API or the metrics — even though the sandbox's error answers echo it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Daemon,
    SandboxThread,
    assert_secrets_stay_hidden,
    http,
    send_example,
    start_beside_webhook,
    wait_for,
)

TOKEN = "987654321:AAHdaemonTestTokenNeverShown-42"
CHAT = "@stadt_warnung"


def telegram_block(sandbox_url: str) -> str:
    return f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "{CHAT}"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{sandbox_url}/telegram"
timeout = 1
"""


def delivery(alert: dict[str, Any], channel: str) -> dict[str, Any]:
    return next(d for d in alert["deliveries"] if d["channel"] == channel)


@pytest.mark.parametrize("kind", ["hang", "drop_after_receive"])
def test_a_stuck_telegram_is_held_unknown_without_delaying_others_or_leaking_the_token(
        kind: str, live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    daemon, officer = start_beside_webhook(tmp_path, live_sandbox,
                                           telegram_block(live_sandbox.url), daemons,
                                           env={"TELEGRAM_TOKEN": TOKEN})

    # First an error whose answer echoes the URL (token included), then the fault.
    live_sandbox.fault("telegram", "error", target=CHAT, value=500, count=1)
    live_sandbox.fault("telegram", kind, target=CHAT)
    run = send_example(daemon, officer)
    alert, current = run.alert, run.current

    webhook = wait_for(lambda: (d := delivery(current(), "leitstelle"))["state"] == "delivered"
                       and d, timeout=5, message="the webhook delivery")
    took = (datetime.fromisoformat(webhook["delivered_at"])
            - datetime.fromisoformat(alert["created_at"])).total_seconds()
    assert took < 1.0, f"the webhook took {took:.2f} s: it waited for Telegram's timeout"
    assert [p["target"] for p in live_sandbox.posts("webhook")] == ["leitstelle"]

    held = wait_for(lambda: (d := delivery(current(), "telegram"))["state"] == "unknown" and d,
                    timeout=15, message="the Telegram delivery to be held")
    assert held["attempts"] == 2  # the 500 was retried, the second attempt got no answer
    assert held["remote_id"] is None
    assert "check the channel, then retry or leave it" in held["error"]
    assert live_sandbox.posts("telegram") == []  # never posted, never posted twice

    metrics = http("GET", daemon.url + "/metrics")[1]
    assert 'broadcaster_delivery_attempts_total{channel="telegram",result="unknown"} 1.0' \
        in metrics
    assert 'broadcaster_delivery_attempts_total{channel="telegram",result="retryable"} 1.0' \
        in metrics
    output = assert_secrets_stay_hidden(daemon, officer,
                                        {"the token's secret part": TOKEN.split(":")[1]})
    assert "delivery.retryable" in output and "delivery.unknown" in output
    assert "/telegram/bot***/sendMessage" in output  # the echoed URL, logged scrubbed
