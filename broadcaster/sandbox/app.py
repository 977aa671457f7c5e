"""The sandbox application: every platform stand-in plus inspection and faults.

    GET    /_sandbox/            a page that shows the posts as each platform would
    GET    /_sandbox/posts       everything received (?platform=telegram to filter)
    DELETE /_sandbox/posts       forget it
    GET    /_sandbox/faults      the faults in force
    POST   /_sandbox/faults      {platform, target?, kind, value?, count?}
    DELETE /_sandbox/faults      clear them

Stand-ins are registered in ``stand_ins`` below, one line each.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from broadcaster.sandbox.facebook import FacebookStandIn
from broadcaster.sandbox.mastodon import MastodonStandIn
from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.smtp import SMTP_PLATFORM
from broadcaster.sandbox.state import SandboxState, StandIn, parse_fault
from broadcaster.sandbox.telegram import TelegramStandIn
from broadcaster.sandbox.webhook import WebhookStandIn
from broadcaster.sandbox.x import XStandIn

STATE_KEY = web.AppKey("sandbox_state", SandboxState)
PLATFORMS_KEY = web.AppKey("sandbox_platforms", frozenset[str])


def stand_ins(state: SandboxState, options: SandboxOptions) -> list[StandIn]:
    return [
        WebhookStandIn(state, options.webhook_secret),
        FacebookStandIn(state),
        XStandIn(state, options.x_consumer_secret, options.x_access_secret),
        MastodonStandIn(state, options.mastodon_max_characters),
        TelegramStandIn(state),
    ]


def create_sandbox_app(options: SandboxOptions, state: SandboxState | None = None
                       ) -> web.Application:
    state = state or SandboxState()
    app = web.Application(client_max_size=1024 * 1024)
    app[STATE_KEY] = state
    platforms = stand_ins(state, options)
    smtp = {SMTP_PLATFORM} if options.smtp_port is not None else set()  # server.py runs it
    app[PLATFORMS_KEY] = frozenset(p.platform for p in platforms) | smtp
    for stand_in in platforms:
        app.add_routes(stand_in.routes())
    app.add_routes([
        web.get("/_sandbox/", viewer),
        web.get("/_sandbox/posts", list_posts),
        web.delete("/_sandbox/posts", clear_posts),
        web.get("/_sandbox/faults", list_faults),
        web.post("/_sandbox/faults", add_fault),
        web.delete("/_sandbox/faults", clear_faults),
    ])
    return app


async def viewer(request: web.Request) -> web.Response:
    page = resources.files("broadcaster.sandbox").joinpath("static/viewer.html").read_text(
        encoding="utf-8")
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def list_posts(request: web.Request) -> web.Response:
    platform = request.query.get("platform")
    posts = [p.to_json() for p in request.app[STATE_KEY].posts
             if platform is None or p.platform == platform]
    return web.json_response(posts, dumps=_dumps)


async def clear_posts(request: web.Request) -> web.Response:
    request.app[STATE_KEY].clear_posts()
    return web.json_response({"cleared": True})


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response([f.to_json() for f in request.app[STATE_KEY].faults])


async def add_fault(request: web.Request) -> web.Response:
    try:
        document = await request.json()
        if not isinstance(document, dict):
            raise ValueError("send a JSON object")
        platforms: frozenset[str] = request.app[PLATFORMS_KEY]
        fault = parse_fault(document, set(platforms))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    request.app[STATE_KEY].add_fault(fault)
    return web.json_response(fault.to_json(), status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].clear_faults()
    return web.json_response({"cleared": True})


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
