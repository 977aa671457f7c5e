"""The processes a benchmark runs against: a sandbox and a daemon, each its own
process, configured with N webhook channels (w0 … wN-1) and, when those kinds are
registered, one channel per platform. ``Endpoint`` makes the same request a
channel makes, for the floor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from broadcaster.channels.webhook import sign, signing_key
from tests.postgres import ROLE_PASSWORD, PostgresServer
from tests.support import LEDGER_PASSWORD_ENV, free_port

WEBHOOK_SECRET = "sandbox-webhook-secret"
VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Endpoint:
    """One raw HTTP request equivalent to what a channel sends."""

    send: Callable[[aiohttp.ClientSession], Awaitable[None]]

    async def post(self, session: aiohttp.ClientSession) -> None:
        await self.send(session)


def webhook_endpoint(sandbox: str, name: str) -> Endpoint:
    key = signing_key(WEBHOOK_SECRET)

    async def send(session: aiohttp.ClientSession) -> None:
        body = json.dumps({"id": "floor", "text": "floor", "kind": "alert"}).encode()
        stamp = int(time.time())
        message_id = f"floor-{time.monotonic_ns()}"
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(key, message_id, stamp, body)}
        async with session.post(f"{sandbox}/webhook/{name}", data=body,
                                headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
    return Endpoint(send)


class BenchStack:
    """``postgres``: run on a database of this PostgreSQL server instead of SQLite."""

    def __init__(self, directory: Path, webhooks: int, latency_ms: int,
                 postgres: PostgresServer | None = None, service: str = "",
                 channel_extra: str = "", ledger: str | None = None,
                 platforms: bool = True, nodes: int = 1) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.with_platforms = platforms
        self.nodes = nodes  # several `serve` on one PostgreSQL ledger: node0 answers
        self.node_processes: list[subprocess.Popen[bytes]] = []
        self.postgres = postgres
        self.service = service
        self.channel_extra = channel_extra
        self.ledger = ledger  # [service] database lines of a prepared ledger
        self.webhooks = webhooks
        self.latency_ms = latency_ms
        self.sandbox_port = free_port()
        self.smtp_port = free_port()
        self.daemon_port = free_port()
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.url = f"http://127.0.0.1:{self.daemon_port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.token = ""
        self.platform_blocks: dict[str, str] = {}
        self.platform_endpoints: dict[str, Endpoint] = {}
        self.env = {**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                    LEDGER_PASSWORD_ENV: ROLE_PASSWORD}
        self.sent = 0

    # -- processes ------------------------------------------------------------

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        name = args[0] if args[0] != "serve" or len(self.node_processes) == 0 \
            else f"serve{len(self.node_processes)}"
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "broadcaster", *args], env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.processes.append(process)
        return process

    def _wait(self, url: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{url} did not come up; see {self.directory}")

    @property
    def backend(self) -> str:
        return "PostgreSQL" if self.postgres is not None else "SQLite"

    def database_lines(self, name: str) -> str:
        """``[service] database`` for a new ledger called ``name``."""
        if self.postgres is None:
            return f'database = "{self.directory / name}"'
        uri = self.postgres.uri(self.postgres.create_database())
        return f'database = "{uri}"\ndatabase_password = {{ env = "{LEDGER_PASSWORD_ENV}" }}'

    def config_text(self, listen_port: int, database: str, webhooks: int | None = None,
                    platforms: bool = True, ledger: str | None = None) -> str:
        count = self.webhooks if webhooks is None else webhooks
        blocks = [f"""
[[channel]]
name = "w{i}"
kind = "webhook"
url = "{self.sandbox}/webhook/w{i}"
secret = {{ env = "WEBHOOK_SECRET" }}
{self.channel_extra}
""" for i in range(count)]
        if platforms:
            blocks += list(self.platform_blocks.values())
        return f"""[service]
city = "Stadt Koblenz"
info_url = "https://www.koblenz.de/warnung"
listen = "127.0.0.1:{listen_port}"
{ledger or self.database_lines(database)}
templates = "{REPO / 'templates'}"
{self.service}
""" + "".join(blocks)

    async def __aenter__(self) -> BenchStack:
        from bench.platforms import platform_channels

        self._spawn("sandbox", "--listen", f"127.0.0.1:{self.sandbox_port}",
                    "--smtp-port", str(self.smtp_port))
        self._wait(f"{self.sandbox}/_sandbox/posts")
        if self.with_platforms:
            self.platform_blocks, self.platform_endpoints, extra_env = platform_channels(
                self.sandbox, self.smtp_port, self.directory)
            self.env.update(extra_env)
        config = self.directory / "channels.toml"
        config.write_text(self.config_text(self.daemon_port, "bench.db", ledger=self.ledger),
                          encoding="utf-8")
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "broadcaster", "users", "add", "bench", "--role", "officer",
             "--config", str(config)], capture_output=True, text=True, env=self.env, cwd=REPO,
            check=True)
        self.token = result.stdout.strip().splitlines()[-1]
        text = config.read_text(encoding="utf-8")
        for number in range(self.nodes):
            port = self.daemon_port if number == 0 else free_port()
            node_config = self.directory / f"node{number}.toml"
            node_config.write_text(text.replace(f"127.0.0.1:{self.daemon_port}",
                                                f"127.0.0.1:{port}"), encoding="utf-8")
            self.node_processes.append(
                self._spawn("serve", "--node", f"node{number}", "--config", str(node_config)))
            self._wait(f"http://127.0.0.1:{port}/readyz")
        self.clear_faults(latency_ms=self.latency_ms)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    def start_config(self, webhooks: int, platforms: bool) -> tuple[Path, dict[str, str], str]:
        """A fresh config (own port and database) for the start-up measurement."""
        port = free_port()
        name = f"start-{webhooks}-{platforms}"
        path = self.directory / f"{name}.toml"
        path.write_text(self.config_text(port, f"{name}.db", webhooks, platforms),
                        encoding="utf-8")
        return path, dict(self.env), f"http://127.0.0.1:{port}"

    # -- sandbox --------------------------------------------------------------

    def _sandbox(self, method: str, path: str, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.sandbox + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5):
            pass

    def sandbox_posts(self) -> int:
        """How many posts the sandbox has received."""
        with urllib.request.urlopen(self.sandbox + "/_sandbox/posts", timeout=10) as answer:
            return len(json.loads(answer.read()))

    def fault(self, fault: dict[str, Any]) -> None:
        self._sandbox("POST", "/_sandbox/faults", fault)

    def clear_faults(self, latency_ms: int) -> None:
        """Remove every fault and give every platform the endpoint latency again."""
        self._sandbox("DELETE", "/_sandbox/faults")
        self._sandbox("DELETE", "/_sandbox/posts")
        if latency_ms:
            for platform in ("webhook", *self.platform_endpoints_platforms()):
                self.fault({"platform": platform, "kind": "latency", "value": latency_ms})

    def platform_endpoints_platforms(self) -> list[str]:
        from bench.platforms import PLATFORM_OF

        return sorted({PLATFORM_OF[name] for name in self.platform_endpoints})

    # -- daemon ---------------------------------------------------------------

    def endpoints(self, names: list[str]) -> list[Endpoint]:
        return [self.platform_endpoints.get(name) or webhook_endpoint(self.sandbox, name)
                for name in names]

    def platform_channels(self) -> list[str]:
        return [*self.platform_endpoints, "w0"]

    async def post_alert(self, session: aiohttp.ClientSession, channels: list[str]
                         ) -> dict[str, Any]:
        # Every alert reads differently: X and Facebook refuse a text seen before.
        self.sent += 1
        variables = {**VARIABLES, "area": f"Oberwerth, Abschnitt {self.sent}"}
        body = {"template": "evakuierung", "variables": variables, "mode": "live",
                "channels": channels}
        async with session.post(f"{self.url}/api/v1/alerts", json=body,
                                headers={"Authorization": f"Bearer {self.token}"}) as response:
            answer: dict[str, Any] = await response.json()
            if response.status != 201:
                raise RuntimeError(f"alert refused: {answer}")
            return answer

    async def get_alert(self, session: aiohttp.ClientSession, alert_id: str) -> dict[str, Any]:
        async with session.get(f"{self.url}/api/v1/alerts/{alert_id}",
                               headers={"Authorization": f"Bearer {self.token}"}) as response:
            answer: dict[str, Any] = await response.json()
            return answer
