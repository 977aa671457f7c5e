"""The ledger from the event loop: calls run on threads, never on the loop itself.

Writes go to the backend's writer threads (one for SQLite, whose single writer
connection they share; several for PostgreSQL, each with a pooled connection);
reads go to reader threads, so a status request or a metrics scrape does not wait
behind a fan-out's transactions. Every call reports whether the ledger answered,
so the daemon knows (and shows) when it is unreachable and when it is back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from broadcaster.errors import StoreUnavailable
from broadcaster.store.ledger import Ledger

P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """A Ledger behind threads, for use from the event loop."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        self.up = True
        self._listeners: list[Callable[[bool], None]] = []
        self._writer = ThreadPoolExecutor(max_workers=store.features.writers,
                                          thread_name_prefix="ledger")
        self._readers = ThreadPoolExecutor(
            max_workers=store.features.concurrent_readers, thread_name_prefix="ledger-read",
            initializer=store.attach_reader)

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` on the loop whenever the ledger stops or starts answering."""
        self._listeners.append(listener)

    async def run(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A transition (or any call) on a writer thread."""
        return await self._call(self._writer, functools.partial(method, *args, **kwargs),
                                proves_up=True)

    async def read(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A read on a reader thread, beside the writer."""
        return await self._call(self._readers, functools.partial(method, *args, **kwargs),
                                proves_up=False)

    async def _call(self, executor: ThreadPoolExecutor, call: Callable[[], T],
                    proves_up: bool) -> T:
        # Only a call on a writer thread proves the ledger is back: on a full disk
        # SQLite still reads, but it does not persist.
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor, call)
        except StoreUnavailable:
            self._set(False)
            raise
        if proves_up:
            self._set(True)
        return result

    def mark_down(self) -> None:
        """A call did not come back in time (e.g. a commit waiting for a synchronous
        standby that is gone): the ledger counts as not answering until one does."""
        self._set(False)

    def _set(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            for listener in self._listeners:
                listener(up)

    def close(self) -> None:
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()
