"""The X channel through tweepy's AsyncClient against the sandbox's X API stand-in,
which verifies every OAuth 1.0a signature: round trips (post, reply, delete), edit
refused, every fault's verdict, duplicates, the weighted length limit, health
checks, that no credential leaks, and the daemon waiting out a rate limit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channels.base import Channel, NotSupported
from broadcaster.channels.x import XConfig, rate_limit_wait
from broadcaster.config import Secret
from broadcaster.errors import DeliveryError, Permanent, Retryable
from broadcaster.lengths import x_weighted_length
from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.server import RunningSandbox
from broadcaster.sandbox.state import Post
from tests.channels import kit
from tests.support import (
    Daemon,
    SandboxThread,
    assert_secrets_stay_hidden,
    free_port,
    http,
    outgoing,
    send_example,
    start_beside_webhook,
    start_channel,
    wait_for,
)

ACCOUNT = "1610000000000000001"
CREDENTIALS = {
    "X_CONSUMER_KEY": "xvz1evFS4wEEPTGEFPHBogSandboxKey",
    "X_CONSUMER_SECRET": SandboxOptions().x_consumer_secret,
    "X_ACCESS_TOKEN": f"{ACCOUNT}-AccessTokenForSandboxTests42",
    "X_ACCESS_SECRET": SandboxOptions().x_access_secret,
}


def block(api_base: str, extra: str = "") -> str:
    return f"""
[[channel]]
name = "x"
kind = "x"
consumer_key = {{ env = "X_CONSUMER_KEY" }}
consumer_secret = {{ env = "X_CONSUMER_SECRET" }}
access_token = {{ env = "X_ACCESS_TOKEN" }}
access_token_secret = {{ env = "X_ACCESS_SECRET" }}
api_base = "{api_base}"
{extra}
"""


async def x_channel(directory: Path, api_base: str, **credentials: str) -> Channel:
    channel: Channel = await start_channel(directory, block(api_base),
                                           environ={**CREDENTIALS, **credentials})
    return channel


@pytest.fixture
async def channel(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Channel]:
    started = await x_channel(tmp_path, f"{sandbox.url}/x")
    yield started
    await started.close()


def posts(sandbox: RunningSandbox) -> list[Post]:
    return kit.posts(sandbox, "x")


def fault(sandbox: RunningSandbox, kind: str, value: float | None = None,
          target: str | None = ACCOUNT, count: int | None = 1) -> None:
    kit.inject(sandbox, "x", kind, value, target, count)


def assert_no_secret(text: str) -> None:
    for name, secret in CREDENTIALS.items():
        assert secret not in text, f"{name} leaked: {text}"


async def verdict(channel: Channel, **kwargs: Any) -> DeliveryError:
    return await kit.refusal(channel, CREDENTIALS.values(), **kwargs)


# --- round trips ----------------------------------------------------------------

async def test_post_reply_and_delete(channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Evakuierung Oberwerth bis 09:00 Uhr."))
    assert first.remote_id is not None and first.remote_id.isdigit()
    assert first.url == f"https://x.com/i/web/status/{first.remote_id}"
    reply = await channel.send(outgoing(text="Entwarnung.", reply_to=first, kind="allclear"))
    assert [(p.target, p.id, p.text, p.reply_to) for p in posts(sandbox)] == [
        (ACCOUNT, first.remote_id, "Evakuierung Oberwerth bis 09:00 Uhr.", None),
        (ACCOUNT, reply.remote_id, "Entwarnung.", first.remote_id),
    ]
    await channel.retract(reply)
    assert posts(sandbox)[1].deleted and not posts(sandbox)[0].deleted
    with pytest.raises(Permanent, match="HTTP 404"):
        await channel.retract(reply)


async def test_edit_is_not_supported(channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Warnung"))
    with pytest.raises(NotSupported, match="correction"):
        await channel.edit(first, outgoing(text="Korrektur"))
    assert posts(sandbox)[0].text == "Warnung"


# --- signatures and credentials ----------------------------------------------------

async def test_a_wrong_consumer_secret_is_refused_permanently(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await x_channel(tmp_path, f"{sandbox.url}/x", X_CONSUMER_SECRET="not-the-secret")
    try:
        error = await verdict(channel)
        health = await channel.check_health()
    finally:
        await channel.close()
    assert isinstance(error, Permanent) and "HTTP 401" in str(error)
    assert "consumer_secret" in str(error) and "clock" in str(error)
    assert not health.up and "HTTP 401" in health.message
    assert posts(sandbox) == []


@pytest.mark.parametrize("key", ["X_CONSUMER_KEY", "X_ACCESS_TOKEN"])
async def test_revoked_credentials_are_permanent(sandbox: RunningSandbox, tmp_path: Path,
                                                 key: str) -> None:
    channel = await x_channel(tmp_path, f"{sandbox.url}/x", **{key: "revoked"})
    try:
        error = await verdict(channel)
    finally:
        await channel.close()
    assert isinstance(error, Permanent)
    assert "X rejected the credentials" in str(error) and "channel 'x'" in str(error)


# --- faults -----------------------------------------------------------------------

async def test_ratelimit_waits_until_the_reset(channel: Channel,
                                               sandbox: RunningSandbox) -> None:
    fault(sandbox, "ratelimit", 90)
    error = await verdict(channel)
    assert isinstance(error, Retryable) and error.retry_after is not None
    assert 88 <= error.retry_after <= 91
    assert posts(sandbox) == []


async def test_server_error_is_retryable_and_the_echoed_url_holds_no_secret(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "error", 500)
    error = await verdict(channel)
    assert isinstance(error, Retryable) and "/x/2/tweets" in str(error)
    assert await channel.send(outgoing()) is not None








# --- content ------------------------------------------------------------------------

async def test_duplicate_counts_as_delivered_only_after_an_uncertain_attempt(
        channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Bombenentschärfung heute 11 Uhr."))
    again = await channel.send(outgoing(text="Bombenentschärfung heute 11 Uhr.", attempt=2))
    assert again.remote_id is None and again.extra["duplicate"] == "true"
    error = await verdict(channel, text="Bombenentschärfung heute 11 Uhr.", attempt=1)
    assert isinstance(error, Permanent) and "already posted this exact text" in str(error)
    assert [p.id for p in posts(sandbox)] == [first.remote_id]


async def test_a_text_over_280_weighted_characters_is_refused(
        channel: Channel, sandbox: RunningSandbox) -> None:
    text = "Ü" * 270 + "🌊" * 5 + "!"  # emoji weigh 2: 270 + 10 + 1 = 281
    assert x_weighted_length(text) == 281
    error = await verdict(channel, text=text)
    assert isinstance(error, Permanent) and "281 weighted characters" in str(error)
    assert (await channel.send(outgoing(text=text[:-1]))).remote_id is not None  # 280 fits


async def test_health(channel: Channel, sandbox: RunningSandbox, tmp_path: Path) -> None:
    health = await channel.check_health()
    assert health.up and f"@sandbox_{ACCOUNT}" in health.message
    fault(sandbox, "error", 503)
    down = await channel.check_health()
    assert not down.up
    assert_no_secret(down.message)
    unreachable = await x_channel(tmp_path, f"http://127.0.0.1:{free_port()}/x")
    try:
        assert not (await unreachable.check_health()).up
    finally:
        await unreachable.close()


# --- pure parts -----------------------------------------------------------------------

def test_rate_limit_wait_takes_an_exhausted_daily_cap_into_account() -> None:
    now = 1_800_000_000.0
    window = {"x-rate-limit-reset": str(int(now) + 60)}
    assert rate_limit_wait(window, now) == 60
    daily = {**window, "x-user-limit-24hour-remaining": "0",
             "x-user-limit-24hour-reset": str(int(now) + 7200)}
    assert rate_limit_wait(daily, now) == 7200
    unused = {**window, "x-app-limit-24hour-remaining": "12",
              "x-app-limit-24hour-reset": str(int(now) + 7200)}
    assert rate_limit_wait(unused, now) == 60
    assert rate_limit_wait({}, now) is None


def test_target_shows_the_account_not_the_token() -> None:
    def config(token: str) -> XConfig:
        def secret(value: str) -> Secret:
            return Secret(value, "env:TEST")
        return XConfig(secret("k"), secret("s"), secret(token), secret("t"))

    assert config(CREDENTIALS["X_ACCESS_TOKEN"]).target == f"user id {ACCOUNT}"
    assert "Secret" not in config("opaque").target and "opaque" not in config("opaque").target


# --- the daemon -----------------------------------------------------------------------

def test_daemon_waits_out_a_rate_limit_and_never_shows_a_credential(
        live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    daemon, officer = start_beside_webhook(
        tmp_path, live_sandbox, block(f"{live_sandbox.url}/x", extra="timeout = 1"), daemons,
        env=CREDENTIALS)
    live_sandbox.fault("x", "ratelimit", target=ACCOUNT, value=2, count=1)
    run = send_example(daemon, officer)
    delivery, sent_at = run.delivery, run.sent_at

    wait_for(lambda: delivery("leitstelle")["state"] == "delivered", timeout=5,
             message="the webhook delivery")
    assert time.monotonic() - sent_at < 3, "the webhook waited for X"

    done = wait_for(lambda: (d := delivery("x"))["state"] == "delivered" and d,
                    timeout=20, message="the X delivery")
    assert done["attempts"] == 2  # rate-limited once, posted after the reset
    assert time.monotonic() - sent_at >= 1, "the retry did not wait for the reset"
    [posted] = live_sandbox.posts("x")
    assert done["remote_id"] == posted["id"] and posted["target"] == ACCOUNT
    assert posted["text"].startswith("Evakuierung Oberwerth")

    metrics = http("GET", daemon.url + "/metrics")[1]
    assert 'broadcaster_delivery_attempts_total{channel="x",result="retryable"} 1.0' in metrics
    output = assert_secrets_stay_hidden(daemon, officer, CREDENTIALS)
    assert "delivery.retryable" in output
