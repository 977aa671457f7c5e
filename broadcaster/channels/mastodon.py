"""Mastodon channel: one status per delivery on a city account, through the REST API.

Calls the instance directly with aiohttp (Mastodon.py is synchronous and sleeps on a
429 itself). ``POST /api/v1/statuses`` carries ``Idempotency-Key: <delivery id>``:
for an hour the instance answers a repeat with the original status instead of
posting again, so an unknown outcome is simply retried. Follow-ups reply with
``in_reply_to_id``; edits ``PUT`` and retractions ``DELETE`` the status.

The status language is the channel's one language (a short-form channel posts
exactly one, see config.py). At start the channel reads the instance's own length
limit from ``GET /api/v2/instance`` and falls back to Mastodon's default of 500 when
the instance cannot be reached; start never fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
from broadcaster.config import ChannelConfig, Secret, require_http_url
from broadcaster.errors import CredentialsRejected, DeliveryError, Permanent, Retryable
from broadcaster.models import Outgoing, Receipt

# Reading the instance's limit at start must not hold up the daemon for long.
INSTANCE_TIMEOUT = 5.0


@dataclass(frozen=True)
class MastodonConfig:
    instance: str  # base URL, e.g. https://social.bund.de
    token: Secret  # an access token with scope write:statuses (read:accounts for health)
    visibility: Literal["public", "unlisted"] = "public"

    def validate(self) -> None:
        require_http_url("instance", self.instance)

    @property
    def base_url(self) -> str:
        return self.instance.rstrip("/")

    @property
    def target(self) -> str:
        return self.base_url


def reset_wait(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (an ISO 8601 time), when the header is there."""
    value = headers.get("X-RateLimit-Reset")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def error_text(body: str) -> str:
    """Mastodon's ``{"error": "…"}`` text, or the body itself."""
    try:
        document = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:200]
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])
    return " ".join(body.split())[:200]


class MastodonChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, MastodonConfig)
        self.settings = settings
        self.language = config.languages[0]
        self._limit: int = lengths.MASTODON_DEFAULT_LIMIT
        self._session: aiohttp.ClientSession | None = None

    @property
    def _renew(self) -> str:
        return (f"renew the Mastodon access token of channel {self.name!r} for "
                f"{self.settings.base_url} (token = {self.settings.token.source}) "
                "in channels.toml")

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
        )
        self._limit = await self._instance_limit()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def length_limit(self) -> int | None:
        return self._limit

    async def _instance_limit(self) -> int:
        """configuration.statuses.max_characters, or 500 when the instance does not say."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=min(INSTANCE_TIMEOUT, self.config.timeout))
        try:
            async with self._session.get(f"{self.settings.base_url}/api/v2/instance",
                                         timeout=timeout) as resp:
                if resp.status != 200:
                    return lengths.MASTODON_DEFAULT_LIMIT
                document = await resp.json(content_type=None)
            limit = document["configuration"]["statuses"]["max_characters"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return lengths.MASTODON_DEFAULT_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            return lengths.MASTODON_DEFAULT_LIMIT
        return limit

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.settings.token.reveal()}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _verdict(self, status: int, headers: Mapping[str, str], body: str) -> DeliveryError | None:
        if status == 429:
            return Retryable(f"{self.name}: rate limited by the instance (HTTP 429)",
                             retry_after=reset_wait(headers))
        if status in (401, 403):
            return CredentialsRejected(f"{self.name}: access token rejected (HTTP {status}: "
                             f"{error_text(body)}) — {self._renew}")
        if status == 422:
            return Permanent(f"{self.name}: status rejected (HTTP 422): {error_text(body)}")
        return classify_http(status, headers, body, channel=self.name, auth_hint=self._renew)

    async def _call(self, method: str, path: str, document: dict[str, str] | None = None,
                    idempotency_key: str | None = None, missing_ok: bool = False
                    ) -> dict[str, Any]:
        """One request; the status JSON on success, else the classified error.
        With ``missing_ok`` a 404 counts as done ({})."""
        assert self._session is not None, "start() first"
        url = f"{self.settings.base_url}{path}"
        try:
            async with self._session.request(method, url, json=document,
                                             headers=self._headers(idempotency_key)) as resp:
                body = await resp.text(errors="replace")
                if missing_ok and resp.status == 404:
                    return {}
                verdict = self._verdict(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorError as exc:
            raise connection_error(self.name, exc, request_sent=False) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise connection_error(self.name, exc, request_sent=True) from None
        if verdict is not None:
            raise verdict
        try:
            status = json.loads(body)
        except ValueError:
            return {}
        return status if isinstance(status, dict) else {}

    @staticmethod
    def _receipt(status: dict[str, Any]) -> Receipt:
        remote_id = status.get("id")
        url = status.get("url") or status.get("uri")
        return Receipt(remote_id=str(remote_id) if remote_id is not None else None,
                       url=str(url) if url else None)

    async def send(self, outgoing: Outgoing) -> Receipt:
        document = {"status": outgoing.text, "visibility": self.settings.visibility,
                    "language": self.language}
        if outgoing.reply_to is not None and outgoing.reply_to.remote_id:
            document["in_reply_to_id"] = outgoing.reply_to.remote_id
            # Mastodon answers 404 when the status replied to is gone (deleted by
            # hand, say); an all-clear must still go out, so then it goes unthreaded.
            status = await self._call("POST", "/api/v1/statuses", document,
                                      idempotency_key=outgoing.delivery_id, missing_ok=True)
            if status:
                return self._receipt(status)
            del document["in_reply_to_id"]
        status = await self._call("POST", "/api/v1/statuses", document,
                                  idempotency_key=outgoing.delivery_id)
        return self._receipt(status)

    async def edit(self, receipt: Receipt, outgoing: Outgoing) -> Receipt:
        if not receipt.remote_id:
            raise Permanent(f"{self.name}: the earlier status has no id to edit")
        document = {"status": outgoing.text, "language": self.language}
        status = await self._call("PUT", f"/api/v1/statuses/{receipt.remote_id}", document)
        return self._receipt(status) if status.get("id") else receipt

    async def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise Permanent(f"{self.name}: the earlier status has no id to delete")
        # Already gone (404) is what a retraction wants.
        await self._call("DELETE", f"/api/v1/statuses/{receipt.remote_id}", missing_ok=True)

    async def check_health(self) -> Health:
        assert self._session is not None, "start() first"
        url = f"{self.settings.base_url}/api/v1/accounts/verify_credentials"
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self._session.get(url, headers=self._headers(),
                                         timeout=timeout) as resp:
                body = await resp.text(errors="replace")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(up=False, message=f"cannot reach {self.settings.base_url} "
                                            f"({type(exc).__name__})")
        if status in (401, 403):
            return Health(up=False, message=f"access token rejected (HTTP {status}) — "
                                            f"{self._renew}", credentials_rejected=True)
        if status != 200:
            return Health(up=False, message=f"{self.settings.base_url} answered HTTP {status}")
        try:
            account = json.loads(body).get("acct", "?")
        except (ValueError, AttributeError):
            account = "?"
        return Health(up=True, message=f"signed in as @{account} on {self.settings.base_url}"
                                       f"; limit {self._limit} characters")


KIND = ChannelKind(
    name="mastodon",
    config_class=MastodonConfig,
    create=MastodonChannel,
    text_form=TextForm.SHORT,
    markup=Markup.PLAIN,
    limit=lengths.MASTODON_DEFAULT_LIMIT,
    count=lengths.mastodon_length,
    on_unknown=UnknownPolicy.RETRY,  # Idempotency-Key: a repeat within an hour is not posted
    rate=1.0,
    max_in_flight=2,
)
MastodonChannel.kind = KIND
