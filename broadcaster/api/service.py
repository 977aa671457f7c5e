"""Endpoints for machines: liveness, readiness and Prometheus metrics (no token)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcaster import __version__
from broadcaster.api.common import json_response
from broadcaster.appkeys import CHANNELS, CLOCK, CONFIG, DATABASE, METRICS
from broadcaster.errors import StoreUnavailable
from broadcaster.metrics import CONTENT_TYPE

READY_TIMEOUT = 8.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the ledger takes a write and the channels are started; says why not."""
    app = request.app
    reasons = []
    database = app.get(DATABASE)
    if database is None:
        reasons.append("the ledger is not open")
    else:
        try:
            # Only a backend whose commit may hang needs a limit (SQLite gives up by
            # itself, and then says why: a held lock, a full disk).
            patience = READY_TIMEOUT if database.store.features.commits_may_hang else None
            async with asyncio.timeout(patience):
                await database.run(database.store.check_writable, app[CLOCK]())
        except StoreUnavailable as exc:
            reasons.append(str(exc))
        except TimeoutError:
            reasons.append(f"the ledger did not confirm a write within {READY_TIMEOUT:g} s")
    if CHANNELS not in app:
        reasons.append("channels are not started")
    if reasons:
        return json_response({"status": "unavailable", "reasons": reasons}, status=503)
    return json_response({"status": "ready", "channels": len(app[CHANNELS]),
                          "config": str(app[CONFIG].path)})


async def metrics(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    try:
        counts = await request.app[METRICS].state_counts.current(database)
    except StoreUnavailable:
        counts = {}
    body = request.app[METRICS].exposition(counts)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
