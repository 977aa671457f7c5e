"""What the console shows of alerts: the dashboard, the alert list, the live status
board of one alert (with its small JSON status document, polled every second), the
attempts of every delivery, and the board's buttons: confirm, withdraw, retry.

The buttons call the same functions as the JSON API (api.alerts.approve, withdraw,
retry), so the two-person rule and the audit trail hold the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from broadcaster.api.alerts import approve, retry, withdraw
from broadcaster.api.nodes import node_state
from broadcaster.appkeys import CATALOG, CLOCK, CONFIG, DATABASE, HEALTH, SCRUBBER, current_user
from broadcaster.auth import role_allows
from broadcaster.console.guard import page
from broadcaster.console.i18n import translator
from broadcaster.console.render import render, see_other
from broadcaster.console.session import language
from broadcaster.models import Alert, AlertState, DeliveryState

PAGE_SIZE = 20
DASHBOARD_WINDOW = 200
RETRYABLE = (DeliveryState.FAILED, DeliveryState.UNKNOWN)


def _titles(request: web.Request) -> dict[str, str]:
    return {t.id: t.title for t in request.app[CATALOG].snapshot().templates.templates.values()}


@page("viewer")
async def dashboard(request: web.Request) -> web.StreamResponse:
    app = request.app
    database = app[DATABASE]
    # What is under way is recent: one read of the newest alerts, not a scan per state.
    newest = await database.read(database.store.list_alerts, DASHBOARD_WINDOW)
    delivering = [a for a in newest if a.state is AlertState.DELIVERING]
    awaiting = [a for a in newest if a.state is AlertState.AWAITING_APPROVAL]
    scheduled = [a for a in newest if a.state is AlertState.SCHEDULED]
    # Expired without an all-clear, and still without one: shown first, in red.
    expired = [a for a in newest if a.expired_at is not None
               and not await database.read(database.store.thread_closed, a.id)]
    recent = newest[:10]
    channels = []
    for config in app[CONFIG].channels:
        health = app[HEALTH].get(config.name)
        channels.append({
            "name": config.name, "kind": config.kind, "exercise": config.exercise,
            "enabled": config.enabled, "up": health.up and config.enabled,
            "message": app[SCRUBBER].scrub(health.message),
        })
    t = translator(language(request))
    nodes = []
    if database.store.features.several_nodes:  # one SQLite node: nothing to compare
        lease = timedelta(seconds=app[CONFIG].service.lease_seconds)
        now = app[CLOCK]()
        nodes = [{"name": n.name, "this": n.name == app[CONFIG].service.node,
                  "state": node_state(n, now, lease), "last_seen": n.last_seen_at,
                  "attempts_under_way": n.leases, "version": n.version}
                 for n in await database.read(database.store.list_nodes)]
    return render(request, "dashboard.html", title=t("dash.title"), delivering=delivering,
                  awaiting=awaiting, scheduled=scheduled, expired=expired, recent=recent,
                  channels=channels, nodes=nodes, titles=_titles(request))


@page("viewer")
async def alert_list(request: web.Request) -> web.StreamResponse:
    before = request.query.get("before") or None
    database = request.app[DATABASE]
    alerts = await database.read(database.store.list_alerts, PAGE_SIZE, before)
    t = translator(language(request))
    return render(request, "alerts.html", title=t("list.title"), alerts=alerts,
                  titles=_titles(request), before=before,
                  older=alerts[-1].id if len(alerts) == PAGE_SIZE else None)


def status_document(request: web.Request, alert: Alert) -> dict[str, Any]:
    """What the board polls: the alert's state and each delivery's, labelled."""
    t = translator(language(request))
    scrub = request.app[SCRUBBER].scrub
    return {
        "id": alert.id, "state": alert.state.value, "state_label": t(f"state.{alert.state}"),
        "hold": alert.hold,
        "deliveries": [{
            "id": d.id, "channel": d.channel, "state": d.state.value,
            "state_label": t(f"state.{d.state}"), "attempts": d.attempts,
            "attempts_label": t("board.attempts", count=d.attempts),
            "url": _safe_url(d.receipt.url if d.receipt else None),
            "error": scrub(d.error) if d.error else None,
            "retry": d.state in RETRYABLE,
        } for d in alert.deliveries],
    }


def _safe_url(url: str | None) -> str | None:
    """Only web addresses become links (a platform's answer is not trusted)."""
    return url if url and url.startswith(("https://", "http://")) else None


@page("viewer")
async def board(request: web.Request) -> web.StreamResponse:
    database = request.app[DATABASE]
    alert = await database.read(database.store.get_alert, request.match_info["id"])
    user = current_user(request)
    titles = _titles(request)
    t = translator(language(request))
    title = titles.get(alert.template, alert.template)
    reference = None
    if alert.references is not None:
        reference = await database.read(database.store.get_alert, alert.references)
    return render(
        request, "board.html", reference=reference,
        title=f"{t('mode.' + alert.mode.value)} · {title}",
        mode=alert.mode.value, alert=alert, alert_title=title, titles=titles,
        kinds={c.name: c.kind for c in request.app[CONFIG].channels},
        status=status_document(request, alert), officer=role_allows(user.role, "officer"),
        own=alert.created_by == user.name, awaiting=alert.state is AlertState.AWAITING_APPROVAL,
        held=alert.hold is not None and alert.state.value == alert.hold,
        expired=alert.expired_at is not None
        and not await database.read(database.store.thread_closed, alert.id))


@page("viewer", json=True)
async def board_status(request: web.Request) -> web.StreamResponse:
    database = request.app[DATABASE]
    alert = await database.read(database.store.get_alert, request.match_info["id"])
    return web.json_response(status_document(request, alert))


@page("viewer")
async def attempts(request: web.Request) -> web.StreamResponse:
    database = request.app[DATABASE]
    alert = await database.read(database.store.get_alert, request.match_info["id"])
    tried = {d.id: await database.read(database.store.attempts, d.id) for d in alert.deliveries}
    t = translator(language(request))
    title = _titles(request).get(alert.template, alert.template)
    return render(request, "attempts.html",
                  title=f"{t('mode.' + alert.mode.value)} · {title} · {t('attempts.title')}",
                  mode=alert.mode.value, alert=alert, alert_title=title, tried=tried)


@page("officer")
async def confirm(request: web.Request) -> web.StreamResponse:
    alert = await approve(request, request.match_info["id"], via="console")
    return see_other(f"/console/alerts/{alert.id}")


@page("officer")
async def withdraw_held(request: web.Request) -> web.StreamResponse:
    alert = await withdraw(request, request.match_info["id"], via="console")
    return see_other(f"/console/alerts/{alert.id}")


@page("officer")
async def retry_one(request: web.Request) -> web.StreamResponse:
    delivery = await retry(request, request.match_info["id"], via="console")
    return see_other(f"/console/alerts/{delivery.alert_id}")


ROUTES = [
    web.get("/console/", dashboard),
    web.get("/console/alerts", alert_list),
    web.get("/console/alerts/{id}", board),
    web.get("/console/alerts/{id}/status", board_status),
    web.get("/console/alerts/{id}/attempts", attempts),
    web.post("/console/alerts/{id}/approve", confirm),
    web.post("/console/alerts/{id}/withdraw", withdraw_held),
    web.post("/console/deliveries/{id}/retry", retry_one),
]
