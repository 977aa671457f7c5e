"""Signing in and out of the console, and the language switch.

A login takes a user name and password (scrypt) or an API token. Failed attempts
are counted per account and per address in the ledger: 20 wrong passwords for an
account, or 50 from one address (a city hall's NAT serves many people), lock it for
15 minutes, with a message that says until when. A token cannot be guessed, so a
token login ignores the account lock (an attacker cannot lock the duty officer out
of their own alert system) but not the address lock. Every attempt is audited.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
from datetime import datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web

from broadcaster.api.common import user_for_token
from broadcaster.appkeys import CLOCK, DATABASE
from broadcaster.auth import hash_password, split_token, verify_password
from broadcaster.console.guard import page
from broadcaster.console.i18n import LANGUAGES, translator
from broadcaster.console.render import local_time, render, see_other
from broadcaster.console.session import (
    IDLE,
    LANGUAGE_COOKIE,
    LOGIN_COOKIE,
    MAX_AGE,
    SESSION_COOKIE,
    clear_cookie,
    current_session,
    language,
    load_session,
    new_secret,
    safe_next,
    session_hash,
    set_cookie,
)
from broadcaster.store import AuditEntry, User

ACCOUNT_LIMIT = 20
ADDRESS_LIMIT = 50
WINDOW = timedelta(hours=1)
LOCKOUT = timedelta(minutes=15)
_MAX_NAME = 64
_MAX_SECRET = 1024


@functools.cache
def _decoy_hash() -> str:
    """Verified against when the user does not exist, so that timing tells nothing."""
    return hash_password(new_secret())


async def login_page(request: web.Request) -> web.StreamResponse:
    if await load_session(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    notice, recheck = None, None
    t = translator(language(request))
    if "out" in request.query:
        notice = t("login.logged_out")
    elif "next" in request.query:
        notice = t("login.expired")
        if "checked" not in request.query:
            # Arrived by a link from elsewhere (a chat, a mail): the browser kept the
            # SameSite=Strict session cookie back. One look from our own page sends it.
            recheck = "/console/login?" + urlencode(
                {"next": safe_next(request.query["next"]), "checked": "1"})
    return _login_form(request, notice=notice, recheck=recheck)


def _login_form(request: web.Request, status: int = 200, notice: str | None = None,
                error: str | None = None, name: str = "", next_url: str | None = None,
                recheck: str | None = None) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not 20 <= len(token) <= 100:
        token = new_secret()
    t = translator(language(request))
    response = render(request, "login.html", http_status=status, title=t("login.title"),
                      login_csrf=token, notice=notice, error=error, name=name,
                      recheck=recheck,
                      next_url=safe_next(next_url or request.query.get("next")))
    set_cookie(request, response, LOGIN_COOKIE, token)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    t = translator(language(request))
    submitted, cookie = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
    next_url = safe_next(str(form.get("next", "")))
    if not cookie or not hmac.compare_digest(submitted.encode(), cookie.encode()):
        return _login_form(request, 403, error=t("login.cookies"), next_url=next_url)
    name = str(form.get("username", "")).strip()[:_MAX_NAME]
    secret = str(form.get("secret", "")).strip()[:_MAX_SECRET]
    token = split_token(secret)
    address = request.remote or "unknown"
    database, now = request.app[DATABASE], request.app[CLOCK]()
    account = f"account:{name.casefold()}"
    watched = [f"address:{address}"] + ([account] if token is None and name else [])
    actor = name or "unknown"

    locked = await database.read(database.store.login_locked_until, watched, now)
    if locked is not None:
        await database.run(database.store.record_audit, AuditEntry(
            actor=actor, address=address, action="console.login_refused",
            details={"reason": "locked", "until": locked.isoformat()}), now)
        return _locked(request, locked, now, name, next_url)

    user = await _authenticate(request, name, secret, token)
    if user is None:
        limits = [(f"address:{address}", ADDRESS_LIMIT)]
        if token is None and name:
            limits.append((account, ACCOUNT_LIMIT))
        entry = AuditEntry(actor=actor, address=address, action="console.login_failed",
                           details={"method": "token" if token else "password"})
        locked = await database.run(database.store.record_login_failure, limits, entry, now,
                                    WINDOW, LOCKOUT)
        if locked is not None:
            return _locked(request, locked, now, name, next_url)
        return _login_form(request, 401, error=t("login.failed"), name=name, next_url=next_url)

    session_id = new_secret()
    entry = AuditEntry(actor=user.name, address=address, action="console.login",
                       details={"method": "token" if token else "password"})
    await database.run(database.store.open_session, session_hash(session_id), user.id, now,
                       now + IDLE, entry, address, [f"account:{user.name.casefold()}"])
    response = see_other(next_url)
    set_cookie(request, response, SESSION_COOKIE, session_id, MAX_AGE)
    clear_cookie(response, LOGIN_COOKIE)
    return response


async def _authenticate(request: web.Request, name: str, secret: str,
                        token: tuple[str, str] | None) -> User | None:
    database = request.app[DATABASE]
    if token is not None:
        user = await user_for_token(request.app, secret)
        return None if user is None or (name and name != user.name) else user
    user = await database.read(database.store.find_user, name) if name else None
    stored = user.password_hash if user is not None and not user.disabled else None
    loop = asyncio.get_running_loop()
    # scrypt takes tens of milliseconds: off the event loop, and off the ledger's thread.
    matches = await loop.run_in_executor(None, verify_password, secret,
                                         stored or _decoy_hash())
    return user if matches and stored else None


def _locked(request: web.Request, until: datetime, now: datetime, name: str,
            next_url: str) -> web.Response:
    t = translator(language(request))
    seconds = max(1, math.ceil((until - now).total_seconds()))
    message = t("login.locked", minutes=math.ceil(seconds / 60),
                until=local_time(request, until)[-5:])
    response = _login_form(request, 429, error=message, name=name, next_url=next_url)
    response.headers["Retry-After"] = str(seconds)
    return response


@page("viewer")
async def logout(request: web.Request) -> web.StreamResponse:
    session = current_session(request)
    assert session is not None
    database = request.app[DATABASE]
    entry = AuditEntry(actor=session.user.name, address=request.remote,
                       action="console.logout")
    await database.run(database.store.close_session, session.id_hash, entry,
                       request.app[CLOCK]())
    response = see_other("/console/login?out=1")
    clear_cookie(response, SESSION_COOKIE)
    return response


async def switch_language(request: web.Request) -> web.StreamResponse:
    chosen = request.match_info["lang"]
    if chosen not in LANGUAGES:
        raise web.HTTPNotFound()
    response = see_other(safe_next(request.query.get("next")))
    set_cookie(request, response, LANGUAGE_COOKIE, chosen, timedelta(days=365))
    return response


async def to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


ROUTES = [
    web.get("/", to_console),
    web.get("/console/login", login_page),
    web.post("/console/login", login),
    web.post("/console/logout", logout),
    web.get("/console/lang/{lang}", switch_language),
]
