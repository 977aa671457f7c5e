"""`broadcaster serve`: run the application until SIGTERM or SIGINT.

Start-up failures (another daemon on the database, a ledger that cannot be
opened, a port in use) end the process with a message naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from broadcaster import lengths
from broadcaster.app import create_app
from broadcaster.config import Config
from broadcaster.errors import BroadcasterError
from broadcaster.logs import Scrubber, event

log = logging.getLogger("broadcaster.daemon")


class ListenFailed(BroadcasterError):
    """The address in [service] listen cannot be bound."""


async def serve(config: Config, scrubber: Scrubber) -> None:
    """Serve until asked to stop; raises BroadcasterError or OSError on start-up."""
    app = create_app(config, scrubber=scrubber)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        listen = config.service.listen
        site = web.TCPSite(runner, listen.host, listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenFailed(f"cannot listen on {listen}: {exc.strerror}") from None
        host, port = runner.addresses[0][:2]
        event(log, "daemon.listening", url=f"http://{host}:{port}")
        if any(channel.kind == "x" for channel in config.enabled_channels()):
            # X's length tables take half a second to load: load them now, while
            # idle, rather than during the first alert's preview.
            asyncio.get_running_loop().run_in_executor(None, lengths.warm_up)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        event(log, "daemon.stopping")
    finally:
        await runner.cleanup()
