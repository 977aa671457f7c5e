"""`broadcaster demo`: the whole system on one machine in a few seconds.

Starts a sandbox and the daemon (in this process) on a temporary database with a
demo configuration whose channels all point at the sandbox, sends one exercise
alert from the shipped templates, and prints the outcome per channel. Without
--once it keeps running and prints the URLs to look at.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from broadcaster import logs
from broadcaster.app import create_app
from broadcaster.auth import new_token, new_user_id
from broadcaster.cli.common import table
from broadcaster.config import PostgresDatabase, load_config
from broadcaster.models import utcnow
from broadcaster.sandbox.options import SandboxOptions
from broadcaster.sandbox.server import RunningSandbox, running_sandbox
from broadcaster.store import AuditEntry, User, open_ledger
from broadcaster.templates import load_templates

DEMO_TEMPLATE = "evakuierung"
FINAL = {"delivered", "failed", "unknown", "cancelled"}
DEADLINE_SECONDS = 60.0


def demo_config(sandbox: RunningSandbox, directory: Path, templates: Path) -> str:
    """A configuration whose channels all go to the sandbox, exercise only."""
    (directory / "webhook_secret").write_text(SandboxOptions().webhook_secret)
    (directory / "facebook_token").write_text("EAAGsandboxDemoPageToken")
    for name, value in (("x_consumer_key", "sandbox-demo-consumer-key"),
                        ("x_consumer_secret", SandboxOptions().x_consumer_secret),
                        ("x_access_token", "1610000000000000001-sandbox-demo-token"),
                        ("x_access_secret", SandboxOptions().x_access_secret)):
        (directory / name).write_text(value)
    (directory / "telegram_token").write_text("123456789:sandbox-demo-token")
    (directory / "mastodon_token").write_text("sandbox-demo-mastodon-token")
    return f"""
[service]
city = "Stadt Koblenz"
info_url = "https://www.koblenz.de/warnung"
listen = "127.0.0.1:0"
database = "{directory / 'demo.db'}"
templates = "{templates}"

[[channel]]
name = "leitstelle"
kind = "webhook"
exercise = true
url = "{sandbox.url}/webhook/leitstelle"
secret = {{ file = "webhook_secret" }}

[[channel]]
name = "radio"
kind = "webhook"
exercise = true
languages = ["de", "en"]
url = "{sandbox.url}/webhook/radio"
secret = {{ file = "webhook_secret" }}

[[channel]]
name = "facebook"
kind = "facebook"
exercise = true
page_id = "104000000000001"
token = {{ file = "facebook_token" }}
api_base = "{sandbox.url}/facebook"

[[channel]]
name = "x"
kind = "x"
exercise = true
consumer_key = {{ file = "x_consumer_key" }}
consumer_secret = {{ file = "x_consumer_secret" }}
access_token = {{ file = "x_access_token" }}
access_token_secret = {{ file = "x_access_secret" }}
api_base = "{sandbox.url}/x"

[[channel]]
name = "telegram"
kind = "telegram"
exercise = true
chat_id = "@stadt_warnung_uebung"
token = {{ file = "telegram_token" }}
api_base = "{sandbox.url}/telegram"

[[channel]]
name = "mastodon"
kind = "mastodon"
exercise = true
instance = "{sandbox.url}/mastodon"
token = {{ file = "mastodon_token" }}

[[channel]]
name = "email"
kind = "email"
exercise = true
host = "127.0.0.1"
port = {sandbox.smtp_port}
security = "none"
sender = "Stadt Koblenz <warnung@koblenz.example>"
recipients = ["presse@koblenz.example", "leitstelle@koblenz.example"]
"""


def _default_templates() -> Path:
    local = Path("templates")
    if local.is_dir():
        return local.resolve()
    return Path(__file__).resolve().parent.parent / "templates"


async def demo(once: bool, templates: Path | None = None) -> int:
    templates = (templates or _default_templates()).resolve()
    template = load_templates(templates).get(DEMO_TEMPLATE)
    logs.setup("text", [], level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="broadcaster-demo-") as folder:
        directory = Path(folder)
        async with running_sandbox(SandboxOptions(port=0, smtp_port=0)) as sandbox:
            config_path = directory / "channels.toml"
            config_path.write_text(demo_config(sandbox, directory, templates), encoding="utf-8")
            config = load_config(config_path)
            token = _demo_user(config.service.database)
            runner = web.AppRunner(create_app(config), access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                url = f"http://127.0.0.1:{runner.addresses[0][1]}"
                alert = await _send_and_follow(url, token, template.id,
                                               template.example_values())
                print(_outcome(alert, sandbox))
                delivered = alert["state"] == "delivered"
                if once:
                    return 0 if delivered else 1
                print(f"\nConsole:  {url}/console/  (sign in with the token below)"
                      f"\nSandbox:  {sandbox.url}/_sandbox/  (posts as each platform shows them)"
                      f"\nMetrics:  {url}/metrics"
                      f"\nAPI:      {url}/api/v1/openapi.json"
                      f"\nToken:    {token}"
                      "\n\nCtrl-C stops the demo.", flush=True)
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()
    return 0


def _demo_user(database: Path | PostgresDatabase) -> str:
    store = open_ledger(database)
    try:
        user_id = new_user_id()
        token, token_hash = new_token(user_id)
        store.add_user(
            User(id=user_id, name="demo-officer", role="admin", token_hash=token_hash,
                 password_hash=None, disabled=False, created_at=utcnow()),
            AuditEntry(actor="demo", action="user.add", subject="demo-officer"),
        )
        return token
    finally:
        store.close()


async def _send_and_follow(url: str, token: str, template: str,
                           values: dict[str, str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers) as session:
        body = {"template": template, "variables": values, "mode": "exercise"}
        async with session.post("/api/v1/alerts", json=body) as response:
            alert: dict[str, Any] = await response.json()
            if response.status != 201:
                print(f"the demo alert was refused: {alert}", file=sys.stderr)
                return alert
        print(f"Exercise alert {alert['id']} ({template}) accepted; delivering …", flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while loop.time() < deadline:
            async with session.get(f"/api/v1/alerts/{alert['id']}") as response:
                alert = await response.json()
            if all(d["state"] in FINAL for d in alert["deliveries"]):
                break
            await asyncio.sleep(0.1)
        return alert


def _outcome(alert: dict[str, Any], sandbox: RunningSandbox) -> str:
    if "deliveries" not in alert:
        return "no deliveries"
    received = {(p.extra.get("id"), p.target) for p in sandbox.state.posts}
    rows = [
        (d["channel"], d["state"], d["attempts"], d["remote_id"] or "",
         (d["error"] or "")[:60])
        for d in alert["deliveries"]
    ]
    summary = f"\n{len(received)} post(s) received by the sandbox; alert state: {alert['state']}"
    return "\n" + table(("channel", "state", "attempts", "remote id", "error"), rows) + summary
