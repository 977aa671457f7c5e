"""The audit trail: every action recorded with actor and address, hash-chained, and a
row changed or deleted by hand is found and named."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from broadcaster.models import AlertKind, Mode, Severity, new_id, utcnow
from broadcaster.store import AuditEntry, Ledger, NewAlert, NewDelivery
from tests.support import (
    TEMPLATES,
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

EVACUATION = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
              "shelter": "Rhein-Mosel-Halle"}


def test_every_action_is_audited_with_actor_and_address(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    port = free_port()
    config = write_config(tmp_path, webhook_channel("leitstelle", live_sandbox.url)
                          + webhook_channel("partner", live_sandbox.url,
                                            extra='on_unknown = "hold"'),
                          templates=templates, port=port)
    officer = add_user(config, "duty-1", "officer")
    assert run_cli("users", "disable", "duty-1", "--config", str(config)).returncode == 0
    second = add_user(config, "duty-2", "officer")
    approved = run_cli("templates", "approve", "probealarm", "--by", "Pressestelle M. Weber",
                       "--config", str(config))
    assert approved.returncode == 0, approved.stdout + approved.stderr
    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    assert daemon.api("GET", "/api/v1/alerts", token=officer)[0] == 401  # disabled
    live_sandbox.fault("webhook", "drop_after_receive", target="partner", count=1)
    _, alert = daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": EVACUATION, "mode": "live"}, second)

    def held() -> str | None:
        found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=second)[1]
        return next((d["id"] for d in found["deliveries"]
                     if d["channel"] == "partner" and d["state"] == "unknown"), None)
    delivery = wait_for(held, message="the partner delivery held")
    assert daemon.api("POST", f"/api/v1/deliveries/{delivery}/retry", token=second)[0] == 200
    assert daemon.api("POST", f"/api/v1/alerts/{alert['id']}/followups", {
        "kind": "allclear", "template": "entwarnung",
        "variables": {"subject": "Evakuierung Oberwerth"}}, second)[0] == 201
    daemon.stop()

    listing = run_cli("audit", "list", "--limit", "100", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    actions = ("user.add", "user.disable", "template.approve", "alert.send",
               "delivery.retry", "alert.allclear")
    rows = {action: line for line in listing.stdout.splitlines() for action in actions
            if f"  {action}  " in line}
    assert set(rows) == set(actions)
    assert "(command line)" in rows["user.disable"]
    assert "Pressestelle" in rows["template.approve"] and "(command line)" in rows[
        "template.approve"]
    for action in ("alert.send", "delivery.retry", "alert.allclear"):
        assert "duty-2" in rows[action] and "127.0.0.1" in rows[action]
    verified = run_cli("audit", "verify", "--config", str(config))
    assert verified.returncode == 0 and "intact" in verified.stdout


def _chain(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(tmp_path, "")
    for name in ("duty-1", "duty-2", "press-1", "it-1"):
        add_user(config, name, "officer")
    return config, tmp_path / "broadcaster.db"


def test_a_changed_row_is_named(tmp_path: Path) -> None:
    config, database = _chain(tmp_path)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    result = run_cli("audit", "verify", "--config", str(config))
    assert result.returncode == 1
    assert "audit row 2" in result.stdout and "does not match its hash" in result.stdout


def test_a_deleted_row_is_named(tmp_path: Path) -> None:
    config, database = _chain(tmp_path)
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM audit_events WHERE seq = 3")
    result = run_cli("audit", "verify", "--config", str(config))
    assert result.returncode == 1
    assert "audit row 3" in result.stdout and "deleted" in result.stdout


def test_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link(tmp_path: Path) -> None:
    from broadcaster import audit

    config, database = _chain(tmp_path)
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT seq, at, actor, address, action, subject, details, prev_hash "
                         "FROM audit_events WHERE seq = 2").fetchone()
        forged = audit.event_hash(row[7], row[0], row[1], "mallory", row[3], row[4], row[5],
                                  row[6])
        db.execute("UPDATE audit_events SET actor = 'mallory', hash = ? WHERE seq = 2",
                   (forged,))
    result = run_cli("audit", "verify", "--config", str(config))
    assert result.returncode == 1 and "audit row 3" in result.stdout


def test_an_idempotency_key_is_remembered_for_24_hours(ledger: Ledger) -> None:
    store = ledger
    day_ago = utcnow() - timedelta(hours=25)

    def alert(created_at: object, body: str) -> NewAlert:
        return NewAlert(
            id=new_id(), template="probealarm", template_sha256="0" * 64, variables={},
            mode=Mode.EXERCISE, kind=AlertKind.ALERT, severity=Severity.MINOR,
            references=None, created_by="duty-1", created_at=created_at,  # type: ignore[arg-type]
            idempotency_key="drill-1", request_hash=body,
            deliveries=(NewDelivery(new_id(), "a", "h", "t"),))

    entry = AuditEntry(actor="duty-1", action="alert.send")
    old = alert(day_ago, "body-a")
    assert store.accept_alert(old, entry) == (old.id, True)
    fresh = alert(utcnow(), "body-b")
    assert store.accept_alert(fresh, entry) == (fresh.id, True)  # older than 24 h: new
    repeat = replace(fresh, id=new_id())
    assert store.accept_alert(repeat, entry) == (fresh.id, False)  # within 24 h: the first
