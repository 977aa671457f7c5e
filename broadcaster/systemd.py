"""Talking to systemd: readiness, status, stopping and the watchdog (sd_notify).

The daemon runs as a ``Type=notify`` service. It tells systemd ``READY=1`` once
the ledger, configuration, templates and channels are loaded and the HTTP site
listens, ``STOPPING=1`` when it begins to shut down, and ``STATUS=…`` lines that
``systemctl status`` shows. With ``WatchdogSec=`` systemd passes
``$WATCHDOG_USEC``; a task on the event loop then sends ``WATCHDOG=1`` every half
of that interval, so a blocked event loop stops the pings and systemd restarts
the service.

Why no dependency (python-systemd, sdnotify): the protocol is one datagram of
``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path,
or an abstract socket when it starts with ``@``). That is a dozen lines of
standard library; python-systemd needs libsystemd headers and a compiler to
install into a virtualenv, and a third-party package would be one more thing to
audit and keep current for a feature this small. Without ``$NOTIFY_SOCKET``
(started by hand, in tests, in the demo) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

from broadcaster.logs import event

log = logging.getLogger("broadcaster.systemd")


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self._failed = False
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop on a full queue: a dropped ping is
            # harmless, the next one follows in WatchdogSec/2.
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True if systemd got it."""
        if self._socket is None or self.address is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as exc:
            if not self._failed:  # say it once, not every few seconds
                self._failed = True
                event(log, "systemd.notify_failed", logging.WARNING, error=str(exc),
                      socket=os.environ.get("NOTIFY_SOCKET", ""))
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as a sendto() address: a path, or an abstract name ('@' → NUL)."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # unset, or a form we do not speak (vsock: only for VMs' PID 1)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when
    systemd does not watch this process.

    ``$WATCHDOG_PID``, when set, must be this process: a child that inherited the
    environment must not keep its parent alive.
    """
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """Ping the watchdog from the event loop until cancelled.

    The pings come from the loop itself on purpose: when a handler blocks the loop,
    the pings stop and systemd restarts the daemon instead of leaving a service
    that is up but answers nothing.
    """
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
