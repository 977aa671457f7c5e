"""Webhook receiver stand-in: verifies Standard Webhooks signatures, records posts.

``POST /webhook/<name>``: 401 when the signature does not verify with the
sandbox's webhook secret (or the timestamp is more than five minutes off), 200
otherwise. Every receipt is recorded, duplicates included, with the ``webhook-id``
as idempotency key, so tests can see exactly what a partner system would see.
"""

from __future__ import annotations

import hmac
import json
import time

from aiohttp import web

from broadcaster.channels.webhook import sign, signing_key
from broadcaster.sandbox.state import Post, SandboxState, apply_faults

TOLERANCE_SECONDS = 300


class WebhookStandIn:
    platform = "webhook"

    def __init__(self, state: SandboxState, secret: str) -> None:
        self.state = state
        self._key = signing_key(secret)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/webhook/{name}", self.receive)]

    def error_response(self, request: web.Request, status: int) -> web.Response:
        return web.json_response({"error": f"sandbox error {status} for {request.path_qs}"},
                                 status=status)

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response:
        return web.json_response(
            {"error": "too many requests"}, status=429,
            headers={"Retry-After": str(max(1, round(seconds)))},
        )

    async def receive(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        faulted = await apply_faults(request, self.state, self, name)
        if faulted is not None:
            return faulted
        message_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature", "").split()
        if not message_id or not timestamp.isdigit():
            return web.json_response({"error": "missing webhook-id or webhook-timestamp"},
                                     status=400)
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return web.json_response({"error": "timestamp outside tolerance"}, status=401)
        expected = sign(self._key, message_id, int(timestamp), body)
        if not any(hmac.compare_digest(expected, s) for s in signatures):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        post = self.state.record(Post(
            platform=self.platform, target=name, id=str(self.state.next_id()),
            text=str(payload.get("text", "")), reply_to=payload.get("references"),
            idempotency_key=message_id,
            extra={key: payload.get(key) for key in ("id", "kind", "mode", "severity", "headline")},
        ))
        return web.json_response({"received": True, "id": post.id})
