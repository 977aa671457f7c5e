"""Console sessions, cookies, CSRF tokens and the language choice.

A session id (256 random bits) lives only in the browser's cookie; the ledger stores
its sha256, so a copy of the database opens no session. Sessions expire after 12 h
without use and 7 days after login, survive a daemon restart and end at logout, when
the user is disabled or their password changes. The CSRF token of a session is an
HMAC of its id: nothing more to store, and unknown to anyone without the cookie.
Before login, the login form uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from aiohttp import web

from broadcaster.appkeys import CLOCK, DATABASE, USER
from broadcaster.console.i18n import DEFAULT_LANGUAGE, LANGUAGES
from broadcaster.store import ConsoleSession

SESSION_COOKIE = "bc_session"
LOGIN_COOKIE = "bc_login"  # the login form's double-submit token
LANGUAGE_COOKIE = "bc_lang"
COOKIE_PATH = "/console"
IDLE = timedelta(hours=12)
MAX_AGE = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)  # the board polls every second; write at most this often

# Per request
SESSION = "broadcaster.console.session"
SESSION_ID = "broadcaster.console.session_id"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_for(session_id: str) -> str:
    return hmac.new(session_id.encode("utf-8"), b"console-csrf", hashlib.sha256).hexdigest()


def is_secure(request: web.Request) -> bool:
    """Served over TLS, directly or behind a proxy that says so."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: timedelta | None = None) -> None:
    response.set_cookie(
        name, value, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=is_secure(request) or None,
        max_age=int(max_age.total_seconds()) if max_age is not None else None,
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH)


def language(request: web.Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE, DEFAULT_LANGUAGE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def current_session(request: web.Request) -> ConsoleSession | None:
    session = request.get(SESSION)
    return session if isinstance(session, ConsoleSession) else None


def csrf_token(request: web.Request) -> str:
    session_id = request.get(SESSION_ID)
    return csrf_for(session_id) if isinstance(session_id, str) else ""


async def load_session(request: web.Request) -> ConsoleSession | None:
    """The request's live session, its idle expiry moved on; None if there is none."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not 20 <= len(session_id) <= 100:
        return None
    database = request.app[DATABASE]
    now = request.app[CLOCK]()
    id_hash = session_hash(session_id)
    session = await database.read(database.store.find_session, id_hash, now)
    if session is None or session.user.disabled or now - session.created_at > MAX_AGE:
        return None
    if now - session.last_seen_at > TOUCH_EVERY:
        await database.run(database.store.touch_session, id_hash, now, now + IDLE)
    request[SESSION] = session
    request[SESSION_ID] = session_id
    request[USER] = session.user
    return session


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith("/console/") and not target.startswith("/console//") \
            and "\\" not in target and all(" " < ch != "\x7f" for ch in target):
        return target
    return "/console/"


def login_redirect(target: str) -> str:
    return "/console/login?" + urlencode({"next": safe_next(target)})


def csrf_ok(request: web.Request, submitted: object) -> bool:
    """The submitted token is this session's CSRF token."""
    expected = csrf_token(request)
    return bool(expected) and isinstance(submitted, str) and hmac.compare_digest(
        submitted.encode("utf-8"), expected.encode("utf-8"))
