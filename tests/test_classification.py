"""One table over every channel: a platform's answer → what the dispatcher is told.

Each row runs the channel's real client library against a local HTTP server that
gives one canned answer (status, body, headers) to whatever it is asked, and
checks the verdict: delivered, Retryable (with the wait it carries), Permanent or
OutcomeUnknown. Each platform has its own block of rows and its own factory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broadcaster.channels.base import Channel
from broadcaster.errors import DeliveryError, Permanent, Retryable
from tests.support import outgoing, start_channel


@dataclass(frozen=True)
class Case:
    platform: str
    status: int
    body: Any
    expected: Any  # "delivered" or an exception class
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # expected wait of a Retryable (approximate)
    note: str = ""

    @property
    def id(self) -> str:
        verdict = self.expected if isinstance(self.expected, str) else self.expected.__name__
        return f"{self.platform}-{self.status}-{verdict}" + (f"-{self.note}" if self.note else "")


class CannedServer:
    """Answers every request with the current case."""

    def __init__(self) -> None:
        self.case: Case | None = None
        self.url = ""

    async def answer(self, request: web.Request) -> web.Response:
        await request.read()
        assert self.case is not None
        body = self.case.body
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=self.case.status, text=text,
                            content_type="application/json", headers=self.case.headers)


@pytest.fixture
async def canned() -> AsyncIterator[CannedServer]:
    server = CannedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.answer)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


Factory = Callable[[str, Path], Awaitable[Channel]]
FACTORIES: dict[str, Factory] = {}
CASES: list[Case] = []


# --- webhook ------------------------------------------------------------------

async def _webhook(base_url: str, directory: Path) -> Channel:
    return await start_channel(directory, f"""
[[channel]]
name = "partner"
kind = "webhook"
url = "{base_url}/hook"
secret = {{ env = "WEBHOOK_SECRET" }}
""")

FACTORIES["webhook"] = _webhook
CASES += [
    Case("webhook", 200, {"ok": True}, "delivered"),
    Case("webhook", 204, "", "delivered"),
    Case("webhook", 408, "", Retryable),
    Case("webhook", 429, "", Retryable, {"Retry-After": "7"}, retry_after=7),
    Case("webhook", 500, "", Retryable),
    Case("webhook", 503, "", Retryable, {"Retry-After": "2"}, retry_after=2),
    Case("webhook", 400, {"error": "bad"}, Permanent),
    Case("webhook", 401, "", Permanent),
    Case("webhook", 403, "", Permanent),
    Case("webhook", 404, "", Permanent),
    Case("webhook", 410, "", Permanent),
]

# --- telegram -----------------------------------------------------------------
# (rows and factory for the Telegram channel)

# --- facebook -----------------------------------------------------------------
# (rows and factory for the Facebook channel)

# --- x ------------------------------------------------------------------------
# (rows and factory for the X channel)

# --- mastodon -----------------------------------------------------------------
# (rows and factory for the Mastodon channel)

# --- end of platform blocks -----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_platform_answer_is_classified(case: Case, canned: CannedServer,
                                             tmp_path: Path) -> None:
    canned.case = case
    channel = await FACTORIES[case.platform](canned.url, tmp_path)
    try:
        if case.expected == "delivered":
            receipt = await channel.send(outgoing())
            assert receipt is not None
            return
        with pytest.raises(DeliveryError) as raised:
            await channel.send(outgoing())
        assert type(raised.value) is case.expected, raised.value
        if case.retry_after is not None:
            assert isinstance(raised.value, Retryable)
            assert raised.value.retry_after == pytest.approx(case.retry_after, abs=2)
        assert str(raised.value).startswith(f"{channel.name}:"), "errors name the channel"
    finally:
        await channel.close()


def test_every_registered_kind_has_rows() -> None:
    from broadcaster.channels import KINDS

    http_kinds = set(KINDS) - {"email"}  # e-mail has its own SMTP table
    assert http_kinds <= {case.platform for case in CASES}

