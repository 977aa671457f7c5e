"""What the channel tests share: the sandbox's record of one platform, fault
injection, and the check every refused send must pass (it names the channel and
shows no secret)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from broadcaster.channels.base import Channel
from broadcaster.errors import DeliveryError
from broadcaster.sandbox.server import RunningSandbox
from broadcaster.sandbox.state import Fault, FaultKind, Post
from tests.support import outgoing


def posts(sandbox: RunningSandbox, platform: str) -> list[Post]:
    return [p for p in sandbox.state.posts if p.platform == platform]


def inject(sandbox: RunningSandbox, platform: str, kind: str, value: float | None = None,
           target: str | None = None, count: int | None = 1) -> None:
    sandbox.state.add_fault(Fault(platform, FaultKind(kind), target, value, count))


async def refusal(channel: Channel, secrets: Iterable[str], **kwargs: Any) -> DeliveryError:
    """Send, expect a classified error; it names the channel and contains no secret
    (compared without case: some platforms lower-case the URL they echo)."""
    with pytest.raises(DeliveryError) as raised:
        await channel.send(outgoing(**kwargs))
    text = str(raised.value)
    assert text.startswith(f"{channel.name}:"), text
    for secret in secrets:
        assert secret.lower() not in text.lower(), text
    return raised.value
