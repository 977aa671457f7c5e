"""`broadcaster serve`: run the application until SIGTERM or SIGINT.

Start-up failures (another daemon on the database, a ledger that cannot be
opened, a port in use) end the process with a message naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from broadcaster.app import create_app
from broadcaster.config import Config
from broadcaster.logs import Scrubber, event

log = logging.getLogger("broadcaster.daemon")


async def serve(config: Config, scrubber: Scrubber) -> None:
    """Serve until asked to stop; raises BroadcasterError or OSError on start-up."""
    app = create_app(config, scrubber=scrubber)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        listen = config.service.listen
        site = web.TCPSite(runner, listen.host, listen.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        event(log, "daemon.listening", url=f"http://{host}:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        event(log, "daemon.stopping")
    finally:
        await runner.cleanup()
