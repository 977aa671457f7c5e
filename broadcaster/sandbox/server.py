"""Running a sandbox: the HTTP stand-ins and the SMTP receiver, started and stopped
together. Used by `broadcaster sandbox`, `broadcaster demo` and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from broadcaster.sandbox.app import create_sandbox_app
from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.smtp import SmtpReceiver
from broadcaster.sandbox.state import SandboxState


@dataclass
class RunningSandbox:
    state: SandboxState
    url: str  # base URL of the HTTP stand-ins, without a trailing slash
    port: int
    smtp_port: int | None  # plain SMTP offering STARTTLS; None when SMTP is off
    smtp_tls_port: int | None = None  # implicit TLS (SMTPS)
    smtp_ca_file: Path | None = None  # PEM of the CA that signed the SMTP certificate


@asynccontextmanager
async def running_sandbox(options: SandboxOptions) -> AsyncIterator[RunningSandbox]:
    """Start the sandbox on the options' address (port 0 picks a free one)."""
    state = SandboxState()
    app = create_sandbox_app(options, state)
    # A hung or dropped request must end when its client gives up.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    smtp = SmtpReceiver(state, options.host) if options.smtp_port is not None else None
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        port = runner.addresses[0][1]
        if smtp is not None:
            await smtp.start(options.smtp_port or 0)
        yield RunningSandbox(
            state=state, url=f"http://{options.host}:{port}", port=port,
            smtp_port=smtp.port if smtp else None, smtp_tls_port=smtp.tls_port if smtp else None,
            smtp_ca_file=smtp.ca_file if smtp else None,
        )
    finally:
        if smtp is not None:
            await smtp.stop()
        await runner.cleanup()


async def serve_forever(options: SandboxOptions) -> None:
    async with running_sandbox(options) as sandbox:
        print(f"sandbox listening on {sandbox.url} (viewer: {sandbox.url}/_sandbox/)", flush=True)
        if sandbox.smtp_port is not None:
            print(f"SMTP on {options.host}:{sandbox.smtp_port} (plain or STARTTLS), implicit "
                  f"TLS on port {sandbox.smtp_tls_port}; CA: {sandbox.smtp_ca_file}", flush=True)
        await asyncio.Event().wait()
