"""One table over every channel: what the network does → what the dispatcher is told.

A platform that hangs is ended by the dispatcher's timeout (stood in for here by
asyncio.timeout) and the channel works again afterwards; a connection dropped after
the request was read is an unknown outcome; nobody listening is retryable. Each
platform runs its real client library against its sandbox stand-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster.channels.base import Channel
from broadcaster.errors import OutcomeUnknown, Retryable
from broadcaster.sandbox.server import RunningSandbox
from tests.channels import kit
from tests.channels import test_email as email
from tests.channels import test_facebook as facebook
from tests.channels import test_mastodon as mastodon
from tests.channels import test_telegram as telegram
from tests.channels import test_x as x
from tests.support import free_port, outgoing, start_channel, webhook_channel

Maker = Callable[[Path, str, RunningSandbox], Awaitable[Channel]]


@dataclass(frozen=True)
class Platform:
    name: str
    make: Maker  # (folder, base URL or "" for the sandbox's, sandbox) → started channel
    target: str | None
    secrets: tuple[str, ...]


def _base(base: str, sandbox: RunningSandbox, path: str) -> str:
    return base + path if base else sandbox.url + path


async def _email(directory: Path, base: str, sandbox: RunningSandbox) -> Channel:
    port = int(base.rsplit(":", 1)[1]) if base else sandbox.smtp_port
    assert port is not None
    channel: Channel = await start_channel(directory, email.block(port, security="none"),
                                           environ={"SMTP_PASSWORD": email.PASSWORD})
    return channel


async def _webhook(directory: Path, base: str, sandbox: RunningSandbox) -> Channel:
    channel: Channel = await start_channel(directory,
                                           webhook_channel("partner", base or sandbox.url))
    return channel


PLATFORMS = [
    Platform("telegram", lambda d, b, s: telegram.telegram_channel(
        d, _base(b, s, "/telegram")), telegram.CHAT, (telegram.TOKEN,)),
    Platform("facebook", lambda d, b, s: facebook.facebook_channel(
        d, _base(b, s, "/facebook")), facebook.PAGE, (facebook.TOKEN,)),
    Platform("x", lambda d, b, s: x.x_channel(d, _base(b, s, "/x")), x.ACCOUNT,
             tuple(x.CREDENTIALS.values())),
    Platform("mastodon", lambda d, b, s: mastodon.mastodon_channel(
        d, _base(b, s, "/mastodon")), mastodon.ACCOUNT, (mastodon.TOKEN,)),
    Platform("email", _email, None, (email.PASSWORD,)),
    Platform("webhook", _webhook, "partner", ("sandbox-webhook-secret",)),
]


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
async def test_a_hanging_platform_is_ended_by_the_timeout_and_the_channel_recovers(
        platform: Platform, sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await platform.make(tmp_path, "", sandbox)
    try:
        kit.inject(sandbox, platform.name, "hang", target=platform.target)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await channel.send(outgoing())
        assert time.monotonic() - started < 2
        assert kit.posts(sandbox, platform.name) == []
        await channel.send(outgoing(delivery_id="01TESTDELIVERY000000000002", text="danach"))
        assert len(kit.posts(sandbox, platform.name)) == 1
    finally:
        await channel.close()


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
async def test_a_connection_dropped_after_the_request_is_an_unknown_outcome(
        platform: Platform, sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await platform.make(tmp_path, "", sandbox)
    try:
        kit.inject(sandbox, platform.name, "drop_after_receive", target=platform.target)
        assert isinstance(await kit.refusal(channel, platform.secrets), OutcomeUnknown)
    finally:
        await channel.close()


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
async def test_nobody_listening_is_retryable(platform: Platform, sandbox: RunningSandbox,
                                             tmp_path: Path) -> None:
    channel = await platform.make(tmp_path, f"http://127.0.0.1:{free_port()}", sandbox)
    try:
        assert isinstance(await kit.refusal(channel, platform.secrets), Retryable)
    finally:
        await channel.close()
