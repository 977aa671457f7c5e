"""This node among the others on one ledger: joining, the heartbeat, taking over.

PostgreSQL is the only source of truth; there is no protocol between nodes. A node
registers under its name, and every ``lease_seconds / 3`` beats its heart in the
ledger, which also renews the leases of the attempts it has under way. Every
``lease_seconds / 2`` it looks for leases that ran out (their node was killed,
frozen or cut off from the database) and resolves those deliveries by the crash
rule: queued again where the platform deduplicates, `unknown` where it cannot.

After an outage of the ledger no node could renew anything, so every lease looks
expired at once; a node therefore waits one lease period after the ledger comes
back before it takes anything over, which gives the others time to beat again.
On SQLite (one node) none of this runs: its recovery at start covers a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from broadcaster import __version__
from broadcaster.config import Config
from broadcaster.dispatch import Dispatcher
from broadcaster.errors import Conflict, StoreError
from broadcaster.logs import event
from broadcaster.metrics import Metrics
from broadcaster.store import Database

log = logging.getLogger("broadcaster.cluster")


class Superseded(Exception):
    """A newer run of this node holds its name."""


class Membership:
    def __init__(self, config: Config, database: Database, metrics: Metrics,
                 clock: Callable[[], datetime], address: str) -> None:
        self.name = config.service.node
        self.lease = timedelta(seconds=config.service.lease_seconds)
        self.expected = config.service.expected_nodes
        self.database = database
        self.metrics = metrics
        self.clock = clock
        self.address = address
        self.instance = secrets.token_hex(8)  # this run of the node, not its name
        self.active = database.store.features.several_nodes
        self._quiet_until = 0.0  # no takeover before this (monotonic), see the docstring
        database.on_change(self._ledger_changed)

    async def join(self) -> None:
        """Register; Conflict when a live node runs under this name.

        The name's last heartbeat may be this node's own before a crash and restart:
        a run that beats no more is gone within a lease, so a fresh heartbeat is
        waited out once before the name counts as taken. (On SQLite the file lock
        already keeps a second daemon off the ledger.)"""
        alive_within = self.lease if self.active else timedelta(0)
        deadline = time.monotonic() + self.lease.total_seconds() * 1.5
        while True:
            try:
                await self.database.run(self.database.store.register_node, self.name,
                                        self.instance, __version__, self.address,
                                        self.clock(), alive_within)
                break
            except Conflict:
                if time.monotonic() > deadline:
                    raise
                event(log, "node.name_busy", node=self.name,
                      hint="waiting whether its last run beats again")
                await asyncio.sleep(1.0)
        self.metrics.joined(self.name, __version__, self.expected)
        event(log, "node.joined", node=self.name, lease_seconds=self.lease.total_seconds())

    async def run(self, dispatcher: Dispatcher) -> None:
        """Beat, and take over what dead nodes held, until cancelled."""
        beat = self.lease.total_seconds() / 3
        sweep_every = self.lease.total_seconds() / 2
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(beat)
            try:
                await self._beat()
                if self.active and time.monotonic() - last_sweep >= sweep_every:
                    last_sweep = time.monotonic()
                    if time.monotonic() >= self._quiet_until:
                        await dispatcher.take_over()
            except StoreError:
                pass  # the ledger watch says it is away; the next beat tries again
            except Superseded:
                raise
            except Exception:  # a bug here must not stop the heartbeat: leases would lapse
                log.exception("heartbeat of node %s failed", self.name)

    async def _beat(self) -> None:
        now = self.clock()
        renewed = await self.database.run(self.database.store.heartbeat, self.name,
                                          self.instance, now, now + self.lease)
        if renewed is None:
            # Frozen or cut off so long that a new run took this node's name: this one
            # must not claim or write anything more. Stop as on SIGTERM.
            event(log, "node.superseded", logging.CRITICAL, node=self.name,
                  hint="another run of this node took over its name; this one stops")
            os.kill(os.getpid(), signal.SIGTERM)
            raise Superseded(self.name)
        if self.active:
            nodes = await self.database.read(self.database.store.list_nodes)
            alive = [n for n in nodes if n.stopped_at is None
                     and n.last_seen_at > now - self.lease]
            self.metrics.nodes_live.set(len(alive))

    def _ledger_changed(self, up: bool) -> None:
        if up:
            self._quiet_until = time.monotonic() + self.lease.total_seconds()

    async def leave(self) -> None:
        with contextlib.suppress(StoreError):
            await self.database.run(self.database.store.leave_node, self.name,
                                    self.instance, self.clock())
        event(log, "node.left", node=self.name)
