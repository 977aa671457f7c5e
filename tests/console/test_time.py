"""The console and time: an alert that expired without an all-clear stands out, and a
scheduled alert shows when it goes out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.console.conftest import Stack, start_stack
from tests.support import SandboxThread, wait_for

FIRE = {"area": "Industriegebiet Rheinhafen", "direction": "Richtung Lützel"}


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sandbox = SandboxThread().start()
    running = start_stack(tmp_path_factory.mktemp("time"), sandbox)
    # A fire warning valid for two seconds (now a draft: exercises may use it).
    template = running.templates / "grossbrand.toml"
    text = template.read_text(encoding="utf-8")
    assert 'expires_after = "PT6H"' in text
    template.write_text(text.replace('expires_after = "PT6H"', 'expires_after = "PT2S"'),
                        encoding="utf-8")
    try:
        yield running
    finally:
        running.daemon.stop()
        sandbox.stop()


def test_an_expired_alert_without_allclear_is_shown_first_until_the_allclear(
        timed: Stack) -> None:
    status, alert = timed.api("POST", "/api/v1/alerts", {
        "template": "grossbrand", "variables": FIRE, "mode": "exercise"})
    assert status == 201, alert
    wait_for(lambda: timed.alert(alert["id"])["expired"], timeout=10, message="the expiry")
    client = timed.signed_in("press-1")
    dashboard = client.get("/console/")
    assert 'id="h-expired"' in dashboard.text
    assert f'/console/alerts/{alert["id"]}' in dashboard.text.split('id="h-expired"')[1].split(
        "</section>")[0]
    board = client.get(f"/console/alerts/{alert['id']}")
    assert 'id="expired"' in board.text and "keine Entwarnung" in board.text
    metrics = timed.daemon.api("GET", "/metrics")[1]
    assert "broadcaster_alerts_expired_without_allclear_total 1.0" in metrics

    status, _ = timed.api("POST", f"/api/v1/alerts/{alert['id']}/followups", {
        "kind": "allclear", "template": "entwarnung",
        "variables": {"subject": "Großbrand Rheinhafen"}})
    assert status == 201
    assert 'id="h-expired"' not in client.get("/console/").text
    assert 'id="expired"' not in client.get(f"/console/alerts/{alert['id']}").text


def test_a_scheduled_alert_shows_when_it_goes_out(timed: Stack) -> None:
    send_at = datetime.now(UTC) + timedelta(minutes=30)
    status, alert = timed.api("POST", "/api/v1/alerts", {
        "template": "grossbrand", "variables": FIRE, "mode": "exercise",
        "send_at": send_at.isoformat()})
    assert status == 201 and alert["state"] == "scheduled"
    client = timed.signed_in("duty-1")
    dashboard = client.get("/console/")
    scheduled = dashboard.text.split('id="h-scheduled"')[1].split("</section>")[0]
    assert f'/console/alerts/{alert["id"]}' in scheduled
    board = client.get(f"/console/alerts/{alert['id']}")
    assert 'id="scheduled"' in board.text and "Geplant für" in board.text
    assert 'id="withdraw-button"' in board.text
