"""Shared test support: configs, the daemon as a subprocess, condition waits.

Tests talk to real servers on 127.0.0.1 (the sandbox, aiosmtpd, the daemon); they
wait on conditions with a deadline, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
WEBHOOK_SECRET = "sandbox-webhook-secret"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LEDGER_PASSWORD_ENV = "LEDGER_PASSWORD"


def write_config(directory: Path, channels: str, *, service: str = "",
                 database: Path | str | None = None, templates: Path = TEMPLATES,
                 port: int | None = None) -> Path:
    """Write channels.toml with a [service] table and the given [[channel]] text.

    ``database``: a SQLite file (default: broadcaster.db in ``directory``) or a
    postgresql:// URI, whose password then comes from $LEDGER_PASSWORD."""
    database = database or directory / "broadcaster.db"
    password = ""
    if str(database).startswith("postgresql://"):
        password = f'database_password = {{ env = "{LEDGER_PASSWORD_ENV}" }}'
    port = port if port is not None else free_port()
    path = directory / "channels.toml"
    path.write_text(
        f"""[service]
city = "Stadt Koblenz"
info_url = "https://www.koblenz.de/warnung"
listen = "127.0.0.1:{port}"
database = "{database}"
{password}
templates = "{templates}"
{service}

{channels}
""", encoding="utf-8")
    return path


def webhook_channel(name: str, sandbox_url: str, *, exercise: bool = False,
                    extra: str = "") -> str:
    """A [[channel]] block for a sandbox webhook (secret from $WEBHOOK_SECRET)."""
    return f"""
[[channel]]
name = "{name}"
kind = "webhook"
url = "{sandbox_url}/webhook/{name}"
secret = {{ env = "WEBHOOK_SECRET" }}
exercise = {str(exercise).lower()}
{extra}
"""


def run_cli(*args: str, env: Mapping[str, str] | None = None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m broadcaster ARGS` and capture its output."""
    full_env = {**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "broadcaster", *args], capture_output=True, text=True,
        env=full_env, input=input, timeout=timeout, cwd=REPO,
    )


def add_user(config: Path, name: str, role: str) -> str:
    """Create a user with the CLI; the token is the last line it prints."""
    result = run_cli("users", "add", name, "--role", role, "--config", str(config))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll a condition until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


async def eventually(condition: Callable[[], Awaitable[T]], timeout: float = 10.0,
                     interval: float = 0.02, message: str = "condition") -> T:
    """Async wait_for."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body}")


def http(method: str, url: str, body: Any = None, token: str | None = None,
         headers: Mapping[str, str] | None = None, raw: bytes | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """A plain HTTP call; returns (status, parsed JSON or text), never raises on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


@dataclass
class Daemon:
    """`broadcaster serve` as a subprocess on a config file."""

    config: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 20.0) -> Daemon:
        self.log_path = self.config.parent / f"daemon-{int(time.time() * 1000)}.log"
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "serve", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET, **self.env},
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n"
                                     f"{self.output()}")
            try:
                return http("GET", self.url + "/readyz", timeout=2)[0] == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False
        wait_for(ready, timeout, interval=0.05, message="the daemon to be ready")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no cleanup at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            **kwargs: Any) -> tuple[int, Any]:
        return http(method, self.url + path, body, token, **kwargs)


class SandboxThread:
    """A sandbox on its own event loop in a thread, for tests that block (subprocess
    daemons, urllib). Inspect it over HTTP, as a person would."""

    def __init__(self, options: Any = None) -> None:
        import threading

        from broadcaster.sandbox.options import SandboxOptions

        self.options = options or SandboxOptions(port=0, smtp_port=0)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self.smtp_port: int | None = None
        self.running: Any = None
        self._thread = threading.Thread(target=self._run, name="sandbox", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        from broadcaster.sandbox.server import running_sandbox

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with running_sandbox(self.options) as sandbox:
                    self.running = sandbox
                    self.url = sandbox.url
                    self.smtp_port = sandbox.smtp_port
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise

        asyncio.run(main())

    def start(self) -> SandboxThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def posts(self, platform: str | None = None) -> list[dict[str, Any]]:
        query = f"?platform={platform}" if platform else ""
        status, posts = http("GET", f"{self.url}/_sandbox/posts{query}")
        assert status == 200
        return list(posts)

    def fault(self, platform: str, kind: str, target: str | None = None,
              value: float | None = None, count: int | None = None) -> None:
        body = {"platform": platform, "kind": kind, "target": target, "value": value,
                "count": count}
        status, answer = http("POST", f"{self.url}/_sandbox/faults", body)
        assert status == 201, answer

    def clear_faults(self) -> None:
        http("DELETE", f"{self.url}/_sandbox/faults")


async def start_channel(directory: Path, block: str, environ: Mapping[str, str] | None = None
                        ) -> Any:
    """Build and start the channel of one [[channel]] block, as the daemon would."""
    from broadcaster.channels import KINDS
    from broadcaster.config import load_config

    path = write_config(directory, block)
    config = load_config(path, environ={"WEBHOOK_SECRET": WEBHOOK_SECRET, **(environ or {})})
    channel_config = config.channels[0]
    channel = KINDS[channel_config.kind].create(channel_config)
    await channel.start()
    return channel


def outgoing(delivery_id: str = "01TESTDELIVERY000000000001", *, text: str = "Testtext",
             headline: str = "Überschrift", reply_to: Any = None, kind: str = "alert",
             attempt: int = 1) -> Any:
    """An Outgoing as the dispatcher builds it."""
    from datetime import UTC, datetime

    from broadcaster.models import AlertKind, Mode, Outgoing, Severity

    return Outgoing(
        delivery_id=delivery_id, alert_id="01TESTALERT0000000000000001", attempt=attempt,
        kind=AlertKind(kind), mode=Mode.LIVE, severity=Severity.SEVERE, headline=headline,
        text=text, references=None if reply_to is None else "01TESTALERT0000000000000000",
        reply_to=reply_to, created_at=datetime(2026, 11, 23, 3, 12, 9, tzinfo=UTC),
    )


def assert_secrets_stay_hidden(daemon: Daemon, token: str, secrets: Mapping[str, str]) -> str:
    """Look everywhere a person or a scraper can: every alert with its deliveries, the
    channels, /metrics, and — after stopping the daemon — its whole log. No secret may
    appear in any of them (compared without case: some platforms lower-case the URL
    they echo). Returns the log for further checks."""
    seen = {
        "alert listing": repr(daemon.api("GET", "/api/v1/alerts?limit=500", token=token)),
        "channels": repr(daemon.api("GET", "/api/v1/channels", token=token)),
        "metrics": str(http("GET", daemon.url + "/metrics")[1]),
    }
    daemon.stop()
    seen["log"] = daemon.output()
    for where, text in seen.items():
        for name, secret in secrets.items():
            assert secret.lower() not in text.lower(), f"{name} leaked into the {where}"
    return seen["log"]


@dataclass
class LiveAlert:
    """A daemon with a webhook beside one platform channel, and a live alert (the
    evacuation template with its examples) sent through it."""

    daemon: Daemon
    token: str
    alert: dict[str, Any]
    sent_at: float  # time.monotonic() just before the POST

    def current(self) -> dict[str, Any]:
        answer = self.daemon.api("GET", f"/api/v1/alerts/{self.alert['id']}", token=self.token)
        assert answer[0] == 200, answer
        return dict(answer[1])

    def delivery(self, channel: str) -> dict[str, Any]:
        return next(d for d in self.current()["deliveries"] if d["channel"] == channel)


def start_beside_webhook(directory: Path, sandbox: SandboxThread, block: str,
                         daemons: list[Daemon], env: Mapping[str, str] | None = None
                         ) -> tuple[Daemon, str]:
    """A daemon whose channels are the webhook "leitstelle" and ``block``; returns it
    (started) and an officer's token."""
    port = free_port()
    config = write_config(directory, webhook_channel("leitstelle", sandbox.url) + block,
                          port=port)
    token = add_user(config, "duty-1", "officer")
    daemon = Daemon(config, port, env=dict(env or {}))
    daemons.append(daemon.start())
    return daemon, token


def send_example(daemon: Daemon, token: str, template: str = "evakuierung") -> LiveAlert:
    """Send a live alert with the template's example values."""
    from broadcaster.templates import load_templates

    values = load_templates(TEMPLATES).get(template).example_values()
    sent_at = time.monotonic()
    status, alert = daemon.api("POST", "/api/v1/alerts", {
        "template": template, "variables": values, "mode": "live"}, token)
    assert status == 201, alert
    return LiveAlert(daemon, token, alert, sent_at)
