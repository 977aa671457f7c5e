"""JSON API v1, health endpoints and /metrics.

Errors are always ``{"error": {"code", "message", "details"}}``: 400 malformed,
401 no or bad token, 403 role too low, 404 unknown id or template, 409 conflict,
413 body over 64 KiB, 422 validation (details name each bad field), 503 the ledger
cannot persist (nothing was accepted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from broadcaster import __version__
from broadcaster.accept import AlertRequest
from broadcaster.appkeys import (
    CATALOG,
    CHANNELS,
    CLOCK,
    COMPOSER,
    CONFIG,
    DATABASE,
    DISPATCHER,
    METRICS,
    USER,
    current_user,
)
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
from broadcaster.metrics import CONTENT_TYPE
from broadcaster.models import Alert, AlertKind, Delivery, iso_utc
from broadcaster.store import AuditEntry

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
        status=status, headers=headers, dumps=_dumps,
    )


def requires(role: str) -> Callable[[Handler], Handler]:
    """Mark a handler as needing at least this role (viewer < officer < admin)."""
    def mark(handler: Handler) -> Handler:
        setattr(handler, _ROLE_ATTRIBUTE, role)
        return handler
    return mark


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
    except (UnknownTemplate, NotFound) as exc:
        return error_response(404, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc))
    except StoreUnavailable as exc:
        event(log, "api.store_unavailable", logging.ERROR, error=str(exc))
        return error_response(503, str(exc))
    except BroadcasterError as exc:
        return error_response(400, str(exc))


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    needed = getattr(handler, _ROLE_ATTRIBUTE, None)
    if needed is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    parts = split_token(token.strip()) if scheme.lower() == "bearer" else None
    user = None
    if parts is not None:
        candidate = await request.app[DATABASE].run(request.app[DATABASE].store.get_user,
                                                    parts[0])
        if candidate is not None and not candidate.disabled and token_matches(
                parts[1], candidate.token_hash):
            user = candidate
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


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    receipt = delivery.receipt
    return {
        "id": delivery.id, "channel": delivery.channel, "state": delivery.state.value,
        "attempts": delivery.attempts, "headline": delivery.headline, "text": delivery.text,
        "remote_id": receipt.remote_id if receipt else None,
        "url": receipt.url if receipt else None, "error": delivery.error,
        "queued_at": iso_utc(delivery.queued_at),
        "not_before": iso_utc(delivery.not_before),
        "delivered_at": iso_utc(delivery.delivered_at),
    }


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id, "state": alert.state.value, "mode": alert.mode.value,
        "kind": alert.kind.value, "template": alert.template, "severity": alert.severity.value,
        "variables": dict(alert.variables), "references": alert.references,
        "created_by": alert.created_by, "created_at": iso_utc(alert.created_at),
        "send_at": iso_utc(alert.send_at),
        "deliveries": [delivery_json(d) for d in alert.deliveries],
    }


def _channels_field(body: dict[str, Any], problems: dict[str, str]) -> list[str] | None:
    channels = body.get("channels")
    if channels is None:
        return None
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        problems["channels"] = "must be a list of channel names"
        return None
    return channels


def _alert_request(body: dict[str, Any], *, followup: Alert | None = None) -> AlertRequest:
    problems: dict[str, str] = {}
    allowed = {"template", "variables", "channels", "mode", "kind"} if followup else {
        "template", "variables", "channels", "mode", "send_at"}
    for key in sorted(set(body) - allowed):
        problems[key] = f"unknown field; known fields: {', '.join(sorted(allowed))}"
    template = body.get("template")
    if not isinstance(template, str) or not template:
        problems["template"] = "required: the id of a template"
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        problems["variables"] = "must be an object of variable values"
    channels = _channels_field(body, problems)
    kind = AlertKind.ALERT
    if followup is not None:
        mode = body.get("mode", followup.mode.value)
        try:
            kind = AlertKind(str(body.get("kind")))
            if kind is AlertKind.ALERT:
                raise ValueError
        except ValueError:
            problems["kind"] = "required: update, allclear or correction"
    else:
        mode = body.get("mode")
        if mode is None:
            # No default on purpose: live and exercise must never be confused.
            problems["mode"] = "required: \"live\" or \"exercise\""
    if problems:
        raise ValidationError(problems)
    return AlertRequest(
        template=str(template), variables=variables, mode=str(mode), channels=channels,
        kind=kind, references=followup.id if followup else None,
    )


async def _accept(request: web.Request, alert_request: AlertRequest,
                  reference: Alert | None) -> web.Response:
    app = request.app
    user = current_user(request)
    now = app[CLOCK]()
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise ValidationError({"Idempotency-Key": "at most 255 characters"})
    new = app[COMPOSER].accept(alert_request, user.name, now, reference, key)
    entry = AuditEntry(
        actor=user.name, address=request.remote,
        action="alert.send" if reference is None else f"alert.{alert_request.kind.value}",
        subject=new.id,
        details={"template": new.template, "mode": new.mode.value,
                 "references": new.references,
                 "channels": [d.channel for d in new.deliveries]},
    )
    database = app[DATABASE]
    alert_id, created = await database.run(database.store.accept_alert, new, entry)
    if created:
        app[METRICS].alerts.labels(new.mode.value, new.kind.value).inc()
        app[DISPATCHER].notify(d.channel for d in new.deliveries)
        event(log, "alert.accepted", alert=alert_id, template=new.template,
              mode=new.mode.value, kind=new.kind.value, by=user.name,
              channels=",".join(d.channel for d in new.deliveries))
    alert = await database.run(database.store.get_alert, alert_id)
    return web.json_response(alert_json(alert), status=201 if created else 200, dumps=_dumps)


@requires("officer")
async def post_alert(request: web.Request) -> web.Response:
    body = await json_body(request)
    return await _accept(request, _alert_request(body), None)


@requires("officer")
async def preview_alert(request: web.Request) -> web.Response:
    """What each channel would post, with lengths and problems; nothing is stored."""
    app = request.app
    body = await json_body(request)
    reference = None
    if body.get("references") is not None:
        database = app[DATABASE]
        reference = await database.run(database.store.get_alert, str(body.pop("references")))
    alert_request = _alert_request(body, followup=reference)
    prepared = app[COMPOSER].prepare(alert_request, app[CLOCK](), reference)
    snapshot = app[CATALOG].snapshot()
    return web.json_response({
        "template": prepared.template.id,
        "title": prepared.template.title,
        "approval": snapshot.approval(prepared.template).label,
        "mode": prepared.mode.value,
        "kind": alert_request.kind.value,
        "channels": [
            {"channel": p.channel, "kind": p.kind, "headline": p.composed.headline,
             "text": p.composed.text, "length": p.composed.length, "limit": p.composed.limit,
             "problems": list(p.problems)}
            for p in prepared.previews
        ],
        "problems": prepared.problems,
    }, dumps=_dumps)


@requires("officer")
async def post_followup(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    reference = await database.run(database.store.get_alert, request.match_info["id"])
    body = await json_body(request)
    return await _accept(request, _alert_request(body, followup=reference), reference)


@requires("viewer")
async def list_alerts(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        raise ValidationError({"limit": "a whole number from 1 to 500"}) from None
    before = request.query.get("before")
    database = request.app[DATABASE]
    alerts = await database.run(database.store.list_alerts, limit, before)
    document: dict[str, Any] = {"alerts": [alert_json(a) for a in alerts]}
    if len(alerts) == limit:
        document["next"] = alerts[-1].id
    return web.json_response(document, dumps=_dumps)


@requires("viewer")
async def get_alert(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    alert = await database.run(database.store.get_alert, request.match_info["id"])
    return web.json_response(alert_json(alert), dumps=_dumps)


@requires("officer")
async def retry_delivery(request: web.Request) -> web.Response:
    app = request.app
    user = current_user(request)
    delivery_id = request.match_info["id"]
    entry = AuditEntry(actor=user.name, address=request.remote, action="delivery.retry",
                       subject=delivery_id)
    database = app[DATABASE]
    delivery = await database.run(database.store.retry_delivery, delivery_id, entry,
                                  app[CLOCK]())
    app[DISPATCHER].notify([delivery.channel])
    event(log, "delivery.retry_requested", delivery=delivery_id, channel=delivery.channel,
          by=user.name)
    return web.json_response(delivery_json(delivery), dumps=_dumps)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    reasons = []
    database = app.get(DATABASE)
    if database is None:
        reasons.append("the ledger is not open")
    else:
        try:
            await database.run(database.store.check_writable, app[CLOCK]())
        except StoreUnavailable as exc:
            reasons.append(str(exc))
    if CHANNELS not in app:
        reasons.append("channels are not started")
    if reasons:
        return web.json_response({"status": "unavailable", "reasons": reasons}, status=503,
                                 dumps=_dumps)
    config = app[CONFIG]
    return web.json_response({"status": "ready", "channels": len(app[CHANNELS]),
                              "config": str(config.path)}, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    try:
        counts = await database.run(database.store.delivery_counts)
    except StoreUnavailable:
        counts = {}
    body = request.app[METRICS].exposition(counts)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 time with offset, or ValidationError naming the field."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValidationError({field: f"{value!r} is not an ISO 8601 time"}) from None
    if moment.tzinfo is None:
        raise ValidationError({field: "needs a time zone offset, e.g. 2026-11-24T06:00+01:00"})
    return moment


def add_routes(app: web.Application) -> None:
    app.add_routes([
        web.post("/api/v1/alerts", post_alert),
        web.post("/api/v1/alerts/preview", preview_alert),
        web.get("/api/v1/alerts", list_alerts),
        web.get("/api/v1/alerts/{id}", get_alert),
        web.post("/api/v1/alerts/{id}/followups", post_followup),
        web.post("/api/v1/deliveries/{id}/retry", retry_delivery),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ])
