"""X API v2 stand-in: posts, replies and deletions, with OAuth 1.0a verified.

    POST   /x/2/tweets        {"text", "reply": {"in_reply_to_tweet_id"}} → 201 {"data": …}
    DELETE /x/2/tweets/<id>   → {"data": {"deleted": true}}
    GET    /x/2/users/me      → {"data": {"id", "name", "username"}}

Every request must carry an ``Authorization: OAuth …`` header whose HMAC-SHA1
signature verifies with the sandbox's consumer secret and access token secret. The
signature base string uses the URL the client signed — https://api.twitter.com
plus the path without ``/x`` — because tweepy signs for the real host before our
middleware redirects it. A wrong secret, a timestamp more than five minutes off, or
a consumer key or access token that is literally ``revoked`` → 401 in RFC 7807
shape. Text over 280 weighted characters → 403 [unverified: X may answer 400], the
same text twice from one account → 403 duplicate content.

The account — the fault target and each post's target — is the access token's part
before its first ``-`` (X's tokens are "<user id>-<random>"; tweepy reads the user
id the same way), or ``account`` for a token without one, so a secret never shows.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from oauthlib.oauth1.rfc5849 import signature as oauth  # type: ignore[import-untyped]
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from broadcaster.lengths import X_LIMIT, x_weighted_length
from broadcaster.sandbox.state import Post, SandboxState, apply_faults

SIGNED_HOST = "https://api.twitter.com"
PREFIX = "/x"
TIMESTAMP_TOLERANCE = 300
REVOKED = "revoked"  # the one credential every stand-in rejects (DESIGN.md)
RATE_LIMIT = 100  # posts per 15-minute window and user, as X's basic tier


def problem(status: int, title: str, detail: str, *,
            type_: str = "about:blank", headers: dict[str, str] | None = None,
            **more: Any) -> web.Response:
    """An RFC 7807 problem document, X's error shape."""
    body = {"title": title, "type": type_, "status": status, "detail": detail, **more}
    return web.json_response(body, status=status, headers=headers)


def unauthorized() -> web.Response:
    return problem(401, "Unauthorized", "Unauthorized")


def account_of(access_token: str) -> str:
    """The account a token acts for, without revealing the token."""
    user, sep, _ = access_token.partition("-")
    return user if sep and user else "account"


class XStandIn:
    platform = "x"

    def __init__(self, state: SandboxState, consumer_secret: str, access_secret: str) -> None:
        self.state = state
        self._key = f"{oauth_utils.escape(consumer_secret)}&{oauth_utils.escape(access_secret)}"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/x/2/tweets", self.create),
            web.delete("/x/2/tweets/{id}", self.delete),
            web.get("/x/2/users/me", self.me),
        ]

    def error_response(self, request: web.Request, status: int) -> web.Response:
        return problem(status, _reason(status), f"sandbox error {status} for {request.path_qs}")

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response:
        reset = math.ceil(time.time() + seconds)
        headers = {"x-rate-limit-limit": str(RATE_LIMIT), "x-rate-limit-remaining": "0",
                   "x-rate-limit-reset": str(reset)}
        return problem(429, "Too Many Requests", "Too Many Requests", headers=headers)

    async def create(self, request: web.Request) -> web.StreamResponse:
        account, refused = await self._begin(request)
        if refused is not None:
            return refused
        try:
            document = json.loads(await request.read())
        except ValueError:
            document = None
        text = document.get("text") if isinstance(document, dict) else None
        if not isinstance(text, str) or not text:
            return self._invalid("$.text", "text is required and must be a string")
        assert isinstance(document, dict)
        reply = document.get("reply")
        reply_to = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        weighted = x_weighted_length(text)
        if weighted > X_LIMIT:
            return problem(403, "Forbidden", f"Your Tweet text is too long ({weighted} weighted "
                           f"characters, at most {X_LIMIT}).")
        if reply_to is not None and self._find(str(reply_to)) is None:
            return problem(403, "Forbidden", "You attempted to reply to a Tweet that is deleted "
                           "or not visible to you.")
        if any(p.platform == self.platform and p.target == account and not p.deleted
               and p.text == text for p in self.state.posts):
            return problem(403, "Forbidden",
                           "You are not allowed to create a Tweet with duplicate content.")
        post = self.state.record(Post(
            platform=self.platform, target=account, id=str(self.state.next_id()), text=text,
            reply_to=str(reply_to) if reply_to is not None else None,
        ))
        data = {"id": post.id, "text": text, "edit_history_tweet_ids": [post.id]}
        return web.json_response({"data": data}, status=201)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        account, refused = await self._begin(request)
        if refused is not None:
            return refused
        post = self._find(request.match_info["id"])
        if post is None:
            return problem(404, "Not Found Error", "Could not find tweet with id: "
                           f"[{request.match_info['id']}].",
                           type_="https://api.twitter.com/2/problems/resource-not-found")
        if post.target != account:
            return problem(403, "Forbidden", "You are not allowed to delete a Tweet you do not "
                           "own.")
        post.deleted = True
        self.state.updated()
        return web.json_response({"data": {"deleted": True}})

    async def me(self, request: web.Request) -> web.StreamResponse:
        account, refused = await self._begin(request)
        if refused is not None:
            return refused
        return web.json_response({"data": {"id": account, "name": "Sandbox-Konto",
                                           "username": f"sandbox_{account}"}})

    async def _begin(self, request: web.Request) -> tuple[str, web.StreamResponse | None]:
        """Read the request, act out faults, verify the OAuth 1.0a signature."""
        await request.read()
        header = request.headers.get("Authorization", "")
        try:
            params = {key: oauth_utils.unescape(value)
                      for key, value in oauth_utils.parse_authorization_header(header)}
        except ValueError:
            params = {}
        account = account_of(str(params.get("oauth_token", "")))
        faulted = await apply_faults(request, self.state, self, account)
        if faulted is not None:
            return account, faulted
        if not self._verified(request, header, params):
            return account, unauthorized()
        return account, None

    def _verified(self, request: web.Request, header: str, params: dict[str, str]) -> bool:
        if REVOKED in (params.get("oauth_consumer_key"), params.get("oauth_token")):
            return False
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return False
        timestamp = params.get("oauth_timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TIMESTAMP_TOLERANCE:
            return False
        path = request.rel_url.raw_path.removeprefix(PREFIX)
        collected = oauth.collect_parameters(uri_query=request.rel_url.raw_query_string,
                                             headers={"Authorization": header},
                                             exclude_oauth_signature=True)
        base_string = oauth.signature_base_string(
            request.method, oauth.base_string_uri(SIGNED_HOST + path),
            oauth.normalize_parameters(collected),
        )
        digest = hmac.new(self._key.encode(), base_string.encode(), "sha1").digest()
        expected = base64.b64encode(digest).decode("ascii")
        return hmac.compare_digest(expected, params.get("oauth_signature", ""))

    def _find(self, tweet_id: str) -> Post | None:
        post = self.state.find(self.platform, tweet_id)
        return post if post is not None and not post.deleted else None

    @staticmethod
    def _invalid(parameter: str, message: str) -> web.Response:
        return problem(400, "Invalid Request", "One or more parameters to your request was "
                       "invalid.", type_="https://api.twitter.com/2/problems/invalid-request",
                       errors=[{"parameters": {parameter: []}, "message": message}])


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
