"""The Facebook Page channel against the sandbox's Graph API stand-in: round trips
(post, comment or post follow-ups, edit, delete), every fault's verdict, the 506
duplicate that counts as delivered, health checks, that the page token never leaks,
and the daemon retrying a failing Graph until the post is delivered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channels.base import Channel
from broadcaster.channels.facebook import regain_access_seconds
from broadcaster.errors import ConfigError, DeliveryError, Permanent, Retryable
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

PAGE = "104000000000001"
TOKEN = "EAAGsandboxPageTokenForTests0123456789"


def block(api_base: str, *, followups: str = "comment", extra: str = "") -> str:
    return f"""
[[channel]]
name = "facebook"
kind = "facebook"
page_id = "{PAGE}"
token = {{ env = "FACEBOOK_TOKEN" }}
followups = "{followups}"
api_base = "{api_base}"
{extra}
"""


async def facebook_channel(directory: Path, api_base: str, token: str = TOKEN,
                           **kwargs: Any) -> Channel:
    channel: Channel = await start_channel(directory, block(api_base, **kwargs),
                                           environ={"FACEBOOK_TOKEN": token})
    return channel


@pytest.fixture
async def channel(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Channel]:
    started = await facebook_channel(tmp_path, f"{sandbox.url}/facebook")
    yield started
    await started.close()


def posts(sandbox: RunningSandbox) -> list[Post]:
    return kit.posts(sandbox, "facebook")


def fault(sandbox: RunningSandbox, kind: str, value: float | None = None,
          target: str | None = PAGE, count: int | None = 1) -> None:
    kit.inject(sandbox, "facebook", kind, value, target, count)


async def verdict(channel: Channel, **kwargs: Any) -> DeliveryError:
    return await kit.refusal(channel, (TOKEN,), **kwargs)


# --- round trips ----------------------------------------------------------------

async def test_post_comment_edit_and_delete(channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Evakuierung Oberwerth\n\nBitte verlassen …"))
    assert first.remote_id is not None and first.remote_id.startswith(f"{PAGE}_")
    post_number = first.remote_id.partition("_")[2]
    assert first.url == f"https://www.facebook.com/{PAGE}/posts/{post_number}"
    [posted] = posts(sandbox)
    assert (posted.target, posted.id, posted.text) == (PAGE, first.remote_id,
                                                       "Evakuierung Oberwerth\n\nBitte verlassen …")

    update = await channel.send(outgoing(text="Lage-Update", reply_to=first, kind="update"))
    assert update.extra["type"] == "comment" and update.extra["post_id"] == first.remote_id
    assert update.url is not None and update.url.startswith(first.url + "?comment_id=")
    # A follow-up of a follow-up stays a comment under the original post.
    allclear = await channel.send(outgoing(text="Entwarnung", reply_to=update, kind="allclear"))
    comments = [p for p in posts(sandbox) if p.reply_to is not None]
    assert [(c.id, c.reply_to, c.text) for c in comments] == [
        (update.remote_id, first.remote_id, "Lage-Update"),
        (allclear.remote_id, first.remote_id, "Entwarnung"),
    ]

    assert await channel.edit(first, outgoing(text="Korrigierter Text")) == first
    assert posted.text == "Korrigierter Text" and posted.edited
    await channel.retract(update)
    await channel.retract(first)
    assert posted.deleted and comments[0].deleted and not comments[1].deleted


async def test_followups_as_new_posts(sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await facebook_channel(tmp_path, f"{sandbox.url}/facebook", followups="post")
    try:
        first = await channel.send(outgoing(text="Warnung"))
        update = await channel.send(outgoing(text="Update", reply_to=first, kind="update"))
    finally:
        await channel.close()
    assert update.extra["type"] == "post" and update.remote_id != first.remote_id
    assert [(p.text, p.reply_to) for p in posts(sandbox)] == [("Warnung", None), ("Update", None)]


async def test_editing_or_deleting_a_vanished_post_is_permanent(
        channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Warnung"))
    await channel.retract(first)
    with pytest.raises(Permanent, match="does not exist"):
        await channel.edit(first, outgoing(text="neu"))
    with pytest.raises(Permanent, match="Graph error 100/33"):
        await channel.retract(first)


# --- faults -----------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "expected"), [(120, 120), (30, 60), (3600, 3600)])
async def test_ratelimit_waits_as_long_as_the_usage_header_says(
        channel: Channel, sandbox: RunningSandbox, seconds: float, expected: float) -> None:
    fault(sandbox, "ratelimit", seconds)
    error = await verdict(channel)
    assert isinstance(error, Retryable) and "throttling" in str(error)
    assert error.retry_after == expected  # whole minutes, at least one
    assert posts(sandbox) == []


async def test_server_error_is_retryable_and_the_echoed_url_holds_no_token(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "error", 500)
    error = await verdict(channel)
    assert isinstance(error, Retryable)
    assert f"/facebook/v26.0/{PAGE}/feed" in str(error)  # Graph's message, echoing the path
    assert await channel.send(outgoing()) is not None  # the fault was used up








async def test_revoked_token_says_which_token_to_renew(sandbox: RunningSandbox,
                                                       tmp_path: Path) -> None:
    channel = await facebook_channel(tmp_path, f"{sandbox.url}/facebook", token="revoked")
    try:
        error = await verdict(channel)
        health = await channel.check_health()
    finally:
        await channel.close()
    assert isinstance(error, Permanent)
    assert ("page token expired or revoked — renew `token` of channel 'facebook' in "
            "channels.toml (env:FACEBOOK_TOKEN)") in str(error)
    assert "Graph error 190" in str(error)
    assert not health.up and "renew `token` of channel 'facebook'" in health.message


async def test_duplicate_after_an_uncertain_attempt_counts_as_delivered(
        channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="Evakuierung", attempt=1))
    again = await channel.send(outgoing(text="Evakuierung", attempt=2))
    assert again.remote_id is None and again.extra["duplicate"] == "true"
    assert "506" in again.extra["note"]
    assert [p.id for p in posts(sandbox)] == [first.remote_id]  # posted once
    with pytest.raises(Permanent, match="did not say its id"):
        await channel.retract(again)


async def test_health(channel: Channel, sandbox: RunningSandbox, tmp_path: Path) -> None:
    health = await channel.check_health()
    assert health.up and "Sandbox-Seite" in health.message
    fault(sandbox, "error", 503, target=None)
    down = await channel.check_health()
    assert not down.up and TOKEN not in down.message
    unreachable = await facebook_channel(tmp_path, f"http://127.0.0.1:{free_port()}/facebook")
    try:
        assert not (await unreachable.check_health()).up
    finally:
        await unreachable.close()


# --- pure parts -----------------------------------------------------------------------

def test_regain_access_from_usage_headers() -> None:
    buc = '{"104": [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 7}]}'
    assert regain_access_seconds({"X-Business-Use-Case-Usage": buc}) == 420
    app = '{"call_count": 100, "total_time": 20, "estimated_time_to_regain_access": 2}'
    assert regain_access_seconds({"X-App-Usage": app}) == 120
    assert regain_access_seconds({"X-App-Usage": '{"call_count": 100}'}) is None
    assert regain_access_seconds({"X-Business-Use-Case-Usage": "not json"}) is None


@pytest.mark.parametrize(("setting", "key"), [
    ('page_id = "stadtkoblenz"', "page_id"), ('api_version = "26"', "api_version"),
    ('followups = "thread"', "followups"), ('api_base = "graph.facebook.com"', "api_base"),
])
async def test_config_problems_name_the_key(tmp_path: Path, setting: str, key: str) -> None:
    text = block("http://127.0.0.1:1/facebook")
    name = setting.split(" = ")[0]
    text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{name} ="))
    with pytest.raises(ConfigError) as raised:
        await start_channel(tmp_path, text + "\n" + setting, environ={"FACEBOOK_TOKEN": TOKEN})
    assert raised.value.key == key and raised.value.channel == "facebook"


# --- the daemon -----------------------------------------------------------------------

def test_daemon_retries_a_failing_graph_until_delivered_and_never_shows_the_token(
        live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    daemon, officer = start_beside_webhook(
        tmp_path, live_sandbox, block(f"{live_sandbox.url}/facebook", extra="timeout = 1"),
        daemons, env={"FACEBOOK_TOKEN": TOKEN})
    live_sandbox.fault("facebook", "error", target=PAGE, value=500, count=2)
    run = send_example(daemon, officer)
    delivery, sent_at = run.delivery, run.sent_at

    wait_for(lambda: delivery("leitstelle")["state"] == "delivered", timeout=5,
             message="the webhook delivery")
    assert time.monotonic() - sent_at < 3, "the webhook waited for Facebook"

    done = wait_for(lambda: (d := delivery("facebook"))["state"] == "delivered" and d,
                    timeout=20, message="the Facebook delivery")
    assert done["attempts"] == 3  # two Graph errors, retried with backoff, then posted
    [posted] = live_sandbox.posts("facebook")
    assert done["remote_id"] == posted["id"] and posted["target"] == PAGE
    assert posted["text"].startswith("Evakuierung: Oberwerth")
    assert done["url"] == f"https://www.facebook.com/{PAGE}/posts/{posted['id'].split('_')[1]}"

    metrics = http("GET", daemon.url + "/metrics")[1]
    assert ('broadcaster_delivery_attempts_total{channel="facebook",result="retryable"} 2.0'
            in metrics)
    output = assert_secrets_stay_hidden(daemon, officer, {"the page token": TOKEN})
    assert "delivery.retryable" in output
