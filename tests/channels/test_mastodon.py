"""The Mastodon channel against the sandbox's instance stand-in: round trips, the
Idempotency-Key, the instance's own length limit, every fault's verdict, health,
and the daemon retrying an uncertain post without posting it twice — with the
token nowhere in errors, logs, the API or the metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channels.base import Channel
from broadcaster.channels.mastodon import reset_wait
from broadcaster.errors import (
    ConfigError,
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.sandbox.mastodon import ACCOUNT
from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.server import RunningSandbox, running_sandbox
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

TOKEN = "mastodon-access-token-s3cr3t-4711"


def block(instance: str, *, extra: str = "") -> str:
    return f"""
[[channel]]
name = "mastodon"
kind = "mastodon"
instance = "{instance}"
token = {{ env = "MASTODON_TOKEN" }}
{extra}
"""


async def mastodon_channel(directory: Path, instance: str, token: str = TOKEN,
                           extra: str = "") -> Channel:
    channel: Channel = await start_channel(directory, block(instance, extra=extra),
                                           environ={"MASTODON_TOKEN": token})
    return channel


@pytest.fixture
async def channel(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Channel]:
    started = await mastodon_channel(tmp_path, f"{sandbox.url}/mastodon")
    yield started
    await started.close()


def posts(sandbox: RunningSandbox) -> list[Post]:
    return kit.posts(sandbox, "mastodon")


def fault(sandbox: RunningSandbox, kind: str, value: float | None = None,
          count: int | None = 1) -> None:
    kit.inject(sandbox, "mastodon", kind, value, ACCOUNT, count)


async def verdict(channel: Channel, **kwargs: Any) -> DeliveryError:
    return await kit.refusal(channel, (TOKEN,), **kwargs)


# --- round trips ----------------------------------------------------------------

async def test_send_reply_edit_and_retract(channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Evakuierung Oberwerth bis 09:00 Uhr."))
    assert first.remote_id is not None
    assert first.url == f"{sandbox.url}/mastodon/@{ACCOUNT}/{first.remote_id}"
    reply = await channel.send(outgoing("01TESTDELIVERY000000000002", text="Update: …",
                                        reply_to=first, kind="update"))
    [original, answer] = posts(sandbox)
    assert (original.id, original.reply_to, answer.reply_to) == (first.remote_id, None,
                                                                 first.remote_id)
    assert original.idempotency_key == "01TESTDELIVERY000000000001"
    assert original.extra == {"visibility": "public", "language": "de"}

    edited = await channel.edit(first, outgoing(text="Korrigiert: bis 10:00 Uhr."))
    assert edited.remote_id == first.remote_id
    assert (original.text, original.edited) == ("Korrigiert: bis 10:00 Uhr.", True)

    await channel.retract(reply)
    assert answer.deleted
    await channel.retract(reply)  # already gone is what a retraction wants


async def test_a_followup_to_a_deleted_status_goes_out_unthreaded(
        channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing())
    await channel.retract(first)
    allclear = await channel.send(outgoing("01TESTDELIVERY000000000002", text="Entwarnung",
                                           reply_to=first, kind="allclear"))
    post = posts(sandbox)[-1]
    assert (post.id, post.text, post.reply_to) == (allclear.remote_id, "Entwarnung", None)


async def test_visibility_and_language_come_from_the_config(sandbox: RunningSandbox,
                                                            tmp_path: Path) -> None:
    channel = await mastodon_channel(tmp_path, f"{sandbox.url}/mastodon/",
                                     extra='visibility = "unlisted"\nlanguages = ["en"]')
    try:
        await channel.send(outgoing(text="Evacuation"))
    finally:
        await channel.close()
    assert posts(sandbox)[0].extra == {"visibility": "unlisted", "language": "en"}


async def test_the_same_delivery_twice_is_one_post(channel: Channel,
                                                   sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing())
    again = await channel.send(outgoing(attempt=2))  # as after an unknown outcome
    assert again == first
    assert len(posts(sandbox)) == 1


async def test_a_dropped_answer_is_unknown_and_the_retry_is_not_a_second_post(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "drop_after_receive")
    assert type(await verdict(channel)) is OutcomeUnknown
    assert len(posts(sandbox)) == 1  # the instance had created it
    receipt = await channel.send(outgoing(attempt=2))
    assert receipt.remote_id == posts(sandbox)[0].id
    assert len(posts(sandbox)) == 1


# --- the instance's length limit --------------------------------------------------

async def test_the_instance_limit_is_read_at_start(tmp_path: Path) -> None:
    options = SandboxOptions(port=0, smtp_port=None, mastodon_max_characters=1000)
    async with running_sandbox(options) as sandbox:
        channel = await mastodon_channel(tmp_path, f"{sandbox.url}/mastodon")
        try:
            assert channel.length_limit() == 1000
            await channel.send(outgoing(text="ä" * 800))
            with pytest.raises(Permanent, match="character limit of 1000 exceeded"):
                await channel.send(outgoing("01TESTDELIVERY000000000002", text="ä" * 1001))
        finally:
            await channel.close()


async def test_over_the_default_limit_is_permanent_with_mastodons_words(
        channel: Channel, sandbox: RunningSandbox) -> None:
    assert channel.length_limit() == 500
    error = await verdict(channel, text="x" * 501)
    assert type(error) is Permanent
    assert "Validation failed: Text character limit of 500 exceeded" in str(error)
    assert posts(sandbox) == []


async def test_an_instance_down_at_start_means_500_and_a_retryable_send(
        tmp_path: Path) -> None:
    channel = await mastodon_channel(tmp_path, f"http://127.0.0.1:{free_port()}/mastodon")
    try:
        assert channel.length_limit() == 500
        assert type(await verdict(channel)) is Retryable
        health = await channel.check_health()
        assert not health.up and "cannot reach" in health.message
    finally:
        await channel.close()


# --- faults -----------------------------------------------------------------------

async def test_ratelimit_waits_until_the_reset_time(channel: Channel,
                                                    sandbox: RunningSandbox) -> None:
    fault(sandbox, "ratelimit", 30)
    error = await verdict(channel)
    assert isinstance(error, Retryable)
    assert error.retry_after == pytest.approx(30, abs=2)


def test_reset_wait_reads_an_iso_time() -> None:
    now = datetime(2026, 11, 23, 3, 12, 0, tzinfo=UTC)
    assert reset_wait({"X-RateLimit-Reset": "2026-11-23T03:17:00.000Z"}, now) == 300
    assert reset_wait({"X-RateLimit-Reset": "2026-11-23T03:00:00Z"}, now) == 0
    assert reset_wait({"X-RateLimit-Reset": "soon"}, now) is None
    assert reset_wait({}, now) is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(channel: Channel, sandbox: RunningSandbox,
                                           status: int) -> None:
    fault(sandbox, "error", status)
    assert type(await verdict(channel)) is Retryable
    assert posts(sandbox) == []




async def test_a_revoked_token_is_permanent_and_says_which_token_to_renew(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await mastodon_channel(tmp_path, f"{sandbox.url}/mastodon", token="revoked")
    try:
        error = await verdict(channel)
        health = await channel.check_health()
    finally:
        await channel.close()
    assert type(error) is CredentialsRejected and health.credentials_rejected
    for text in (str(error), health.message):
        assert "The access token is invalid" in text or "HTTP 401" in text
        assert "renew the Mastodon access token" in text and "env:MASTODON_TOKEN" in text
    assert not health.up


async def test_health_is_up_with_a_valid_token(channel: Channel) -> None:
    health = await channel.check_health()
    assert health.up and f"@{ACCOUNT}" in health.message
    assert TOKEN not in health.message


@pytest.mark.parametrize(("instance", "extra", "key"), [
    ("social.example", "", "instance"),
    ("https://social.example", 'visibility = "direct"', "visibility"),
])
async def test_config_problems_name_the_key(tmp_path: Path, instance: str, extra: str,
                                            key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        await start_channel(tmp_path, block(instance, extra=extra),
                            environ={"MASTODON_TOKEN": TOKEN})
    assert raised.value.key == key


# --- the daemon -------------------------------------------------------------------

def test_daemon_retries_an_uncertain_post_once_and_never_shows_the_token(
        live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    daemon, officer = start_beside_webhook(
        tmp_path, live_sandbox, block(f"{live_sandbox.url}/mastodon", extra="timeout = 1"),
        daemons, env={"MASTODON_TOKEN": TOKEN})

    # A server error, then a status that is created but whose answer is lost.
    live_sandbox.fault("mastodon", "error", target=ACCOUNT, value=500, count=1)
    live_sandbox.fault("mastodon", "drop_after_receive", target=ACCOUNT, count=1)
    run = send_example(daemon, officer)
    current, sent_at = run.delivery, run.sent_at

    wait_for(lambda: current("leitstelle")["state"] == "delivered", timeout=5,
             message="the webhook delivery")
    assert time.monotonic() - sent_at < 3, "the webhook waited for Mastodon"

    delivered = wait_for(lambda: (d := current("mastodon"))["state"] == "delivered" and d,
                         timeout=15, message="the Mastodon delivery")
    [post] = live_sandbox.posts("mastodon")  # posted once, though sent three times
    assert delivered["attempts"] == 3
    assert delivered["remote_id"] == post["id"]
    assert post["idempotency_key"] == delivered["id"]

    metrics = http("GET", daemon.url + "/metrics")[1]
    for result in ("retryable", "unknown", "delivered"):
        assert (f'broadcaster_delivery_attempts_total{{channel="mastodon",result="{result}"}}'
                " 1.0") in metrics
    output = assert_secrets_stay_hidden(daemon, officer, {"the token": TOKEN})
    assert "delivery.retryable" in output and "delivery.unknown" in output
