"""Facebook Graph API stand-in: a Page's feed, comments, edits and deletions.

    POST   /facebook/<version>/<page-id>/feed        message → {"id": "<page>_<post>"}
    POST   /facebook/<version>/<post-id>/comments    message → {"id": "<post>_<comment>"}
    POST   /facebook/<version>/<post-id>             message → {"success": true} (edit)
    DELETE /facebook/<version>/<post-id>             → {"success": true}
    GET    /facebook/<version>/me                    → {"id", "name"} (token check)

The token is read from the form or JSON body, the query or an ``Authorization:
Bearer|OAuth`` header, as Graph reads it. Errors come in Graph's own shape
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``: no token →
104, the token ``revoked`` → 190, an unknown post → 100/33, and the same message
posted to the same page again within ``DUPLICATE_WINDOW`` → 506. A rate limit is
code 4 (HTTP 403) with ``X-Business-Use-Case-Usage`` stating the wait in minutes.
Faults target the page id. A comment is recorded with ``reply_to`` = its post.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from datetime import timedelta
from typing import Any

from aiohttp import web

from broadcaster.lengths import FACEBOOK_LIMIT
from broadcaster.models import utcnow
from broadcaster.sandbox.state import Post, SandboxState, apply_faults

DUPLICATE_WINDOW = timedelta(minutes=5)
SANDBOX_PAGE_NAME = "Sandbox-Seite"
REVOKED = "revoked"  # the one credential every stand-in rejects (DESIGN.md)
_VERSION = re.compile(r"v\d+\.\d+")


def graph_error(code: int, message: str, *, status: int = 400, subcode: int | None = None,
                headers: dict[str, str] | None = None, **more: Any) -> web.Response:
    """An error answer exactly as Graph shapes it."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(more)
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return web.json_response({"error": error}, status=status, headers=headers)


class FacebookStandIn:
    platform = "facebook"

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/facebook/{version}/me", self.me),
            web.post("/facebook/{version}/{page}/feed", self.publish),
            web.post("/facebook/{version}/{object}/comments", self.comment),
            web.post("/facebook/{version}/{object}", self.edit),
            web.delete("/facebook/{version}/{object}", self.delete),
        ]

    def error_response(self, request: web.Request, status: int) -> web.Response:
        # The Graph code that goes with the status: service unavailable, token,
        # permission, throttling, else invalid parameter.
        code = 2 if status >= 500 else {401: 190, 403: 200, 429: 4}.get(status, 100)
        return graph_error(code, f"(#{code}) sandbox error {status} for {request.path_qs}",
                           status=status, is_transient=code in (2, 4))

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response:
        minutes = max(1, math.ceil(seconds / 60))
        usage = {self._page_of(request) or "0": [{
            "type": "pages", "call_count": 100, "total_cputime": 12, "total_time": 18,
            "estimated_time_to_regain_access": minutes,
        }]}
        headers = {
            "X-Business-Use-Case-Usage": json.dumps(usage),
            "X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 12, "total_time": 18}),
        }
        return graph_error(4, "(#4) Application request limit reached", status=403,
                           headers=headers, is_transient=True)

    async def publish(self, request: web.Request) -> web.StreamResponse:
        page = request.match_info["page"]
        form, refused = await self._begin(request, page)
        if refused is not None:
            return refused
        message = form.get("message", "")
        problem = self._check_message(message)
        if problem is not None:
            return problem
        since = utcnow() - DUPLICATE_WINDOW
        if any(p.platform == self.platform and p.target == page and p.reply_to is None
               and not p.deleted and p.text == message and p.received_at >= since
               for p in self.state.posts):
            return graph_error(
                506, "(#506) Duplicate status message", subcode=1455006, is_transient=False,
                error_user_title="Duplicate Post",
                error_user_msg="This status update is identical to the last one you posted. "
                "Try posting something different, or delete your previous update.",
            )
        post = self.state.record(Post(platform=self.platform, target=page,
                                      id=f"{page}_{self.state.next_id()}", text=message,
                                      extra={"kind": "post"}))
        return web.json_response({"id": post.id})

    async def comment(self, request: web.Request) -> web.StreamResponse:
        parent_id = request.match_info["object"]
        parent = self._find(parent_id)
        form, refused = await self._begin(request, parent.target if parent else None)
        if refused is not None:
            return refused
        if parent is None or parent.reply_to is not None:
            return self._no_object(parent_id)
        message = form.get("message", "")
        problem = self._check_message(message)
        if problem is not None:
            return problem
        comment_id = f"{parent_id.rpartition('_')[2]}_{self.state.next_id()}"
        self.state.record(Post(platform=self.platform, target=parent.target, id=comment_id,
                               text=message, reply_to=parent.id, extra={"kind": "comment"}))
        return web.json_response({"id": comment_id})

    async def edit(self, request: web.Request) -> web.StreamResponse:
        object_id = request.match_info["object"]
        post = self._find(object_id)
        form, refused = await self._begin(request, post.target if post else None)
        if refused is not None:
            return refused
        if post is None:
            return self._no_object(object_id)
        message = form.get("message", "")
        problem = self._check_message(message)
        if problem is not None:
            return problem
        post.text = message
        post.edited = True
        self.state.updated()
        return web.json_response({"success": True})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        object_id = request.match_info["object"]
        post = self._find(object_id)
        _, refused = await self._begin(request, post.target if post else None)
        if refused is not None:
            return refused
        if post is None:
            return self._no_object(object_id)
        post.deleted = True
        self.state.updated()
        return web.json_response({"success": True})

    async def me(self, request: web.Request) -> web.StreamResponse:
        _, refused = await self._begin(request, None)
        if refused is not None:
            return refused
        # The sandbox cannot know which page a token belongs to; it names itself.
        return web.json_response({"id": "0", "name": SANDBOX_PAGE_NAME})

    async def _begin(self, request: web.Request, page: str | None
                     ) -> tuple[dict[str, str], web.StreamResponse | None]:
        """Read the parameters, act out faults, check version and token."""
        form = await _parameters(request)
        faulted = await apply_faults(request, self.state, self, page)
        if faulted is not None:
            return form, faulted
        if not _VERSION.fullmatch(request.match_info["version"]):
            return form, graph_error(2500, "Unknown path components: /"
                                     + request.match_info["version"])
        token = form.get("access_token") or request.query.get("access_token") or _bearer(request)
        if not token:
            return form, graph_error(104, "An access token is required to request this resource.")
        if token == REVOKED:
            return form, graph_error(
                190, "Error validating access token: The session has been invalidated because "
                "the user changed their password or Facebook has changed the session for "
                "security reasons.", subcode=460,
            )
        return form, None

    def _find(self, object_id: str) -> Post | None:
        post = self.state.find(self.platform, object_id)
        return post if post is not None and not post.deleted else None

    def _page_of(self, request: web.Request) -> str | None:
        if "page" in request.match_info:
            return request.match_info["page"]
        post = self._find(request.match_info.get("object", ""))
        return post.target if post is not None else None

    @staticmethod
    def _check_message(message: str) -> web.Response | None:
        if not message.strip():
            return graph_error(100, "(#100) Missing message or attachment")
        if len(message) > FACEBOOK_LIMIT:
            return graph_error(100, f"(#100) The message is longer than {FACEBOOK_LIMIT} "
                               "characters")
        return None

    @staticmethod
    def _no_object(object_id: str) -> web.Response:
        return graph_error(
            100, f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot "
            "be loaded due to missing permissions, or does not support this operation.",
            subcode=33,
        )


async def _parameters(request: web.Request) -> dict[str, str]:
    """Graph takes parameters as a form or a JSON body."""
    if request.content_type == "application/json":
        try:
            document = await request.json()
        except ValueError:
            return {}
        return {k: str(v) for k, v in document.items()} if isinstance(document, dict) else {}
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() in ("bearer", "oauth") else None
