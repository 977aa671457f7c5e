"""The daemon's aiohttp application factory.

Every resource has its own cleanup context, in start order: the single-daemon
lock, the ledger, the channels' client sessions, the dispatcher (which recovers
interrupted deliveries before its lanes start). aiohttp tears down exactly those
that started, in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from broadcaster import __version__, api, console
from broadcaster.accept import Composer
from broadcaster.appkeys import (
    CATALOG,
    CHANNELS,
    CLOCK,
    COMPOSER,
    CONFIG,
    DATABASE,
    DISPATCHER,
    HEALTH,
    MEMBERSHIP,
    METRICS,
    SCRUBBER,
    TIMEKEEPER,
)
from broadcaster.catalog import Catalog
from broadcaster.channels import KINDS
from broadcaster.channels.base import Channel
from broadcaster.cluster import Membership
from broadcaster.config import Config
from broadcaster.dispatch import Dispatcher
from broadcaster.health import HealthBoard
from broadcaster.ledgerwatch import LedgerWatch
from broadcaster.logs import Scrubber, event
from broadcaster.metrics import Metrics
from broadcaster.models import utcnow
from broadcaster.scheduler import Timekeeper
from broadcaster.store import daemon_lock, open_database

log = logging.getLogger("broadcaster.app")

MAX_BODY = 64 * 1024
SHUTDOWN_GRACE = 5.0


def create_app(
    config: Config,
    *,
    scrubber: Scrubber | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=api.middlewares())
    app[CONFIG] = config
    app[CLOCK] = clock
    app[SCRUBBER] = scrubber or Scrubber(config.secret_values())
    app[SCRUBBER].add(config.secret_values())
    app[METRICS] = Metrics([c.name for c in config.enabled_channels()], __version__)
    app[CATALOG] = Catalog(config.service.templates)
    app[HEALTH] = HealthBoard([c.name for c in config.enabled_channels()], app[METRICS])
    app.cleanup_ctx.extend([_lock, _ledger, _channels, _dispatcher, _timekeeper])
    api.add_routes(app)
    console.add_routes(app)
    return app


async def _lock(app: web.Application) -> AsyncIterator[None]:
    # One daemon per SQLite file; on PostgreSQL the node registry takes its place.
    lock = daemon_lock(app[CONFIG].service.database)
    if lock is not None:
        lock.acquire()
    yield
    if lock is not None:
        lock.release()


async def _ledger(app: web.Application) -> AsyncIterator[None]:
    database = open_database(app[CONFIG].service.database)
    app[DATABASE] = database
    try:
        # Join before anything is recovered: a second process under a live node's name
        # must not touch that node's leases.
        membership = Membership(app[CONFIG], database, app[METRICS], app[CLOCK],
                                address=str(app[CONFIG].service.listen))
        await membership.join()
        app[MEMBERSHIP] = membership
        yield
        await membership.leave()
    finally:
        database.close()


async def _channels(app: web.Application) -> AsyncIterator[None]:
    channels: dict[str, Channel] = {}
    app[CHANNELS] = channels
    try:
        for config in app[CONFIG].enabled_channels():
            channel = KINDS[config.kind].create(config)
            await channel.start()
            channels[config.name] = channel
            app[SCRUBBER].add(channel.secrets())
        app[COMPOSER] = Composer(app[CONFIG], app[CATALOG], channels)
        app[CATALOG].snapshot()
        yield
    finally:
        await asyncio.gather(*(channel.close() for channel in channels.values()),
                             return_exceptions=True)


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    channels: dict[str, Channel] = app[CHANNELS]
    service = app[CONFIG].service
    dispatcher = Dispatcher(channels, app[CONFIG].enabled_channels(), app[DATABASE],
                            app[METRICS], app[SCRUBBER], clock=app[CLOCK], health=app[HEALTH],
                            node=service.node, lease_seconds=service.lease_seconds)
    app[DISPATCHER] = dispatcher
    await dispatcher.start()
    database = app[DATABASE]
    watch = LedgerWatch(database, dispatcher, app[METRICS], app[CLOCK])
    background = [
        asyncio.create_task(watch.run(), name="ledger-watch"),
        # Work announced by other processes on the ledger (a no-op on SQLite).
        asyncio.create_task(database.store.watch_for_work(dispatcher.notify),
                            name="ledger-listen"),
        asyncio.create_task(app[MEMBERSHIP].run(dispatcher), name="membership"),
    ]
    event(log, "daemon.ready", channels=",".join(channels),
          database=str(database.store), backend=database.store.features.name)
    yield
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await watch.close()
    await dispatcher.stop(SHUTDOWN_GRACE)


async def _timekeeper(app: web.Application) -> AsyncIterator[None]:
    channels: dict[str, Channel] = app[CHANNELS]
    timekeeper = Timekeeper(app[CONFIG], app[DATABASE], app[DISPATCHER], channels,
                            app[HEALTH], app[METRICS], app[CLOCK])
    app[TIMEKEEPER] = timekeeper
    await timekeeper.start()
    yield
    await timekeeper.stop()
