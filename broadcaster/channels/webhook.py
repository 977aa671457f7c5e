"""Webhook channel: partner systems, signage, radio stations.

POSTs the alert as JSON, signed the Standard Webhooks way: ``webhook-id`` is the
delivery id (stable across retries, the receiver's idempotency key),
``webhook-timestamp`` the send time and ``webhook-signature`` ``v1,<base64
HMAC-SHA256 of "id.timestamp.body">``. A ``whsec_``-prefixed secret is base64 after
the prefix, as Standard Webhooks issues them; any other secret is used as UTF-8.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import aiohttp

from broadcaster import lengths
from broadcaster.channels.base import (
    Channel,
    ChannelKind,
    Markup,
    TextForm,
    UnknownPolicy,
    classify_http,
    connection_error,
)
from broadcaster.config import ChannelConfig, Secret, require_http_url
from broadcaster.models import Outgoing, Receipt, iso_utc


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: Secret

    def validate(self) -> None:
        require_http_url("url", self.url)

    @property
    def target(self) -> str:
        return self.url


def signing_key(secret: str) -> bytes:
    """The HMAC key for a webhook secret (Standard Webhooks ``whsec_`` or raw)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode("utf-8")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<signature>`` over ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_body(outgoing: Outgoing) -> bytes:
    """The JSON document a partner system receives."""
    document = {
        "id": outgoing.alert_id,
        "delivery_id": outgoing.delivery_id,
        "kind": outgoing.kind.value,
        "mode": outgoing.mode.value,
        "severity": outgoing.severity.value,
        "headline": outgoing.headline,
        "text": outgoing.text,
        "references": outgoing.references,
        "sent_at": iso_utc(outgoing.created_at),
    }
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


class WebhookChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, WebhookConfig)
        self.settings = settings
        self._key = signing_key(settings.secret.reveal())
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, outgoing: Outgoing) -> Receipt:
        assert self._session is not None, "start() first"
        body = webhook_body(outgoing)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": outgoing.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, outgoing.delivery_id, timestamp, body),
        }
        try:
            async with self._session.post(self.settings.url, data=body, headers=headers) as resp:
                text = await resp.text(errors="replace")
                verdict = classify_http(
                    resp.status, resp.headers, text, channel=self.name,
                    auth_hint="the partner refused the signature; check the shared secret",
                )
        except aiohttp.ClientConnectorError as exc:
            raise connection_error(self.name, exc, request_sent=False) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise connection_error(self.name, exc, request_sent=True) from None
        if verdict is not None:
            raise verdict
        return Receipt(remote_id=outgoing.delivery_id)


KIND = ChannelKind(
    name="webhook",
    config_class=WebhookConfig,
    create=WebhookChannel,
    text_form=TextForm.LONG,
    markup=Markup.PLAIN,
    limit=None,
    count=lengths.characters,
    on_unknown=UnknownPolicy.RETRY,
    rate=20.0,
    max_in_flight=4,
)
WebhookChannel.kind = KIND
