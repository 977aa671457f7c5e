"""Facebook Page channel: posts, comment follow-ups, edits and deletions via Graph.

One aiohttp call per method against ``{api_base}/{api_version}/…`` (there is no
official SDK worth using). The Page access token travels in the form body of a
POST and in the ``Authorization`` header of a GET or DELETE — never in a URL, so
it cannot leak through a logged or echoed address.

Graph reports every error as ``{"error": {"code", "message", …}}`` and throttling
may arrive as HTTP 400 or 403, so answers are classified by ``error.code``
(``classify_graph``); without a Graph body the shared HTTP verdict applies:

    1, 2, is_transient               Retryable
    4, 17, 32, 613, 80000–80014      Retryable after estimated_time_to_regain_access
                                     (minutes, X-Business-Use-Case-Usage or X-App-Usage)
    368                              Retryable in an hour (temporarily blocked)
    190, 102                         Permanent: renew the page token
    3, 10, 200–299                   Permanent: a permission is missing
    100 and other 4xx                Permanent
    506                              duplicate post: an earlier attempt landed → delivered

A follow-up (``outgoing.reply_to``) becomes a comment under the original post with
``followups = "comment"`` (the default), or a new post on the feed with ``"post"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from broadcaster import lengths
from broadcaster.channels.base import (
    Channel,
    ChannelKind,
    Health,
    Markup,
    TextForm,
    UnknownPolicy,
    classify_http,
    connection_error,
)
from broadcaster.config import ChannelConfig, ConfigProblem, Secret, require_http_url
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.models import Outgoing, Receipt

DUPLICATE_POST = 506
TOKEN_INVALID = frozenset({102, 190})
TRANSIENT = frozenset({1, 2})
THROTTLED = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TEMPORARILY_BLOCKED = 368
PERMISSION = frozenset({3, 10, *range(200, 300)})
# Graph counts usage over a rolling hour: retrying within seconds only prolongs the
# throttling, so without a stated wait the dispatcher waits at least this long.
THROTTLE_FALLBACK_SECONDS = 60.0
BLOCKED_RETRY_SECONDS = 3600.0
USAGE_HEADERS = ("X-Business-Use-Case-Usage", "X-Page-Usage", "X-App-Usage")

_API_VERSION = re.compile(r"v\d+\.\d+")


@dataclass(frozen=True)
class FacebookConfig:
    page_id: str
    token: Secret  # a Page access token (pages_manage_posts, pages_read_engagement)
    api_version: str = "v26.0"
    followups: Literal["comment", "post"] = "comment"
    api_base: str = "https://graph.facebook.com"

    def validate(self) -> None:
        if not self.page_id.isdigit():
            raise ConfigProblem(
                "page_id", "must be the numeric Page ID (Page settings → About → Page ID), "
                f"not {self.page_id!r}",
            )
        if not _API_VERSION.fullmatch(self.api_version):
            raise ConfigProblem("api_version", f'must look like "v26.0", not {self.api_version!r}')
        require_http_url("api_base", self.api_base)

    @property
    def target(self) -> str:
        return f"page {self.page_id}"


@dataclass(frozen=True)
class GraphAnswer:
    """One answer from Graph: its status, headers, text and the parsed JSON object."""

    status: int
    headers: Mapping[str, str]
    text: str
    document: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.document is not None

    @property
    def error(self) -> dict[str, Any]:
        error = (self.document or {}).get("error")
        return error if isinstance(error, dict) else {}

    @property
    def code(self) -> int | None:
        code = self.error.get("code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None


def regain_access_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest ``estimated_time_to_regain_access`` (minutes) in Graph's usage
    headers, as seconds; None when no header states a wait."""
    minutes: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "estimated_time_to_regain_access" and isinstance(item, int | float):
                    minutes.append(float(item))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if raw:
            try:
                walk(json.loads(raw))
            except ValueError:
                continue
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


def classify_graph(answer: GraphAnswer, *, channel: str, token_source: str,
                   secrets: list[str]) -> DeliveryError:
    """The error to raise for a Graph answer that is not a success (506 aside)."""
    code = answer.code
    if code is None:
        verdict = classify_http(answer.status, answer.headers, _scrub(answer.text, secrets),
                                channel=channel)
        if verdict is not None:
            return verdict
        return OutcomeUnknown(f"{channel}: Graph answered HTTP {answer.status} without a "
                              "readable body")
    detail = _scrub(_describe(answer), secrets)
    renew = f"renew `token` of channel '{channel}' in channels.toml ({token_source})"
    if code in TOKEN_INVALID:
        return CredentialsRejected(
            f"{channel}: page token expired or revoked — {renew} [{detail}]")
    if code in THROTTLED:
        wait = regain_access_seconds(answer.headers) or THROTTLE_FALLBACK_SECONDS
        return Retryable(f"{channel}: Facebook is throttling the page [{detail}]",
                         retry_after=wait)
    if code == TEMPORARILY_BLOCKED:
        return Retryable(f"{channel}: the page is temporarily blocked from posting [{detail}]",
                         retry_after=BLOCKED_RETRY_SECONDS)
    if code in TRANSIENT or answer.error.get("is_transient") is True:
        return Retryable(f"{channel}: Facebook reported a temporary error [{detail}]")
    if code in PERMISSION:
        return CredentialsRejected(
            f"{channel}: the page token lacks a permission (pages_manage_posts, "
            f"pages_read_engagement) — {renew} [{detail}]"
        )
    if answer.status >= 500:
        return Retryable(f"{channel}: Facebook server error [{detail}]")
    if code == DUPLICATE_POST:
        return Permanent(f"{channel}: Facebook refused a duplicate [{detail}]")
    return Permanent(f"{channel}: Facebook rejected the request [{detail}]")


def _describe(answer: GraphAnswer) -> str:
    error = answer.error
    code = f"{answer.code}" + (f"/{error['error_subcode']}" if "error_subcode" in error else "")
    message = " ".join(str(error.get("message", "")).split())[:200]
    trace = f", fbtrace_id {error['fbtrace_id']}" if "fbtrace_id" in error else ""
    return f"HTTP {answer.status}, Graph error {code}: {message}{trace}"


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def permalink(object_id: str) -> str:
    """Where a person finds a post ("{page}_{post}") on facebook.com."""
    page, sep, post = object_id.partition("_")
    return f"https://www.facebook.com/{page}/posts/{post}" if sep else (
        f"https://www.facebook.com/{object_id}")


class FacebookChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, FacebookConfig)
        self.settings = settings
        self._graph = f"{settings.api_base.rstrip('/')}/{settings.api_version}"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No timeout of our own: the dispatcher bounds every attempt.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, outgoing: Outgoing) -> Receipt:
        parent = self._comment_parent(outgoing.reply_to)
        path = f"{parent}/comments" if parent else f"{self.settings.page_id}/feed"
        answer = await self._call("POST", path, {"message": outgoing.text})
        if answer.code == DUPLICATE_POST:
            # Graph refuses the same message twice: the earlier attempt (or an identical
            # earlier post) is on the page. It does not say that post's id.
            return Receipt(remote_id=None, extra={
                "type": "comment" if parent else "post", "duplicate": "true",
                "note": "Facebook reported a duplicate post (code 506); its id is unknown",
            })
        if not answer.ok:
            raise self._error(answer)
        assert answer.document is not None
        remote_id = str(answer.document.get("id", ""))
        if not remote_id:
            raise OutcomeUnknown(f"{self.name}: Graph accepted the post without saying its id")
        if parent:
            comment = remote_id.rpartition("_")[2]
            return Receipt(remote_id=remote_id, url=f"{permalink(parent)}?comment_id={comment}",
                           extra={"type": "comment", "post_id": parent})
        extra = {"type": "post"}
        if outgoing.reply_to is not None and self.settings.followups == "comment":
            extra["note"] = "posted on the feed: the original post's id is unknown"
        return Receipt(remote_id=remote_id, url=permalink(remote_id), extra=extra)

    def _comment_parent(self, reply_to: Receipt | None) -> str | None:
        """The post to comment on, or None for a new post on the feed."""
        if reply_to is None or self.settings.followups == "post":
            return None
        if reply_to.extra.get("type") == "comment":
            return reply_to.extra.get("post_id")  # keep the thread flat under the post
        return reply_to.remote_id

    async def edit(self, receipt: Receipt, outgoing: Outgoing) -> Receipt:
        object_id = self._known_id(receipt, "edit")
        answer = await self._call("POST", object_id, {"message": outgoing.text})
        if not answer.ok:
            raise self._error(answer)
        return receipt

    async def retract(self, receipt: Receipt) -> None:
        object_id = self._known_id(receipt, "delete")
        answer = await self._call("DELETE", object_id)
        if not answer.ok:
            raise self._error(answer)

    async def check_health(self) -> Health:
        try:
            answer = await self._call("GET", "me")
        except DeliveryError as exc:
            return Health(up=False, message=str(exc))
        if not answer.ok:
            verdict = self._error(answer)
            return Health(up=False, message=str(verdict),
                          credentials_rejected=isinstance(verdict, CredentialsRejected))
        assert answer.document is not None
        name, node = answer.document.get("name", "?"), answer.document.get("id", "?")
        return Health(up=True, message=f"page token valid for {name!r} (id {node})")

    def _known_id(self, receipt: Receipt, action: str) -> str:
        if not receipt.remote_id:
            raise Permanent(
                f"{self.name}: cannot {action} this post: Facebook reported it as a duplicate "
                "and did not say its id; do it on facebook.com"
            )
        return receipt.remote_id

    def _error(self, answer: GraphAnswer) -> DeliveryError:
        return classify_graph(answer, channel=self.name, token_source=self.settings.token.source,
                              secrets=self.secrets())

    async def _call(self, method: str, path: str,
                    form: dict[str, str] | None = None) -> GraphAnswer:
        """One Graph request; the answer, or the transport failure classified."""
        assert self._session is not None, "start() first"
        token = self.settings.token.reveal()
        headers: dict[str, str] = {}
        if form is None:
            headers["Authorization"] = f"Bearer {token}"
        else:
            form = {**form, "access_token": token}
        try:
            async with self._session.request(method, f"{self._graph}/{path}", data=form,
                                             headers=headers) as response:
                text = await response.text(errors="replace")
                status, answer_headers = response.status, response.headers
        except aiohttp.ClientConnectorError as exc:
            raise connection_error(self.name, exc, request_sent=False) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise connection_error(self.name, exc, request_sent=True) from None
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if 200 <= status < 300 and not isinstance(document, dict):
            raise OutcomeUnknown(f"{self.name}: Graph answered HTTP {status} with an "
                                 "unreadable body")
        return GraphAnswer(status, answer_headers,
                           text, document if isinstance(document, dict) else None)


KIND = ChannelKind(
    name="facebook",
    config_class=FacebookConfig,
    create=FacebookChannel,
    text_form=TextForm.LONG,
    markup=Markup.PLAIN,
    limit=lengths.FACEBOOK_LIMIT,
    count=lengths.characters,
    on_unknown=UnknownPolicy.RETRY,  # a repeat is refused as 506 and counts as delivered
    rate=1.0,
    max_in_flight=2,
)
FacebookChannel.kind = KIND
