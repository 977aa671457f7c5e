"""Upgrades: ledgers written by earlier releases — made by those releases' own code,
see tests/data/README.md — open with today's SqliteLedger, migrate forward to the current
schema, keep every alert, delivery and user, keep an audit chain that verifies, and
are served by the daemon, which also delivers what they had left queued."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from broadcaster.store.schema_sqlite import SCHEMA_VERSION
from broadcaster.store.sqlite import SqliteLedger
from broadcaster.templates import load_templates
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

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = sorted(DATA.glob("ledger-schema*.db"))
FINAL = ("delivered", "failed", "unknown", "cancelled")


def test_the_first_released_schema_is_among_the_fixtures() -> None:
    versions = {json.loads(f.with_suffix(".json").read_text())["schema_version"]
                for f in FIXTURES}
    assert 1 in versions


@pytest.fixture(params=FIXTURES, ids=lambda path: path.stem)
def old_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of a fixture (never the committed file) and its manifest."""
    source: Path = request.param
    copy = tmp_path / "broadcaster.db"
    shutil.copyfile(source, copy)
    manifest = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))
    with sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == manifest["schema_version"]
    return copy, manifest


def test_store_migrates_forward_and_keeps_everything(
        old_ledger: tuple[Path, dict[str, Any]]) -> None:
    path, manifest = old_ledger
    store = SqliteLedger(path)
    try:
        assert store.schema_version == SCHEMA_VERSION
        alerts = store.list_alerts(limit=1000)
        assert sorted(a.id for a in alerts) == manifest["alerts"]
        deliveries = {d.id: d for a in alerts for d in a.deliveries}
        assert {i: d.state.value for i, d in deliveries.items()} == manifest["deliveries"]
        # receipts, texts and attempts came along: a follow-up can still thread
        for delivery in deliveries.values():
            assert delivery.text
            if delivery.state.value == "delivered":
                assert delivery.receipt is not None and delivery.receipt.remote_id
        assert sum(len(store.attempts(i)) for i in deliveries) == manifest["attempts"]
        assert [u.name for u in store.list_users()] == manifest["users"]
        assert len(store.audit_events()) == manifest["audit_events"]
        assert store.verify_audit() is None
    finally:
        store.close()
    reopened = SqliteLedger(path)  # a second start finds nothing left to migrate
    try:
        assert reopened.schema_version == SCHEMA_VERSION
        assert len(reopened.list_alerts(limit=1000)) == len(manifest["alerts"])
    finally:
        reopened.close()


def _channels(url: str) -> str:
    return (webhook_channel("leitstelle", url)
            + webhook_channel("rundfunk", url, extra='on_unknown = "hold"')
            + webhook_channel("partner", url)
            + webhook_channel("verteiler", url)
            + webhook_channel("uebung", url, exercise=True))


def test_the_daemon_serves_an_upgraded_ledger_and_delivers_what_it_left_queued(
        old_ledger: tuple[Path, dict[str, Any]], tmp_path: Path,
        live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    path, manifest = old_ledger
    port = free_port()
    config = write_config(tmp_path, _channels(live_sandbox.url), port=port, database=path)
    verified = run_cli("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"intact: {manifest['audit_events']} event(s)" in verified.stdout

    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    viewer, officer = manifest["tokens"]["presse"], manifest["tokens"]["duty-1"]
    status, listed = daemon.api("GET", "/api/v1/alerts?limit=100", token=viewer)
    assert status == 200, listed  # the old release's tokens still work
    assert sorted(a["id"] for a in listed["alerts"]) == manifest["alerts"]
    queued = {i for i, state in manifest["deliveries"].items() if state == "queued"}
    assert queued

    def delivered_leftovers() -> bool:
        alerts = daemon.api("GET", "/api/v1/alerts?limit=100", token=viewer)[1]["alerts"]
        states = {d["id"]: d["state"] for a in alerts for d in a["deliveries"]}
        return all(states[i] == "delivered" for i in queued)

    wait_for(delivered_leftovers, timeout=20, message="the queued deliveries to go out")
    assert {p["target"] for p in live_sandbox.posts("webhook")} == {"verteiler"}

    drill = load_templates(TEMPLATES).get("probealarm").example_values()
    status, alert = daemon.api("POST", "/api/v1/alerts", {
        "template": "probealarm", "mode": "exercise", "variables": drill}, officer)
    assert status == 201, alert
    assert daemon.stop() == 0
    after = run_cli("audit", "verify", "--config", str(config))
    assert after.returncode == 0, after.stdout + after.stderr
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == \
            len(manifest["alerts"]) + 1
