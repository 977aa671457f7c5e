"""Is the ledger answering? ``broadcaster_database_up``, a probe, and the way back.

Every ledger call reports whether it got an answer (``Database.on_change``); a probe
(one small write) also runs every ``PROBE_UP`` seconds, so an outage is noticed
while the daemon is idle, and every ``PROBE_DOWN`` seconds while the ledger is
away, so the way back is noticed without traffic. When the ledger answers again,
the dispatcher resolves orphaned `sending` rows and wakes every lane: the daemon
carries on by itself, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from broadcaster.dispatch import Dispatcher
from broadcaster.errors import StoreError
from broadcaster.logs import event
from broadcaster.metrics import Metrics
from broadcaster.store import Database

log = logging.getLogger("broadcaster.ledger")

PROBE_UP = 5.0
PROBE_DOWN = 1.0
PROBE_TIMEOUT = 8.0  # a probe write that takes longer counts as no answer


class LedgerWatch:
    def __init__(self, database: Database, dispatcher: Dispatcher, metrics: Metrics,
                 clock: Callable[[], datetime]) -> None:
        self.database = database
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.clock = clock
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        metrics.database_up.set(1 if database.up else 0)
        database.on_change(self._on_change)

    def _on_change(self, up: bool) -> None:
        self.metrics.database_up.set(1 if up else 0)
        self._changed.set()
        if up:
            event(log, "ledger.back", backend=self.database.store.features.name)
            self._spawn(self._carry_on())
        else:
            event(log, "ledger.unavailable", logging.ERROR,
                  backend=self.database.store.features.name,
                  hint="alerts are refused with 503 until it answers again")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry_on(self) -> None:
        try:
            await self.dispatcher.ledger_back()
        except StoreError as exc:  # gone again at once: the next return tries again
            event(log, "ledger.recovery_failed", logging.ERROR, error=str(exc))

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_UP if self.database.up else PROBE_DOWN):
                    await self._changed.wait()
                    continue  # the interval follows the new state
            try:
                features = self.database.store.features
                async with asyncio.timeout(PROBE_TIMEOUT if features.commits_may_hang else None):
                    await self.database.run(self.database.store.check_writable, self.clock())
            except StoreError:
                pass  # the call itself marked the ledger down
            except TimeoutError:
                # A write that hangs (a synchronous standby gone, a cut network) is as
                # bad as one that fails: alerts would hang too.
                event(log, "ledger.probe_timeout", logging.ERROR, seconds=PROBE_TIMEOUT)
                self.database.mark_down()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
