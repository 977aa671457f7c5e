"""What every API handler shares: the error shape, roles, JSON bodies.

Errors are always ``{"error": {"code", "message", "details"}}``: 400 malformed,
401 no or bad token, 403 role too low, 404 unknown id or template, 409 conflict,
413 body over 64 KiB, 422 validation (details name each bad field), 503 the ledger
cannot persist (nothing was accepted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from broadcaster.appkeys import DATABASE, USER
from broadcaster.auth import role_allows, split_token, token_matches
from broadcaster.errors import (
    BroadcasterError,
    Conflict,
    NotFound,
    StoreUnavailable,
    UnknownTemplate,
    ValidationError,
)
from broadcaster.logs import event
from broadcaster.store import User

log = logging.getLogger("broadcaster.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ROLE_ATTRIBUTE = "required_role"

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 422: "validation_failed", 503: "unavailable"}


def error_response(status: int, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": _STATUS_CODES.get(status, "error"), "message": message,
                   "details": details or {}}},
        status=status, headers=headers, dumps=dumps,
    )


def requires(role: str) -> Callable[[Handler], Handler]:
    """Mark a handler as needing at least this role (viewer < officer < admin)."""
    def mark(handler: Handler) -> Handler:
        setattr(handler, _ROLE_ATTRIBUTE, role)
        return handler
    return mark


# The error tree as HTTP statuses, for the API and the console alike; first match wins.
_HTTP_STATUS: tuple[tuple[type[BroadcasterError], int], ...] = (
    (ValidationError, 422), (UnknownTemplate, 404), (NotFound, 404), (Conflict, 409),
    (StoreUnavailable, 503), (BroadcasterError, 400),
)


def http_status(exc: BroadcasterError) -> int:
    return next(status for kind, status in _HTTP_STATUS if isinstance(exc, kind))


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            return error_response(413, "request body over 64 KiB")
        return error_response(exc.status, exc.text or exc.reason)
    except ValidationError as exc:
        return error_response(422, "invalid request: " + str(exc), exc.problems)
    except BroadcasterError as exc:
        status = http_status(exc)
        if status == 503:
            event(log, "api.store_unavailable", logging.ERROR, error=str(exc))
        return error_response(status, str(exc))


async def user_for_token(app: web.Application, token: str) -> User | None:
    """The active user a token belongs to, or None. The token's user id finds the row;
    the secret is compared with the stored hash in constant time. The one place a
    token is checked, for the API and the console alike."""
    parts = split_token(token)
    if parts is None:
        return None
    database = app[DATABASE]
    user = await database.read(database.store.get_user, parts[0])
    if user is None or user.disabled or not token_matches(parts[1], user.token_hash):
        return None
    return user


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    needed = getattr(handler, _ROLE_ATTRIBUTE, None)
    if needed is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = await user_for_token(request.app, token.strip()) if scheme.lower() == "bearer" \
        else None
    if user is None:
        return error_response(
            401, "missing or invalid token: send Authorization: Bearer <token> "
            "(create one with `broadcaster users add`)",
            headers={"WWW-Authenticate": 'Bearer realm="broadcaster"'},
        )
    if not role_allows(user.role, needed):
        return error_response(403, f"this needs the {needed} role; {user.name} is {user.role}")
    request[USER] = user
    return await handler(request)


def middlewares() -> list[Any]:
    return [_errors, _authenticate]


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        document = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return document


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_response(document: object, status: int = 200) -> web.Response:
    return web.json_response(document, status=status, dumps=dumps)



