"""Group commit: ledger calls that arrive together run as one transaction.

When an alert goes to a hundred channels, a hundred lanes wake at once and each
wants to mark its delivery `sending`; a hundred attempts end at about the same
time. One transaction for all of them instead of a hundred in a row keeps the
ledger thread from becoming the bottleneck of the fan-out. Every caller still
gets its own result, or the transaction's exception, before it goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from broadcaster.store import Database

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Collects items submitted in the same moment and runs ``batch`` on all of them."""

    def __init__(self, db: Database, batch: Callable[[Sequence[Item]], Sequence[Result]]) -> None:
        self.db = db
        self.batch = batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            # After the callbacks already scheduled for this moment: the other lanes
            # woken together submit before the batch is cut.
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self.db.run(self.batch, [item for item, _ in batch])
                except Exception as exc:  # every waiter gets the transaction's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flushing = False
