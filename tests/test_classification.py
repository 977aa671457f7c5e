"""One table over every channel: a platform's answer → what the dispatcher is told.

Each row runs the channel's real client library against a local HTTP server that
gives one canned answer (status, body, headers) to whatever it is asked, and
checks the verdict: delivered, Retryable (with the wait it carries), Permanent or
OutcomeUnknown. Each platform has its own block of rows and its own factory.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broadcaster.channels.base import Channel
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from tests.support import outgoing, start_channel


@dataclass(frozen=True)
class Case:
    platform: str
    status: int
    body: Any
    expected: Any  # "delivered" or an exception class
    headers: dict[str, Any] = field(default_factory=dict)  # a callable value: per request
    retry_after: float | None = None  # expected wait of a Retryable (approximate)
    note: str = ""
    attempt: int = 1  # outgoing.attempt (2: the answer to a retry after an uncertain try)

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
        headers = {k: v() if callable(v) else v for k, v in self.case.headers.items()}
        return web.Response(status=self.case.status, text=text,
                            content_type="application/json", headers=headers)


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
    Case("webhook", 401, "", CredentialsRejected),
    Case("webhook", 403, "", CredentialsRejected),
    Case("webhook", 404, "", Permanent),
    Case("webhook", 410, "", Permanent),
]

# --- telegram -----------------------------------------------------------------

async def _telegram(base_url: str, directory: Path) -> Channel:
    return await start_channel(directory, f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@stadt_warnung"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{base_url}"
""", environ={"TELEGRAM_TOKEN": "123456789:classification-token"})


def _telegram_error(status: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


_TELEGRAM_MESSAGE = {"ok": True, "result": {
    "message_id": 42, "date": 1795000000, "text": "Testtext",
    "chat": {"id": -1001234567890, "type": "channel", "username": "stadt_warnung"}}}

FACTORIES["telegram"] = _telegram
CASES += [
    Case("telegram", 200, _TELEGRAM_MESSAGE, "delivered"),
    Case("telegram", 429, _telegram_error(429, "Too Many Requests: retry after 5",
                                          retry_after=5), Retryable, retry_after=5),
    # Without parameters.retry_after python-telegram-bot raises a plain NetworkError.
    Case("telegram", 429, _telegram_error(429, "Too Many Requests"), Retryable,
         note="no-retry-after"),
    Case("telegram", 400, _telegram_error(400, "Bad Request: message is too long"), Permanent),
    Case("telegram", 400, _telegram_error(400, "Bad Request: chat not found"), Permanent,
         note="chat-not-found"),
    Case("telegram", 401, _telegram_error(401, "Unauthorized"), CredentialsRejected),
    Case("telegram", 403, _telegram_error(
        403, "Forbidden: bot is not a member of the channel chat"), CredentialsRejected),
    Case("telegram", 404, _telegram_error(404, "Not Found"), CredentialsRejected,
         note="invalid-token"),
    Case("telegram", 500, _telegram_error(500, "Internal Server Error"), Retryable),
    Case("telegram", 502, "<html><body>502 Bad Gateway</body></html>", Retryable,
         note="proxy-html"),
    Case("telegram", 503, _telegram_error(503, "Service Unavailable"), Retryable),
]

# --- facebook -----------------------------------------------------------------

async def _facebook(base_url: str, directory: Path) -> Channel:
    return await start_channel(directory, f"""
[[channel]]
name = "facebook"
kind = "facebook"
page_id = "104000000000001"
token = {{ env = "FACEBOOK_TOKEN" }}
api_base = "{base_url}"
""", environ={"FACEBOOK_TOKEN": "EAAGclassificationPageToken"})


def _graph_error(code: int, message: str, **more: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEfGh123", **more}}


def _usage(minutes: int) -> dict[str, str]:
    return {"X-Business-Use-Case-Usage": json.dumps({"104000000000001": [
        {"type": "pages", "call_count": 100, "total_cputime": 9, "total_time": 12,
         "estimated_time_to_regain_access": minutes}]})}


_FB_DUPLICATE = _graph_error(506, "(#506) Duplicate status message", error_subcode=1455006)

FACTORIES["facebook"] = _facebook
CASES += [
    Case("facebook", 200, {"id": "104000000000001_5550001"}, "delivered"),
    # Graph refuses a repeat: the earlier attempt (or an identical post) landed.
    Case("facebook", 400, _FB_DUPLICATE, "delivered", note="506-duplicate", attempt=2),
    Case("facebook", 400, _FB_DUPLICATE, "delivered", note="506-duplicate-first-attempt"),
    Case("facebook", 500, _graph_error(1, "An unknown error occurred", is_transient=True),
         Retryable, note="code-1"),
    Case("facebook", 503, _graph_error(2, "Service temporarily unavailable",
                                       is_transient=True), Retryable, note="code-2"),
    Case("facebook", 403, _graph_error(4, "(#4) Application request limit reached"),
         Retryable, _usage(3), retry_after=180, note="code-4"),
    Case("facebook", 400, _graph_error(17, "(#17) User request limit reached"), Retryable,
         {"X-App-Usage": '{"call_count": 100, "total_cputime": 20, "total_time": 30}'},
         retry_after=60, note="code-17-no-stated-wait"),
    Case("facebook", 403, _graph_error(32, "(#32) Page request limit reached"), Retryable,
         _usage(10), retry_after=600, note="code-32"),
    Case("facebook", 400, _graph_error(613, "Calls to this api have exceeded the rate limit."),
         Retryable, _usage(1), retry_after=60, note="code-613"),
    Case("facebook", 400, _graph_error(80001, "There have been too many calls to this Page "
                                       "account."), Retryable, _usage(2), retry_after=120,
         note="code-80001"),
    Case("facebook", 400, _graph_error(368, "The action attempted has been deemed abusive or "
                                       "is otherwise disallowed"), Retryable,
         retry_after=3600, note="code-368"),
    Case("facebook", 400, _graph_error(190, "Error validating access token: Session has "
                                       "expired", error_subcode=463), CredentialsRejected,
         note="code-190"),
    Case("facebook", 403, _graph_error(10, "(#10) This endpoint requires the "
                                       "'pages_manage_posts' permission"), CredentialsRejected,
         note="code-10"),
    Case("facebook", 403, _graph_error(200, "(#200) The user hasn't authorized the application "
                                       "to perform this action"), CredentialsRejected,
         note="code-200"),
    Case("facebook", 400, _graph_error(100, "(#100) Invalid parameter"), Permanent,
         note="code-100"),
    Case("facebook", 500, "", Retryable, note="no-graph-body"),
    Case("facebook", 502, "<html><body>502 Bad Gateway</body></html>", Retryable,
         note="proxy-html"),
    Case("facebook", 200, "", OutcomeUnknown, note="unreadable-success"),
]

# --- x ------------------------------------------------------------------------

async def _x(base_url: str, directory: Path) -> Channel:
    return await start_channel(directory, f"""
[[channel]]
name = "x"
kind = "x"
consumer_key = {{ env = "X_CONSUMER_KEY" }}
consumer_secret = {{ env = "X_CONSUMER_SECRET" }}
access_token = {{ env = "X_ACCESS_TOKEN" }}
access_token_secret = {{ env = "X_ACCESS_SECRET" }}
api_base = "{base_url}"
""", environ={"X_CONSUMER_KEY": "classification-key", "X_CONSUMER_SECRET": "c-secret",
              "X_ACCESS_TOKEN": "1610000000000000001-classification",
              "X_ACCESS_SECRET": "a-secret"})


def _problem(status: int, title: str, detail: str, **more: Any) -> dict[str, Any]:
    return {"title": title, "type": "about:blank", "status": status, "detail": detail, **more}


def _in(seconds: int) -> Callable[[], str]:
    """An epoch reset time `seconds` from when the answer is given."""
    return lambda: str(int(time.time()) + seconds)


_X_DUPLICATE = _problem(403, "Forbidden",
                        "You are not allowed to create a Tweet with duplicate content.")
_X_TOO_MANY = _problem(429, "Too Many Requests", "Too Many Requests")

FACTORIES["x"] = _x
CASES += [
    Case("x", 201, {"data": {"id": "1850000000000000001", "text": "Testtext",
                             "edit_history_tweet_ids": ["1850000000000000001"]}}, "delivered"),
    Case("x", 429, _X_TOO_MANY, Retryable,
         {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
          "x-rate-limit-reset": _in(30)}, retry_after=30, note="window"),
    Case("x", 429, _X_TOO_MANY, Retryable,
         {"x-rate-limit-reset": _in(30), "x-user-limit-24hour-limit": "100",
          "x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": _in(7200)},
         retry_after=7200, note="daily-cap"),
    Case("x", 401, _problem(401, "Unauthorized", "Unauthorized"), CredentialsRejected),
    Case("x", 403, _X_DUPLICATE, Permanent, note="duplicate-first-attempt"),
    Case("x", 403, _X_DUPLICATE, "delivered", note="duplicate-after-uncertain", attempt=2),
    Case("x", 403, _problem(403, "Forbidden", "You are not permitted to perform this action."),
         Permanent, note="other"),
    Case("x", 400, {"errors": [{"parameters": {"text": []}, "message": "text is invalid"}],
                    "title": "Invalid Request", "detail": "One or more parameters to your "
                    "request was invalid.", "type": "https://api.twitter.com/2/problems/"
                    "invalid-request"}, Permanent),
    Case("x", 404, _problem(404, "Not Found Error", "Could not find tweet"), Permanent),
    Case("x", 500, _problem(500, "Internal Server Error", "Internal Server Error"), Retryable),
    Case("x", 503, _problem(503, "Service Unavailable", "Service Unavailable"), Retryable),
    Case("x", 503, "<html><body>Over capacity</body></html>", Retryable, note="html"),
    Case("x", 500, "", Retryable, note="empty"),
    Case("x", 201, "", OutcomeUnknown, note="unreadable-success"),
]

# --- mastodon -----------------------------------------------------------------

async def _mastodon(base_url: str, directory: Path) -> Channel:
    return await start_channel(directory, f"""
[[channel]]
name = "mastodon"
kind = "mastodon"
instance = "{base_url}"
token = {{ env = "MASTODON_TOKEN" }}
""", {"MASTODON_TOKEN": "table-mastodon-token"})


def _mastodon_reset(seconds: float) -> dict[str, str]:
    """X-RateLimit-Reset as Mastodon sends it: an ISO 8601 time."""
    from datetime import UTC, datetime, timedelta

    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return {"X-RateLimit-Reset": moment.isoformat().replace("+00:00", "Z")}


FACTORIES["mastodon"] = _mastodon
CASES += [
    Case("mastodon", 200, {"id": "1000", "url": "https://social.example/@stadt/1000"},
         "delivered"),
    # The rows are built at collection time: a reset in the past must mean "now" (0 s);
    # an exact future wait is checked against the sandbox in tests/channels/test_mastodon.py.
    Case("mastodon", 429, {"error": "Too many requests"}, Retryable, _mastodon_reset(-60),
         retry_after=0, note="reset-passed"),
    Case("mastodon", 429, {"error": "Too many requests"}, Retryable, _mastodon_reset(3600),
         note="reset-ahead"),
    Case("mastodon", 401, {"error": "The access token is invalid"}, CredentialsRejected),
    Case("mastodon", 403, {"error": "This action is not allowed"}, CredentialsRejected),
    Case("mastodon", 422, {"error": "Validation failed: Text character limit of 500 exceeded"},
         Permanent),
    Case("mastodon", 500, {"error": "We're sorry, but something went wrong"}, Retryable),
    Case("mastodon", 503, "", Retryable, {"Retry-After": "2"}, retry_after=2),
]

# --- end of platform blocks -----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_platform_answer_is_classified(case: Case, canned: CannedServer,
                                             tmp_path: Path) -> None:
    canned.case = case
    channel = await FACTORIES[case.platform](canned.url, tmp_path)
    try:
        if case.expected == "delivered":
            receipt = await channel.send(outgoing(attempt=case.attempt))
            assert receipt is not None
            return
        with pytest.raises(DeliveryError) as raised:
            await channel.send(outgoing(attempt=case.attempt))
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

