"""JSON API v1, health endpoints and /metrics: one module per group of routes."""

from __future__ import annotations

from aiohttp import web

from broadcaster.api import alerts, catalog, nodes, openapi, service
from broadcaster.api.common import middlewares

__all__ = ["add_routes", "middlewares"]


def add_routes(app: web.Application) -> None:
    for module in (alerts, catalog, nodes, service, openapi):
        app.add_routes(module.ROUTES)
