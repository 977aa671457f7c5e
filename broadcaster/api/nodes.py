"""The nodes on the ledger: which are running, since when, and what each has under way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from broadcaster.api.common import json_response, requires
from broadcaster.appkeys import CLOCK, CONFIG, DATABASE
from broadcaster.models import iso_utc
from broadcaster.store import NodeRecord


def node_state(node: NodeRecord, now: datetime, lease: timedelta) -> str:
    """running (heartbeat fresh), stopped (a clean stop) or lost (no heartbeat for a
    lease: killed, frozen or cut off; its work is taken over)."""
    if node.stopped_at is not None:
        return "stopped"
    return "running" if node.last_seen_at > now - lease else "lost"


def node_json(node: NodeRecord, now: datetime, lease: timedelta, this: str) -> dict[str, Any]:
    return {
        "name": node.name, "version": node.version, "address": node.address,
        "state": node_state(node, now, lease), "this": node.name == this,
        "started_at": iso_utc(node.started_at), "last_seen_at": iso_utc(node.last_seen_at),
        "stopped_at": iso_utc(node.stopped_at), "attempts_under_way": node.leases,
    }


async def nodes_now(app: web.Application) -> list[dict[str, Any]]:
    database = app[DATABASE]
    service = app[CONFIG].service
    lease = timedelta(seconds=service.lease_seconds)
    now = app[CLOCK]()
    return [node_json(n, now, lease, service.node)
            for n in await database.read(database.store.list_nodes)]


@requires("viewer")
async def list_nodes(request: web.Request) -> web.Response:
    return json_response({"nodes": await nodes_now(request.app)})


ROUTES = [web.get("/api/v1/nodes", list_nodes)]
