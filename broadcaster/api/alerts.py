"""Alert endpoints: send, preview, list, show, follow up, confirm, withdraw, retry."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from broadcaster.accept import AlertRequest
from broadcaster.api.common import json_body, json_response, requires
from broadcaster.appkeys import (
    CATALOG,
    CLOCK,
    COMPOSER,
    CONFIG,
    DATABASE,
    DISPATCHER,
    METRICS,
    TIMEKEEPER,
    current_user,
)
from broadcaster.errors import StoreUnavailable, ValidationError
from broadcaster.logs import event
from broadcaster.models import Alert, AlertKind, AlertState, Delivery, iso_utc, utcnow
from broadcaster.store import AuditEntry
from broadcaster.timing import parse_send_at

ACCEPT_TIMEOUT = 10.0  # seconds the ledger may take to commit an alert

log = logging.getLogger("broadcaster.api")

AWAITING_APPROVAL = "awaiting_approval"


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
        "send_at": iso_utc(alert.send_at), "fired_at": iso_utc(alert.fired_at),
        "late_seconds": alert.late_seconds,
        "repeat": dict(alert.repeat) if alert.repeat else None, "repeat_of": alert.repeat_of,
        "expires_at": iso_utc(alert.expires_at), "expired": alert.expired_at is not None,
        "expired_at": iso_utc(alert.expired_at),
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


def alert_request(body: dict[str, Any], *, followup: Alert | None = None,
                  zone: ZoneInfo | None = None, now: datetime | None = None) -> AlertRequest:
    """The request in a JSON body; ValidationError names each bad field. ``zone`` and
    ``now`` judge a send_at (local wall times are in the service's time zone)."""
    problems: dict[str, str] = {}
    allowed = {"template", "variables", "channels", "mode", "kind"} if followup else {
        "template", "variables", "channels", "mode", "send_at", "repeat"}
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
            problems["mode"] = 'required: "live" or "exercise"'
    send_at = None
    if body.get("send_at") is not None:
        try:
            send_at = parse_send_at(body["send_at"], zone or ZoneInfo("UTC"), now or utcnow())
        except ValidationError as exc:
            problems.update(exc.problems)
    repeat = body.get("repeat")
    if problems:
        raise ValidationError(problems)
    return AlertRequest(
        template=str(template), variables=variables, mode=str(mode), channels=channels,
        kind=kind, references=followup.id if followup else None, send_at=send_at,
        repeat=repeat,
    )


def needs_second_officer(request: web.Request, new_mode: str, kind: AlertKind) -> bool:
    """Under the two-person rule a live alert, update or all-clear waits for a second
    officer. A correction never waits: retracting a false alarm must take seconds."""
    rule = request.app[CONFIG].service.require_second_officer
    return new_mode in rule and kind is not AlertKind.CORRECTION


async def _accept(request: web.Request, alert_request: AlertRequest,
                  reference: Alert | None) -> web.Response:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise ValidationError({"Idempotency-Key": "at most 255 characters"})
    alert, created = await accept(request, alert_request, reference, key)
    return json_response(alert_json(alert), status=201 if created else 200)


async def accept(request: web.Request, alert_request: AlertRequest, reference: Alert | None,
                 key: str | None, via: str = "api") -> tuple[Alert, bool]:
    """The one way in for an officer's alert or follow-up (API and console): validate
    and render with the Composer, hold it under the two-person rule, commit it with
    its audit event, wake the lanes. Returns (alert, created); created is False for
    a repeated idempotency key."""
    app = request.app
    user = current_user(request)
    now = app[CLOCK]()
    hold = AWAITING_APPROVAL if needs_second_officer(request, alert_request.mode,
                                                     alert_request.kind) else None
    new = app[COMPOSER].accept(alert_request, user.name, now, reference, key, hold=hold)
    entry = AuditEntry(
        actor=user.name, address=request.remote,
        action="alert.send" if reference is None else f"alert.{alert_request.kind.value}",
        subject=new.id,
        details={"template": new.template, "mode": new.mode.value,
                 "references": new.references, "hold": hold, "via": via,
                 "channels": [d.channel for d in new.deliveries]},
    )
    database = app[DATABASE]
    patience = ACCEPT_TIMEOUT if database.store.features.commits_may_hang else None
    try:
        async with asyncio.timeout(patience):
            alert_id, created = await database.run(database.store.accept_alert, new, entry)
    except TimeoutError:
        # A commit that hangs (PostgreSQL waiting for a synchronous standby that is gone)
        # may still complete later: say so, and how to send again without a double.
        database.mark_down()
        raise StoreUnavailable(
            f"the ledger did not confirm the alert within {ACCEPT_TIMEOUT:g} s; it may "
            "still be accepted once the database answers. Send again with the same "
            "Idempotency-Key (the console and the CLI do), or look at the alert list first"
        ) from None
    if created:
        app[METRICS].alerts.labels(new.mode.value, new.kind.value).inc()
        app[DISPATCHER].notify(d.channel for d in new.deliveries)
        event(log, "alert.accepted", alert=alert_id, template=new.template,
              mode=new.mode.value, kind=new.kind.value, by=user.name, hold=hold or "",
              channels=",".join(d.channel for d in new.deliveries))
    if created:
        # Answer from what was committed: reading it back would queue in front of the
        # lanes' claims on the ledger thread and delay the fan-out.
        alert = new.as_accepted()
        await app[TIMEKEEPER].accepted(alert)
    else:
        alert = await database.read(database.store.get_alert, alert_id)
    return alert, created


@requires("officer")
async def post_alert(request: web.Request) -> web.Response:
    body = await json_body(request)
    zone = ZoneInfo(request.app[CONFIG].service.timezone)
    return await _accept(request, alert_request(body, zone=zone, now=request.app[CLOCK]()),
                         None)


@requires("officer")
async def preview_alert(request: web.Request) -> web.Response:
    """What each channel would post, with lengths and problems; nothing is stored."""
    app = request.app
    body = await json_body(request)
    reference = None
    if body.get("references") is not None:
        database = app[DATABASE]
        reference = await database.read(database.store.get_alert, str(body.pop("references")))
    zone = ZoneInfo(app[CONFIG].service.timezone)
    parsed = alert_request(body, followup=reference, zone=zone, now=app[CLOCK]())
    prepared = app[COMPOSER].prepare(parsed, app[CLOCK](), reference)
    snapshot = app[CATALOG].snapshot()
    return json_response({
        "template": prepared.template.id,
        "title": prepared.template.title,
        "approval": snapshot.approval(prepared.template).label,
        "mode": prepared.mode.value,
        "kind": parsed.kind.value,
        "second_officer": needs_second_officer(request, prepared.mode.value, parsed.kind),
        "channels": [
            {"channel": p.channel, "kind": p.kind, "headline": p.composed.headline,
             "text": p.composed.text, "length": p.composed.length, "limit": p.composed.limit,
             "problems": list(p.problems)}
            for p in prepared.previews
        ],
        "problems": prepared.problems,
    })


@requires("officer")
async def post_followup(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    reference = await database.read(database.store.get_alert, request.match_info["id"])
    body = await json_body(request)
    return await _accept(request, alert_request(body, followup=reference), reference)


@requires("viewer")
async def list_alerts(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        raise ValidationError({"limit": "a whole number from 1 to 500"}) from None
    state = None
    if "state" in request.query:
        try:
            state = AlertState(request.query["state"])
        except ValueError:
            known = ", ".join(s.value for s in AlertState)
            raise ValidationError({"state": f"one of {known}"}) from None
    before = request.query.get("before")
    database = request.app[DATABASE]
    alerts = await database.read(database.store.list_alerts, limit, before, state)
    document: dict[str, Any] = {"alerts": [alert_json(a) for a in alerts]}
    if len(alerts) == limit:
        document["next"] = alerts[-1].id
    return json_response(document)


@requires("viewer")
async def get_alert(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    alert = await database.read(database.store.get_alert, request.match_info["id"])
    return json_response(alert_json(alert))


@requires("officer")
async def approve_alert(request: web.Request) -> web.Response:
    """The second officer's confirmation under the two-person rule."""
    return json_response(alert_json(await approve(request, request.match_info["id"])))


async def approve(request: web.Request, alert_id: str, via: str = "api") -> Alert:
    """Release an alert held for a second officer; HTTPForbidden for its creator."""
    app = request.app
    user = current_user(request)
    database = app[DATABASE]
    alert = await database.read(database.store.get_alert, alert_id)
    if alert.created_by == user.name:
        raise web.HTTPForbidden(
            text=f"{user.name} sent this alert; a different officer must confirm it")
    entry = AuditEntry(actor=user.name, address=request.remote, action="alert.approve",
                       subject=alert.id, details={"via": via})
    alert = await database.run(database.store.release_hold, alert.id, AWAITING_APPROVAL, entry,
                               app[CLOCK]())
    app[DISPATCHER].notify(d.channel for d in alert.deliveries)
    await app[TIMEKEEPER].accepted(alert)
    event(log, "alert.approved", alert=alert.id, by=user.name, created_by=alert.created_by)
    return alert


@requires("officer")
async def withdraw_alert(request: web.Request) -> web.Response:
    """Withdraw an alert that is still waiting (for confirmation or its time)."""
    return json_response(alert_json(await withdraw(request, request.match_info["id"])))


async def withdraw(request: web.Request, alert_id: str, via: str = "api") -> Alert:
    app = request.app
    user = current_user(request)
    database = app[DATABASE]
    entry = AuditEntry(actor=user.name, address=request.remote, action="alert.withdraw",
                       subject=alert_id, details={"via": via})
    alert = await database.run(database.store.cancel_alert, alert_id, entry, app[CLOCK]())
    app[TIMEKEEPER].cancelled(alert.id)
    event(log, "alert.withdrawn", alert=alert.id, by=user.name)
    return alert


@requires("officer")
async def retry_delivery(request: web.Request) -> web.Response:
    return json_response(delivery_json(await retry(request, request.match_info["id"])))


async def retry(request: web.Request, delivery_id: str, via: str = "api") -> Delivery:
    """Queue a failed or unknown delivery again and wake its lane."""
    app = request.app
    user = current_user(request)
    entry = AuditEntry(actor=user.name, address=request.remote, action="delivery.retry",
                       subject=delivery_id, details={"via": via})
    database = app[DATABASE]
    delivery = await database.run(database.store.retry_delivery, delivery_id, entry,
                                  app[CLOCK]())
    app[DISPATCHER].notify([delivery.channel])
    event(log, "delivery.retry_requested", delivery=delivery_id, channel=delivery.channel,
          by=user.name)
    return delivery


ROUTES = [
    web.post("/api/v1/alerts", post_alert),
    web.post("/api/v1/alerts/preview", preview_alert),
    web.get("/api/v1/alerts", list_alerts),
    web.get("/api/v1/alerts/{id}", get_alert),
    web.delete("/api/v1/alerts/{id}", withdraw_alert),
    web.post("/api/v1/alerts/{id}/followups", post_followup),
    web.post("/api/v1/alerts/{id}/approve", approve_alert),
    web.post("/api/v1/deliveries/{id}/retry", retry_delivery),
]

