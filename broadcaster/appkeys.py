"""The typed keys of the daemon's aiohttp application, in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import jinja2
from aiohttp import web

from broadcaster.accept import Composer
from broadcaster.catalog import Catalog
from broadcaster.channels.base import Channel
from broadcaster.cluster import Membership
from broadcaster.config import Config
from broadcaster.dispatch import Dispatcher
from broadcaster.health import HealthBoard
from broadcaster.logs import Scrubber
from broadcaster.metrics import Metrics
from broadcaster.scheduler import Timekeeper
from broadcaster.store import Database, User

CONFIG = web.AppKey("config", Config)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
SCRUBBER = web.AppKey("scrubber", Scrubber)
METRICS = web.AppKey("metrics", Metrics)
CATALOG = web.AppKey("catalog", Catalog)
DATABASE = web.AppKey("database", Database)
CHANNELS = web.AppKey("channels", dict[str, Channel])
COMPOSER = web.AppKey("composer", Composer)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
HEALTH = web.AppKey("health", HealthBoard)
MEMBERSHIP = web.AppKey("membership", Membership)
TIMEKEEPER = web.AppKey("timekeeper", Timekeeper)
# The web console's page environment (autoescaping; not the sandboxed template one).
CONSOLE_PAGES = web.AppKey("console_pages", jinja2.Environment)

# Per request: the authenticated user.
USER = "broadcaster.user"


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    assert isinstance(user, User), "route is not behind authentication"
    return user
