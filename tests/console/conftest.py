"""The console under test: a real daemon subprocess with exercise and live channels on
the sandbox, the two-person rule for live alerts, and people with passwords."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.console.client import Client
from tests.support import (
    TEMPLATES,
    Daemon,
    SandboxThread,
    free_port,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

PASSWORD = "correct-horse-battery"
TELEGRAM_TOKEN = "123456789:console-test-telegram-token-s3cr3t"
MASTODON_TOKEN = "console-test-mastodon-token-s3cr3t"
USERS = {"duty-1": "officer", "duty-2": "officer", "press-1": "viewer", "it-1": "admin"}


def channel_blocks(sandbox_url: str) -> str:
    """A live webhook, and three exercise channels of different kinds."""
    return (webhook_channel("leitstelle", sandbox_url)
            + webhook_channel("uebung", sandbox_url, exercise=True) + f"""
[[channel]]
name = "telegram-uebung"
kind = "telegram"
chat_id = "@stadt_uebung"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{sandbox_url}/telegram"
exercise = true

[[channel]]
name = "mastodon-uebung"
kind = "mastodon"
instance = "{sandbox_url}/mastodon"
token = {{ env = "MASTODON_TOKEN" }}
exercise = true
""")


ENV = {"TELEGRAM_TOKEN": TELEGRAM_TOKEN, "MASTODON_TOKEN": MASTODON_TOKEN}


def add_person(config: Path, name: str, role: str, password: str = PASSWORD) -> str:
    """`broadcaster users add NAME --role R --password-stdin`; returns the API token."""
    result = run_cli("users", "add", name, "--role", role, "--password-stdin",
                     "--config", str(config), input=password + "\n", env=ENV)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Stack:
    daemon: Daemon
    sandbox: SandboxThread
    config: Path
    templates: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.daemon.url

    def client(self) -> Client:
        return Client(self.daemon.url)

    def signed_in(self, name: str, password: str = PASSWORD) -> Client:
        client = self.client()
        page = client.login(name, password)
        assert page.status == 303, page.text
        return client

    def api(self, method: str, path: str, body: Any = None, user: str = "duty-1"
            ) -> tuple[int, Any]:
        return self.daemon.api(method, path, body, token=self.tokens[user])

    def alert(self, alert_id: str) -> dict[str, Any]:
        status, alert = self.api("GET", f"/api/v1/alerts/{alert_id}")
        assert status == 200, alert
        return dict(alert)

    def settled(self, alert_id: str, timeout: float = 15) -> dict[str, Any]:
        return wait_for(lambda: (a := self.alert(alert_id))["state"] not in (
            "delivering", "awaiting_approval", "scheduled") and a, timeout,
            message=f"alert {alert_id} to settle")

    def restart(self) -> None:
        self.daemon.stop()
        self.daemon = Daemon(self.config, self.daemon.port, env=ENV).start()

    def audit(self) -> str:
        result = run_cli("audit", "list", "--limit", "500", "--config", str(self.config),
                         env=ENV)
        assert result.returncode == 0, result.stderr
        return result.stdout


def start_stack(directory: Path, sandbox: SandboxThread, service: str = "") -> Stack:
    templates = directory / "templates"
    shutil.copytree(TEMPLATES, templates)
    port = free_port()
    config = write_config(directory, channel_blocks(sandbox.url), templates=templates,
                          port=port, service=service)
    tokens = {name: add_person(config, name, role) for name, role in USERS.items()}
    daemon = Daemon(config, port, env=ENV).start()
    return Stack(daemon, sandbox, config, templates, tokens)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One daemon per test module, with the two-person rule for live alerts."""
    sandbox = SandboxThread().start()
    running = start_stack(tmp_path_factory.mktemp("console"), sandbox,
                          service='require_second_officer = ["live"]')
    try:
        yield running
    finally:
        running.daemon.stop()
        sandbox.stop()
