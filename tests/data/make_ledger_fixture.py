"""Make a ledger fixture with an old release's own code (see tests/data/README.md).

    python tests/data/make_ledger_fixture.py COMMIT OUTPUT.db

Extracts COMMIT with ``git archive`` into a temporary folder and runs *that* code
(PYTHONPATH set to it, in subprocesses): its sandbox, its daemon, its CLI. Through
its HTTP API it creates users, live and exercise alerts, follow-ups and an
officer's retry, with deliveries ending delivered, failed, unknown and cancelled,
and some left queued; then stops the daemon with SIGTERM and copies the database.
Writes OUTPUT.json beside it: the commit, the schema version, the users' tokens
and what the ledger holds, for the upgrade test to compare against.

Only the standard library here: this script must not import today's broadcaster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "sandbox-webhook-secret"
# Channels and what they are for in the fixture (the upgrade test configures the
# same names): ok, a channel that cannot deduplicate (unknown), one with a wrong
# secret (failed), one slowed by its rate limit (queued, then cancelled or left
# queued), and an exercise-only one.
CHANNELS = """
[[channel]]
name = "leitstelle"
kind = "webhook"
url = "{url}/webhook/leitstelle"
secret = {{ env = "WEBHOOK_SECRET" }}

[[channel]]
name = "rundfunk"
kind = "webhook"
url = "{url}/webhook/rundfunk"
secret = {{ env = "WEBHOOK_SECRET" }}
on_unknown = "hold"
timeout = 2

[[channel]]
name = "partner"
kind = "webhook"
url = "{url}/webhook/partner"
secret = {{ env = "WRONG_SECRET" }}

[[channel]]
name = "verteiler"
kind = "webhook"
url = "{url}/webhook/verteiler"
secret = {{ env = "WEBHOOK_SECRET" }}
rate = 0.001

[[channel]]
name = "uebung"
kind = "webhook"
url = "{url}/webhook/uebung"
secret = {{ env = "WEBHOOK_SECRET" }}
exercise = true
"""
FINAL = {"delivered", "failed", "unknown", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (urllib.error.URLError, ConnectionError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Release:
    """An old commit's code in a folder, run as its own subprocesses."""

    def __init__(self, commit: str, folder: Path) -> None:
        self.folder = folder / "release"
        self.folder.mkdir()
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(self.folder)], input=archive, check=True)
        self.env = {**os.environ, "PYTHONPATH": str(self.folder),
                    "WEBHOOK_SECRET": WEBHOOK_SECRET, "WRONG_SECRET": "not-the-partner-secret"}

    def python(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, check=True, **kwargs)

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "broadcaster", *args], cwd=self.folder,
                                env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def make(commit: str, output: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-fixture-") as temporary:
        folder = Path(temporary)
        release = Release(commit, folder)
        where = release.python("-c", "import broadcaster; print(broadcaster.__file__)").stdout
        assert where.startswith(str(release.folder)), f"not the release's code: {where}"
        examples = json.loads(release.python("-c", (
            "import json, pathlib; from broadcaster.templates import load_templates; "
            "t = load_templates(pathlib.Path('templates')); "
            "print(json.dumps({i: t.get(i).example_values() for i in "
            "('evakuierung', 'hochwasser', 'lageupdate', 'entwarnung', 'korrektur', "
            "'probealarm')}))")).stdout)

        sandbox_port, smtp_port, port = free_port(), free_port(), free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        daemon_url = f"http://127.0.0.1:{port}"
        database = folder / "broadcaster.db"
        config = folder / "channels.toml"
        config.write_text(f"""[service]
city = "Stadt Koblenz"
info_url = "https://www.koblenz.de/warnung"
listen = "127.0.0.1:{port}"
database = "{database}"
templates = "{release.folder / 'templates'}"
{CHANNELS.format(url=sandbox)}""", encoding="utf-8")

        sandbox_process = release.start("sandbox", "--listen", f"127.0.0.1:{sandbox_port}",
                                        "--smtp-port", str(smtp_port), log=folder / "sandbox.log")
        daemon: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: http("GET", f"{sandbox}/_sandbox/posts")[0] == 200, "the sandbox")
            tokens = {}
            for name, role in (("duty-1", "officer"), ("lagezentrum", "admin"),
                               ("presse", "viewer")):
                out = release.python("-m", "broadcaster", "users", "add", name, "--role", role,
                                     "--config", str(config)).stdout
                tokens[name] = out.strip().splitlines()[-1]
            # The unknown: rundfunk's first request is read, then the connection drops.
            http("POST", f"{sandbox}/_sandbox/faults", {
                "platform": "webhook", "kind": "drop_after_receive", "target": "rundfunk",
                "count": 1})
            daemon = release.start("serve", "--config", str(config), log=folder / "daemon.log")
            wait_for(lambda: http("GET", f"{daemon_url}/readyz")[0] == 200, "the daemon")
            officer = tokens["duty-1"]

            def send(path: str, body: dict[str, Any]) -> dict[str, Any]:
                status, alert = http("POST", daemon_url + path, body, officer)
                assert status == 201, (status, alert)
                return dict(alert)

            def settled(alert_id: str, pending: frozenset[str] = frozenset()) -> dict[str, Any]:
                def check() -> dict[str, Any] | None:
                    alert = http("GET", f"{daemon_url}/api/v1/alerts/{alert_id}",
                                 token=officer)[1]
                    done = all(d["state"] in FINAL or d["channel"] in pending
                               for d in alert["deliveries"])
                    return alert if done else None
                return dict(wait_for(check, f"alert {alert_id} to settle"))

            evacuation = send("/api/v1/alerts", {"template": "evakuierung", "mode": "live",
                                                 "variables": examples["evakuierung"]})
            settled(evacuation["id"])
            update = send(f"/api/v1/alerts/{evacuation['id']}/followups", {
                "kind": "update", "template": "lageupdate",
                "variables": examples["lageupdate"]})
            settled(update["id"], frozenset({"verteiler"}))
            flood = send("/api/v1/alerts", {"template": "hochwasser", "mode": "live",
                                            "variables": examples["hochwasser"]})
            settled(flood["id"], frozenset({"verteiler"}))
            correction = send(f"/api/v1/alerts/{flood['id']}/followups", {
                "kind": "correction", "template": "korrektur",
                "variables": examples["korrektur"]})
            settled(correction["id"], frozenset({"verteiler"}))
            allclear = send(f"/api/v1/alerts/{evacuation['id']}/followups", {
                "kind": "allclear", "template": "entwarnung",
                "variables": examples["entwarnung"]})
            settled(allclear["id"], frozenset({"verteiler"}))
            drill = send("/api/v1/alerts", {"template": "probealarm", "mode": "exercise",
                                            "variables": examples["probealarm"]})
            settled(drill["id"])
            failed = next(d for d in evacuation["deliveries"] if d["channel"] == "partner")
            status, _ = http("POST", f"{daemon_url}/api/v1/deliveries/{failed['id']}/retry",
                             {}, officer)
            assert status == 200, status
            settled(evacuation["id"])
        finally:
            for process in (daemon, sandbox_process):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
        if daemon is not None and daemon.returncode != 0:
            raise SystemExit((folder / "daemon.log").read_text())

        for suffix in ("-wal", "-shm"):  # a clean stop checkpoints; make sure of it
            assert not Path(f"{database}{suffix}").exists(), f"{suffix} left behind"
        shutil.copyfile(database, output)
        with closing(sqlite3.connect(f"file:{output}?mode=ro&immutable=1", uri=True)) as db:
            manifest = {
                "commit": subprocess.run(["git", "rev-parse", commit], cwd=REPO, check=True,
                                         capture_output=True, text=True).stdout.strip(),
                "schema_version": db.execute("PRAGMA user_version").fetchone()[0],
                "tokens": tokens,
                "alerts": [r[0] for r in db.execute("SELECT id FROM alerts ORDER BY id")],
                "deliveries": {r[0]: r[1] for r in db.execute(
                    "SELECT id, state FROM deliveries ORDER BY id")},
                "users": [r[0] for r in db.execute("SELECT name FROM users ORDER BY name")],
                "audit_events": db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0],
                "attempts": db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0],
            }
        output.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n",
                                               encoding="utf-8")
        states: dict[str, int] = {}
        for state in manifest["deliveries"].values():
            states[state] = states.get(state, 0) + 1
        print(f"{output}: schema {manifest['schema_version']}, {len(manifest['alerts'])} "
              f"alerts, deliveries {states}, {manifest['audit_events']} audit events")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    make(sys.argv[1], Path(sys.argv[2]).resolve())
