"""LISTEN for work that other processes announce on the PostgreSQL ledger.

An accept, a retry, a released hold or a fired schedule commits a NOTIFY naming
the channels with new work (``PostgresLedger._announce``); this loop wakes those
lanes at once, whichever process committed it. It reconnects by itself after a
restart or failover and then wakes every lane, since announcements made while it
was away are lost. Polling stays only as the lanes' safety net.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import psycopg

from broadcaster.logs import event
from broadcaster.store.postgres import WORK_CHANNEL, Connection, describe

log = logging.getLogger("broadcaster.store.listener")

Wake = Callable[[Sequence[str] | None], None]
IDLE_CHECK = 30.0  # seconds without a notification before the connection is probed


async def listen_for_work(connection: Connection, wake: Wake) -> None:
    """Wake lanes on every announcement, until cancelled."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    connection.uri, autocommit=True, **connection.kwargs()) as listening:
                await listening.execute(f"LISTEN {WORK_CHANNEL}")
                event(log, "ledger.listening", channel=WORK_CHANNEL)
                wake(None)  # whatever was announced while nobody listened
                delay = 0.5
                while True:
                    async for note in listening.notifies(timeout=IDLE_CHECK):
                        wake(None if note.payload == "*" else note.payload.split(","))
                    await listening.execute("SELECT 1")  # still there?
        except psycopg.Error as exc:
            event(log, "ledger.listen_lost", logging.WARNING, error=describe(exc),
                  retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
