"""X channel: posts, replies and deletions through the X API v2 with tweepy.

tweepy's ``AsyncClient`` signs every request with OAuth 1.0a (user context) for
``https://api.twitter.com``, which it has hard-coded. An aiohttp client middleware
on the client's own session (created in ``start``, inside the running loop, and
closed in ``close``) sends the signed request to ``api_base`` instead — the
signature stays valid because it covers the original URL — and turns an answer
tweepy could not parse (not a JSON object) into ``UnreadableAnswer``, classified
by its HTTP status.

Verdicts: TooManyRequests → Retryable until ``x-rate-limit-reset`` (or a daily
cap's reset when that is used up); Unauthorized → Permanent (credentials, or a
clock that is off); Forbidden "duplicate content" → delivered after an uncertain
attempt (attempt > 1), Permanent on the first; other 4xx → Permanent;
TwitterServerError → Retryable; connection refused → Retryable; dropped after
sending → OutcomeUnknown.

Editing is not supported: tweepy 4.17 has no call for it and X allows an edit only
within an hour of posting, a few times; a correction goes out as a reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import hdrs
from tweepy.asynchronous import AsyncClient
from tweepy.errors import (
    Forbidden,
    HTTPException,
    TooManyRequests,
    TwitterServerError,
    Unauthorized,
)
from yarl import URL

from broadcaster import lengths
from broadcaster.channels.base import (
    Channel,
    ChannelKind,
    Health,
    Markup,
    NotSupported,
    TextForm,
    UnknownPolicy,
    classify_http,
    connection_error,
)
from broadcaster.config import ChannelConfig, Secret, require_http_url
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.models import Outgoing, Receipt

X_API = "https://api.twitter.com"  # where tweepy sends (and signs) every request
DUPLICATE = "duplicate content"
# Daily caps: when one is used up, its own reset applies, not the 15-minute window's.
DAILY_LIMITS = ("x-user-limit-24hour", "x-app-limit-24hour")


@dataclass(frozen=True)
class XConfig:
    consumer_key: Secret
    consumer_secret: Secret
    access_token: Secret
    access_token_secret: Secret
    api_base: str = X_API

    def validate(self) -> None:
        require_http_url("api_base", self.api_base)

    @property
    def target(self) -> str:
        # X access tokens are "<user id>-<random>"; the user id is public.
        user, sep, _ = self.access_token.reveal().partition("-")
        return f"user id {user}" if sep and user.isdigit() else "the access token's account"


class UnreadableAnswer(Exception):
    """An answer that is not a JSON object, which tweepy cannot handle."""

    def __init__(self, status: int, headers: Mapping[str, str], text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text
        super().__init__(f"HTTP {status}")


def redirect_middleware(api_base: str) -> aiohttp.ClientMiddlewareType:
    """Send tweepy's requests for api.twitter.com to ``api_base``; refuse answers
    that are not JSON objects with UnreadableAnswer."""
    base = api_base.rstrip("/")

    async def middleware(request: aiohttp.ClientRequest,
                         handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        if base != X_API and str(request.url).startswith(X_API + "/"):
            request.url = URL(base + request.url.raw_path_qs, encoded=True)
            request.headers[hdrs.HOST] = request.url.host_port_subcomponent or ""
        response = await handler(request)
        body = await response.read()
        try:
            document = json.loads(body) if response.content_type == "application/json" else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            response.release()
            raise UnreadableAnswer(response.status, response.headers,
                                   body.decode("utf-8", "replace"))
        return response

    return middleware


def rate_limit_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until X lifts a rate limit: the 15-minute window's reset, or a daily
    cap's reset when that cap is used up (whichever is later)."""
    now = time.time() if now is None else now
    resets: list[float] = []
    for prefix in DAILY_LIMITS:
        if headers.get(f"{prefix}-remaining", "").strip() == "0":
            resets.append(_epoch(headers.get(f"{prefix}-reset")))
    resets.append(_epoch(headers.get("x-rate-limit-reset")))
    latest = max(resets)
    return max(0.0, latest - now) if latest > 0 else None


def _epoch(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


class XChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, XConfig)
        self.settings = settings
        self._client: Any = None

    async def start(self) -> None:
        client = AsyncClient(
            consumer_key=self.settings.consumer_key.reveal(),
            consumer_secret=self.settings.consumer_secret.reveal(),
            access_token=self.settings.access_token.reveal(),
            access_token_secret=self.settings.access_token_secret.reveal(),
            wait_on_rate_limit=False,  # it would sleep; the dispatcher waits instead
        )
        # Our own session, or tweepy opens and closes one per request without the
        # redirect. No timeout of its own: the dispatcher bounds every attempt.
        client.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            middlewares=(redirect_middleware(self.settings.api_base),),
        )
        self._client = client

    async def close(self) -> None:
        if self._client is not None and self._client.session is not None:
            await self._client.session.close()

    async def send(self, outgoing: Outgoing) -> Receipt:
        reply_to = outgoing.reply_to.remote_id if outgoing.reply_to is not None else None
        try:
            response = await self._call(self._client.create_tweet, text=outgoing.text,
                                        in_reply_to_tweet_id=reply_to)
        except Forbidden as exc:
            if DUPLICATE not in _detail(exc).lower():
                raise self._forbidden(exc, outgoing.text) from None
            if outgoing.attempt > 1:
                # The earlier, uncertain attempt landed; X does not say its id.
                return Receipt(remote_id=None, extra={
                    "duplicate": "true",
                    "note": "X refused a duplicate after an uncertain attempt; its id is unknown",
                })
            raise Permanent(
                f"{self.name}: X refused the post as a duplicate: the account already posted "
                "this exact text"
            ) from None
        data = response.data if isinstance(response.data, dict) else {}
        tweet_id = str(data.get("id") or "")
        if not tweet_id:
            raise OutcomeUnknown(f"{self.name}: X accepted the post without saying its id")
        return Receipt(remote_id=tweet_id, url=f"https://x.com/i/web/status/{tweet_id}")

    async def edit(self, receipt: Receipt, outgoing: Outgoing) -> Receipt:
        raise NotSupported(f"{self.name}: X posts cannot be edited through the API used "
                           "here; send a correction as a follow-up (it threads as a reply)")

    async def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise Permanent(f"{self.name}: cannot delete this post: X reported it as a duplicate "
                            "and did not say its id; delete it on x.com")
        try:
            await self._call(self._client.delete_tweet, receipt.remote_id)
        except Forbidden as exc:
            raise self._forbidden(exc, "") from None

    async def check_health(self) -> Health:
        try:
            response = await self._call(self._client.get_me, user_auth=True)
        except Forbidden as exc:
            return Health(up=False, message=str(self._forbidden(exc, "")))
        except DeliveryError as exc:
            return Health(up=False, message=str(exc),
                          credentials_rejected=isinstance(exc, CredentialsRejected))
        username = getattr(response.data, "username", None) or "?"  # a tweepy User
        return Health(up=True, message=f"credentials valid, signed in as @{username}")

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One tweepy call; every failure but Forbidden (which callers read) classified."""
        assert self._client is not None, "start() first"
        try:
            return await method(*args, **kwargs)
        except TooManyRequests as exc:
            raise Retryable(f"{self.name}: X rate limit reached ({self._excerpt(exc)})",
                            retry_after=rate_limit_wait(exc.response.headers)) from None
        except Unauthorized as exc:
            raise CredentialsRejected(
                f"{self.name}: X rejected the credentials ({self._excerpt(exc)}) — check "
                f"consumer_key, consumer_secret, access_token and access_token_secret of "
                f"channel '{self.name}' in channels.toml (revoked or regenerated keys), and "
                "that this server's clock is right: OAuth 1.0a signatures carry the time"
            ) from None
        except TwitterServerError as exc:
            raise Retryable(f"{self.name}: X server error ({self._excerpt(exc)})") from None
        except Forbidden:
            raise
        except HTTPException as exc:  # 400, 404 and other refusals
            raise Permanent(f"{self.name}: X rejected the request ({self._excerpt(exc)})"
                            ) from None
        except UnreadableAnswer as exc:
            raise self._unreadable(exc) from None
        except aiohttp.ClientConnectorError as exc:
            raise connection_error(self.name, exc, request_sent=False) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise connection_error(self.name, exc, request_sent=True) from None

    def _forbidden(self, exc: Forbidden, text: str) -> Permanent:
        hint = ""
        weighted = lengths.x_weighted_length(text) if text else 0
        if weighted > lengths.X_LIMIT:
            hint = f" — the text has {weighted} weighted characters, X allows {lengths.X_LIMIT}"
        elif "oauth1 app permissions" in _detail(exc).lower():
            hint = (" — give the X app Read and Write permission, then regenerate the access "
                    "token and secret")
        return Permanent(f"{self.name}: X refused the request ({self._excerpt(exc)}){hint}")

    def _unreadable(self, exc: UnreadableAnswer) -> DeliveryError:
        if exc.status == 429:
            return Retryable(f"{self.name}: X rate limit reached (HTTP 429)",
                             retry_after=rate_limit_wait(exc.headers))
        verdict = classify_http(exc.status, exc.headers, self._scrub(exc.text), channel=self.name,
                                auth_hint=f"check the X credentials of channel '{self.name}'")
        if verdict is None:  # 2xx, but nothing we can read: it may well be posted
            return OutcomeUnknown(f"{self.name}: X answered HTTP {exc.status} with an "
                                  "unreadable body")
        return verdict

    def _excerpt(self, exc: HTTPException) -> str:
        status = getattr(exc.response, "status", "?")
        detail = " ".join(_detail(exc).split())[:200]
        return self._scrub(f"HTTP {status}" + (f": {detail}" if detail else ""))

    def _scrub(self, text: str) -> str:
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text


def _detail(exc: HTTPException) -> str:
    """What X said: the RFC 7807 detail and any error messages."""
    return "; ".join(str(message) for message in exc.api_messages)


KIND = ChannelKind(
    name="x",
    config_class=XConfig,
    create=XChannel,
    text_form=TextForm.SHORT,
    markup=Markup.PLAIN,
    limit=lengths.X_LIMIT,
    count=lengths.x_weighted_length,
    on_unknown=UnknownPolicy.RETRY,  # a repeat is refused as duplicate: delivered
    rate=1.0,
    max_in_flight=1,
)
XChannel.kind = KIND
