"""Mastodon instance stand-in under ``/mastodon``: statuses, instance info, credentials.

    POST   /mastodon/api/v1/statuses                  post (JSON or form body)
    PUT    /mastodon/api/v1/statuses/{id}             edit
    DELETE /mastodon/api/v1/statuses/{id}             delete
    GET    /mastodon/api/v2/instance                  configuration.statuses.max_characters
    GET    /mastodon/api/v1/accounts/verify_credentials

Every token is the one account ``ACCOUNT`` ("stadt"), which is also the target of
faults; the token ``revoked`` gets Mastodon's 401. ``Idempotency-Key`` is honoured
for an hour, as Mastodon does: a repeat returns the original status and records
nothing new. Texts over the announced limit (counted as Mastodon counts them) get
Mastodon's 422. A ``drop_after_receive`` fault drops the answer *after* the status
was created — the case the Idempotency-Key exists for.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from aiohttp import web

from broadcaster import lengths
from broadcaster.models import iso_utc, utcnow
from broadcaster.sandbox.state import FaultKind, Post, SandboxState, apply_faults

ACCOUNT = "stadt"
REVOKED = "revoked"
IDEMPOTENCY_WINDOW = timedelta(hours=1)
VISIBILITIES = ("public", "unlisted", "private", "direct")


class MastodonStandIn:
    platform = "mastodon"

    def __init__(self, state: SandboxState,
                 max_characters: int = lengths.MASTODON_DEFAULT_LIMIT) -> None:
        self.state = state
        self.max_characters = max_characters

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/mastodon/api/v1/statuses", self.post_status),
            web.put("/mastodon/api/v1/statuses/{id}", self.edit_status),
            web.delete("/mastodon/api/v1/statuses/{id}", self.delete_status),
            web.get("/mastodon/api/v2/instance", self.instance),
            web.get("/mastodon/api/v1/accounts/verify_credentials", self.verify_credentials),
        ]

    def error_response(self, request: web.Request, status: int) -> web.Response:
        return _error(f"Sandbox error {status} for {request.path_qs}", status)

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response:
        reset = utcnow() + timedelta(seconds=seconds)
        return web.json_response(
            {"error": "Too many requests"}, status=429,
            headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": iso_utc(reset) or ""},
        )

    # --- endpoints ----------------------------------------------------------------

    async def post_status(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        if self._next_fault_drops() and _authorized(request) and self._earlier(request) is None:
            self._create(request, form)  # created; only the answer gets lost
        faulted = await apply_faults(request, self.state, self, ACCOUNT)
        if faulted is not None:
            return faulted
        if not _authorized(request):
            return _error("The access token is invalid", 401)
        earlier = self._earlier(request)
        if earlier is not None:
            return web.json_response(self._status_json(request, earlier))
        return self._create(request, form)

    def _earlier(self, request: web.Request) -> Post | None:
        """The status an Idempotency-Key already created within the hour."""
        key = request.headers.get("Idempotency-Key")
        earlier = self.state.find_by_key(self.platform, ACCOUNT, key) if key else None
        if earlier is not None and utcnow() - earlier.received_at < IDEMPOTENCY_WINDOW:
            return earlier
        return None

    def _create(self, request: web.Request, form: dict[str, str]) -> web.Response:
        text = form.get("status", "")
        problem = self._invalid(text) or (
            None if form.get("visibility", "public") in VISIBILITIES
            else "Validation failed: Visibility is not included in the list")
        if problem:
            return _error(problem, 422)
        reply_to = form.get("in_reply_to_id") or None
        original = self.state.find(self.platform, reply_to) if reply_to is not None else None
        if reply_to is not None and (original is None or original.deleted):
            return _error("Record not found", 404)
        post = self.state.record(Post(
            platform=self.platform, target=ACCOUNT, id=str(self.state.next_id()), text=text,
            reply_to=reply_to, idempotency_key=request.headers.get("Idempotency-Key"),
            extra={"visibility": form.get("visibility", "public"),
                   "language": form.get("language")},
        ))
        return web.json_response(self._status_json(request, post))

    async def edit_status(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        post = await self._own_status(request)
        if not isinstance(post, Post):
            return post
        problem = self._invalid(form.get("status", ""))
        if problem:
            return _error(problem, 422)
        post.text = form.get("status", "")
        post.edited = True
        post.extra["edited_at"] = iso_utc(utcnow())
        self.state.updated()
        return web.json_response(self._status_json(request, post))

    async def delete_status(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        post = await self._own_status(request)
        if not isinstance(post, Post):
            return post
        post.deleted = True
        self.state.updated()
        return web.json_response({**self._status_json(request, post), "text": post.text})

    async def instance(self, request: web.Request) -> web.StreamResponse:
        faulted = await apply_faults(request, self.state, self, ACCOUNT)
        if faulted is not None:
            return faulted
        return web.json_response({
            "domain": request.host, "title": "Mastodon (broadcaster sandbox)",
            "version": "4.3.0", "source_url": "https://github.com/mastodon/mastodon",
            "configuration": {"statuses": {
                "max_characters": self.max_characters, "max_media_attachments": 4,
                "characters_reserved_per_url": lengths.URL_WEIGHT,
            }},
        })

    async def verify_credentials(self, request: web.Request) -> web.StreamResponse:
        faulted = await apply_faults(request, self.state, self, ACCOUNT)
        if faulted is not None:
            return faulted
        if not _authorized(request):
            return _error("The access token is invalid", 401)
        return web.json_response(_account(request))

    # --- helpers ------------------------------------------------------------------

    def _next_fault_drops(self) -> bool:
        fault = next((f for f in self.state.faults if f.matches(self.platform, ACCOUNT)), None)
        return fault is not None and fault.kind is FaultKind.DROP_AFTER_RECEIVE

    def _invalid(self, text: str) -> str | None:
        if not text.strip():
            return "Validation failed: Text can't be blank"
        if lengths.mastodon_length(text) > self.max_characters:
            return f"Validation failed: Text character limit of {self.max_characters} exceeded"
        return None

    async def _own_status(self, request: web.Request) -> Post | web.StreamResponse:
        """The account's live status named in the path, or the answer to give instead."""
        faulted = await apply_faults(request, self.state, self, ACCOUNT)
        if faulted is not None:
            return faulted
        if not _authorized(request):
            return _error("The access token is invalid", 401)
        post = self.state.find(self.platform, request.match_info["id"])
        if post is None or post.deleted:
            return _error("Record not found", 404)
        return post

    def _status_json(self, request: web.Request, post: Post) -> dict[str, Any]:
        base = _base(request)
        return {
            "id": post.id, "created_at": iso_utc(post.received_at),
            "in_reply_to_id": post.reply_to, "in_reply_to_account_id": None,
            "visibility": post.extra.get("visibility", "public"),
            "language": post.extra.get("language"),
            "uri": f"{base}/users/{ACCOUNT}/statuses/{post.id}",
            "url": f"{base}/@{ACCOUNT}/{post.id}",
            "content": "<p>" + html.escape(post.text).replace("\n", "<br />") + "</p>",
            "edited_at": post.extra.get("edited_at"),
            "account": _account(request),
        }


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/mastodon"


def _account(request: web.Request) -> dict[str, Any]:
    return {"id": "1", "username": ACCOUNT, "acct": ACCOUNT,
            "display_name": "Stadt (Sandbox)", "url": f"{_base(request)}/@{ACCOUNT}"}


def _authorized(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and token.strip() != REVOKED


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _form(request: web.Request) -> dict[str, str]:
    """A JSON or form-encoded body as strings (Mastodon accepts both)."""
    if request.content_type == "application/json":
        try:
            document = await request.json()
        except ValueError:
            return {}
        if not isinstance(document, dict):
            return {}
        return {k: str(v) for k, v in document.items() if v is not None}
    return {k: str(v) for k, v in (await request.post()).items()}
