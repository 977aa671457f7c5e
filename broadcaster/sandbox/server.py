"""Running a sandbox: the HTTP stand-ins and the SMTP receiver, started and stopped
together. Used by `broadcaster sandbox`, `broadcaster demo` and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from broadcaster.sandbox.app import SandboxOptions, create_sandbox_app
from broadcaster.sandbox.state import SandboxState


@dataclass
class RunningSandbox:
    state: SandboxState
    url: str  # base URL of the HTTP stand-ins, without a trailing slash
    port: int
    smtp_port: int | None


@asynccontextmanager
async def running_sandbox(options: SandboxOptions) -> AsyncIterator[RunningSandbox]:
    """Start the sandbox on the options' address (port 0 picks a free one)."""
    state = SandboxState()
    app = create_sandbox_app(options, state)
    # A hung or dropped request must end when its client gives up.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningSandbox(state=state, url=f"http://{options.host}:{port}", port=port,
                             smtp_port=None)
    finally:
        await runner.cleanup()


async def serve_forever(options: SandboxOptions) -> None:
    async with running_sandbox(options) as sandbox:
        print(f"sandbox listening on {sandbox.url} (viewer: {sandbox.url}/_sandbox/)", flush=True)
        await asyncio.Event().wait()
