"""Read-only endpoints about what can be sent and where: templates and channels."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcaster.api.common import json_response, requires
from broadcaster.appkeys import CATALOG, CHANNELS, CONFIG, HEALTH
from broadcaster.catalog import Snapshot
from broadcaster.channels import KINDS
from broadcaster.durations import format_duration
from broadcaster.models import iso_utc
from broadcaster.templates import Template


def template_json(template: Template, snapshot: Snapshot, texts: bool = False
                  ) -> dict[str, Any]:
    state = snapshot.approval(template)
    approval = snapshot.approvals.get(template.id)
    document: dict[str, Any] = {
        "id": template.id, "title": template.title, "description": template.description,
        "severity": template.severity.value, "event": template.event,
        "category": template.category, "kind": template.kind.value,
        "languages": list(template.languages),
        "expires_after": format_duration(template.expires_after)
        if template.expires_after else None,
        "approval": {
            "state": state.value, "label": state.label,
            "approved_by": approval.approved_by if approval else None,
            "approved_at": approval.approved_at if approval else None,
        },
        "variables": [
            {"name": v.name, "label": v.label, "type": v.type, "max_length": v.max_length,
             "choices": list(v.choices), "min": v.min, "max": v.max, "decimals": v.decimals,
             "help": v.help, "example": v.example}
            for v in template.variables.values()
        ],
    }
    if texts:
        document["texts"] = {
            language: {"headline": t.headline, "short": t.short, "body": t.body}
            for language, t in template.texts.items()
        }
    return document


@requires("viewer")
async def list_templates(request: web.Request) -> web.Response:
    snapshot = request.app[CATALOG].snapshot()
    return json_response({
        "templates": [template_json(t, snapshot) for t in snapshot.templates.templates.values()],
        "problems": [str(p) for p in snapshot.templates.problems],
    })


@requires("viewer")
async def get_template(request: web.Request) -> web.Response:
    snapshot = request.app[CATALOG].snapshot()
    template = snapshot.templates.get(request.match_info["id"])
    return json_response(template_json(template, snapshot, texts=True))


@requires("viewer")
async def list_channels(request: web.Request) -> web.Response:
    app = request.app
    running = app[CHANNELS]
    documents = []
    for config in app[CONFIG].channels:
        health = app[HEALTH].get(config.name)
        channel = running.get(config.name)
        documents.append({
            "name": config.name, "kind": config.kind,
            "target": str(getattr(config.settings, "target", "")),
            "languages": list(config.languages), "exercise": config.exercise,
            "enabled": config.enabled,
            "up": health.up if config.enabled else False,
            "health": health.message if config.enabled else "disabled in channels.toml",
            "checked_at": iso_utc(health.checked_at),
            "last_success_at": iso_utc(health.last_success_at),
            "limit": channel.length_limit() if channel else KINDS[config.kind].limit,
        })
    return json_response({"channels": documents})


ROUTES = [
    web.get("/api/v1/templates", list_templates),
    web.get("/api/v1/templates/{id}", get_template),
    web.get("/api/v1/channels", list_channels),
]
