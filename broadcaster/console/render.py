"""Turning console pages into HTML: the console's own Jinja2 environment and filters.

This environment autoescapes every page and loads only the console's files
(PackageLoader). It is deliberately not the sandboxed environment that renders the
press office's alert templates: those produce plain text for platforms; this one
produces HTML for people.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from broadcaster.appkeys import CONFIG, CONSOLE_PAGES, SCRUBBER
from broadcaster.channels import KINDS
from broadcaster.channels.base import Markup
from broadcaster.console.i18n import translator
from broadcaster.console.session import csrf_token, current_session, language
from broadcaster.lengths import telegram_visible

# Pages never embed scripts, styles or frames from elsewhere, nor inline ones.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("broadcaster.console", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = visible_text
    return env


def visible_text(text: str, kind: str) -> str:
    """What a reader sees of a post: Telegram's HTML markup removed and unescaped."""
    if kind in KINDS and KINDS[kind].markup is Markup.HTML:
        return telegram_visible(text)
    return text


def local_time(request: web.Request, moment: datetime | None, seconds: bool = False) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(request.app[CONFIG].service.timezone))
    return local.strftime("%d.%m.%Y %H:%M:%S" if seconds else "%d.%m.%Y %H:%M")


def context(request: web.Request) -> dict[str, Any]:
    """What every page may use."""
    session = current_session(request)
    lang = language(request)
    scrubber = request.app[SCRUBBER]
    return {
        "t": translator(lang), "lang": lang, "user": session.user if session else None,
        "csrf": csrf_token(request),
        # Where the language switch returns to: a POSTed page's form, else this page.
        "here": request.raw_path if request.method == "GET" else request.path.rsplit("/", 1)[0],
        "city": request.app[CONFIG].service.city,
        "when": lambda moment, seconds=False: local_time(request, moment, seconds),
        "scrub": scrubber.scrub, "mode": None,
    }


def render(request: web.Request, page: str, /, http_status: int = 200, **values: Any
           ) -> web.Response:
    """The page's HTML with ``values`` and the common context (``context``)."""
    text = request.app[CONSOLE_PAGES].get_template(page).render({**context(request), **values})
    return web.Response(text=text, status=http_status, content_type="text/html",
                        charset="utf-8")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    t = translator(language(request))
    return render(request, "error.html", http_status=status, title=t("error.title"),
                  status_code=status, message=message)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every console answer gets the security headers; pages and
    status documents are never cached (they show who is signed in and live state)."""
    if request.path != "/" and not request.path.startswith("/console"):
        return
    for header, value in SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    if not request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "no-store"


def see_other(location: str) -> web.Response:
    """A 303 to a console page (after a POST, so that reload does not repeat it)."""
    return web.Response(status=303, headers={"Location": location})
