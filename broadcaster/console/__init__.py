"""The duty officer's web console: server-rendered pages under /console/.

Owns the console's routes and static files, its Jinja2 environment and the security
headers of its answers. Pages are grouped by module: ``auth_views`` (sign in and out,
language), ``board_views`` (dashboard, alert list, live status board, attempts,
confirm/withdraw/retry) and ``send_views`` (the send and follow-up flow); ``guard``
puts each behind a session, a role and CSRF; ``session`` keeps sessions in the
ledger; ``forms`` builds the send form from a template's variables; every string
is in ``i18n``. Every action runs the same functions as the JSON API.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from broadcaster.appkeys import CONSOLE_PAGES
from broadcaster.console import auth_views, board_views, send_views
from broadcaster.console.guard import page
from broadcaster.console.i18n import translator
from broadcaster.console.render import environment, error_page, security_headers
from broadcaster.console.session import language

STATIC = Path(__file__).parent / "static"

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the console on the daemon's application (one line in app.py)."""
    app[CONSOLE_PAGES] = environment()
    app.add_routes(auth_views.ROUTES + board_views.ROUTES + send_views.ROUTES)
    app.router.add_static("/console/static/", STATIC, name="console-static")
    app.router.add_get("/console", _slash)
    app.router.add_route("*", "/console/{tail:.*}", _not_found)
    app.on_response_prepare.append(security_headers)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


@page("viewer")
async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_page(request, 404, translator(language(request))("error.404"))
