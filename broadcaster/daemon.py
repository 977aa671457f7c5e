"""`broadcaster serve`: run the application until SIGTERM or SIGINT.

Start-up failures (another daemon on the database, a ledger that cannot be
opened, a port in use) end the process with a message naming the cause.

Under systemd (``Type=notify``) the daemon reports READY=1 once the ledger,
configuration, templates and channels are loaded and the site listens, pings the
watchdog from the event loop, and reports STOPPING=1 on shutdown.

A graceful stop (SIGTERM, SIGINT) closes the listening socket first, so nothing
new is accepted; requests under way get ``SHUTDOWN_GRACE`` seconds to answer;
then the dispatcher gives attempts in flight ``SHUTDOWN_GRACE`` seconds to
finish and cancels the rest, which stay `sending` in the ledger and are resolved
by the next start's recovery (queued again, or `unknown` where the channel
cannot deduplicate). Queued deliveries simply wait for the next start. The whole
stop is bounded by about twice SHUTDOWN_GRACE; the unit's TimeoutStopSec= is
well above that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiohttp import web

from broadcaster import lengths
from broadcaster.app import SHUTDOWN_GRACE, create_app
from broadcaster.config import Config
from broadcaster.errors import BroadcasterError, DatabaseUnreachable
from broadcaster.logs import Scrubber, event
from broadcaster.store import reach
from broadcaster.systemd import Notifier, keep_alive, watchdog_interval

log = logging.getLogger("broadcaster.daemon")


class ListenFailed(BroadcasterError):
    """The address in [service] listen cannot be bound."""


async def serve(config: Config, scrubber: Scrubber, notifier: Notifier | None = None,
                wait_for_database: bool = False) -> None:
    """Serve until asked to stop; raises BroadcasterError or OSError on start-up.

    ``wait_for_database``: a database server that does not answer yet (after a power
    cut the service may start first) is waited for instead of ending the start; one
    that answers and refuses the login still ends it at once."""
    notifier = notifier or Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # From the start: a stop requested during start-up is graceful too.
        loop.add_signal_handler(signum, stop.set)
    if wait_for_database and not await _database_answers(config, notifier, stop):
        notifier.close()
        return
    notifier.status("starting: opening the ledger, loading templates and channels")
    app = create_app(config, scrubber=scrubber)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_GRACE)
    try:
        await runner.setup()
    except BaseException as exc:
        notifier.status(f"failed to start: {scrubber.scrub(str(exc))}")
        notifier.close()
        raise
    watchdog: asyncio.Task[None] | None = None
    try:
        listen = config.service.listen
        site = web.TCPSite(runner, listen.host, listen.port)
        try:
            await site.start()
        except OSError as exc:
            notifier.status(f"failed to start: cannot listen on {listen}")
            raise ListenFailed(f"cannot listen on {listen}: {exc.strerror}") from None
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        event(log, "daemon.listening", url=url)
        if any(channel.kind == "x" for channel in config.enabled_channels()):
            # X's length tables take half a second to load: load them now, while
            # idle, rather than during the first alert's preview.
            loop.run_in_executor(None, lengths.warm_up)
        channels = len(config.enabled_channels())
        notifier.ready(f"serving {url} with {channels} channel(s)")
        interval = watchdog_interval()
        if interval is not None and notifier.enabled:
            watchdog = asyncio.create_task(keep_alive(notifier, interval), name="watchdog")
        await stop.wait()
        event(log, "daemon.stopping", grace=SHUTDOWN_GRACE)
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        notifier.stopping(f"stopping: deliveries in flight get {SHUTDOWN_GRACE:g} s, "
                          "queued ones wait for the next start")
        await runner.cleanup()
        notifier.close()
    event(log, "daemon.stopped")


DATABASE_RETRY_MAX = 10.0  # seconds between tries while waiting for the database


async def _database_answers(config: Config, notifier: Notifier, stop: asyncio.Event) -> bool:
    """Wait until the ledger's server answers; False when asked to stop meanwhile."""
    delay, said = 0.5, 0.0
    while True:
        try:
            await asyncio.to_thread(reach, config.service.database)
            if said:
                event(log, "daemon.database_answers")
            return True
        except DatabaseUnreachable as exc:
            if not exc.may_come_back:
                raise
            message = str(exc)  # names hosts and the reason, never the password
            notifier.status(f"waiting for the database: {message}")
            if time.monotonic() - said > 60:  # once a minute, not at every try
                event(log, "daemon.waiting_for_database", logging.WARNING, error=message)
                said = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
                return False
        delay = min(delay * 2, DATABASE_RETRY_MAX)
