"""The ``page`` decorator every console handler wears: session, role, CSRF, errors.

No session → the login page (401 for JSON); a role too low → 403; a POST without
this session's CSRF token → 403, before the handler runs. Domain errors become HTML
pages with the status the API would give, their text scrubbed of secrets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from broadcaster.api.common import http_status
from broadcaster.appkeys import SCRUBBER
from broadcaster.auth import role_allows
from broadcaster.console.i18n import translator
from broadcaster.console.render import error_page
from broadcaster.console.session import csrf_ok, language, load_session, login_redirect
from broadcaster.errors import BroadcasterError, StoreUnavailable
from broadcaster.logs import event

log = logging.getLogger("broadcaster.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def page(role: str = "viewer", *, json: bool = False) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                session = await load_session(request)
            except StoreUnavailable as exc:
                event(log, "console.store_unavailable", logging.ERROR, path=request.path,
                      error=str(exc))
                if json:
                    return web.json_response({"error": "ledger unavailable"}, status=503)
                detail = request.app[SCRUBBER].scrub(str(exc))
                message = translator(language(request))("error.ledger")
                return error_page(request, 503, f"{message} ({detail})")
            if session is None:
                if json:
                    return web.json_response({"error": "session ended"}, status=401)
                target = request.raw_path if request.method == "GET" else "/console/"
                raise web.HTTPSeeOther(login_redirect(target))
            t = translator(language(request))
            user = session.user
            if not role_allows(user.role, role):
                return error_page(request, 403, t("error.role", needed=t(f"role.{role}"),
                                                  role=t(f"role.{user.role}")))
            if request.method == "POST":
                form = await request.post()
                if not csrf_ok(request, form.get("csrf")):
                    event(log, "console.csrf_refused", logging.WARNING, path=request.path,
                          user=user.name, address=request.remote or "")
                    return error_page(request, 403, t("error.csrf"))
            try:
                return await handler(request)
            except StoreUnavailable as exc:
                detail = request.app[SCRUBBER].scrub(str(exc))
                return error_page(request, 503, f"{t('error.ledger')} ({detail})")
            except BroadcasterError as exc:
                return error_page(request, http_status(exc),
                                  request.app[SCRUBBER].scrub(str(exc)))
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return error_page(request, exc.status, exc.text or exc.reason)
        return run
    return wrap
