"""POST/GET /api/v1/alerts through the real daemon: good requests and every bad one."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster.auth import split_token
from tests.support import (
    TEMPLATES,
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    http,
    wait_for,
    webhook_channel,
    write_config,
)

EVACUATION = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
              "shelter": "Rhein-Mosel-Halle"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Stack:
    daemon: Daemon
    sandbox: SandboxThread
    officer: str
    viewer: str
    templates: Path

    def post(self, body: object, token: str | None = None, **kwargs: object
             ) -> tuple[int, dict]:  # type: ignore[type-arg]
        return self.daemon.api("POST", "/api/v1/alerts", body,
                               token if token is not None else self.officer, **kwargs)

    def alert(self, alert_id: str) -> dict:  # type: ignore[type-arg]
        return self.daemon.api("GET", f"/api/v1/alerts/{alert_id}", token=self.viewer)[1]

    def settled(self, alert_id: str) -> dict:  # type: ignore[type-arg]
        return wait_for(lambda: (a := self.alert(alert_id))["state"] not in (
            "delivering",) and a, message="the alert to settle")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          module_ledger_database: Path | str) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("api")
    templates = directory / "templates"
    shutil.copytree(TEMPLATES, templates)
    # A draft (never approved) and a changed-after-approval template.
    shutil.copy(templates / "evakuierung.toml", templates / "entwurf.toml")
    changed = templates / "unwetter.toml"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    sandbox = SandboxThread().start()
    port = free_port()
    channels = (webhook_channel("leitstelle", sandbox.url)
                + webhook_channel("radio", sandbox.url)
                + webhook_channel("uebung", sandbox.url, exercise=True))
    config = write_config(directory, channels, templates=templates, port=port,
                          database=module_ledger_database)
    officer = add_user(config, "duty-1", "officer")
    viewer = add_user(config, "press-1", "viewer")
    daemon = Daemon(config, port).start()
    try:
        yield Stack(daemon, sandbox, officer, viewer, templates)
    finally:
        daemon.stop()
        sandbox.stop()


def live(template: str = "evakuierung", **extra: object) -> dict:  # type: ignore[type-arg]
    return {"template": template, "variables": dict(EVACUATION), "mode": "live", **extra}


def test_accepted_alert_is_answered_with_its_deliveries(stack: Stack) -> None:
    status, alert = stack.post(live())
    assert status == 201
    assert alert["state"] in ("delivering", "delivered")
    assert alert["mode"] == "live" and alert["kind"] == "alert"
    assert alert["created_by"] == "duty-1"
    assert ISO_MS.match(alert["created_at"])
    assert {d["channel"] for d in alert["deliveries"]} == {"leitstelle", "radio"}
    for delivery in alert["deliveries"]:
        assert set(delivery) >= {"id", "channel", "state", "attempts", "text", "remote_id",
                                 "url", "error", "delivered_at"}
        assert "Oberwerth" in delivery["text"]
    done = stack.settled(alert["id"])
    assert done["state"] == "delivered"
    assert all(ISO_MS.match(d["delivered_at"]) for d in done["deliveries"])


def test_alerts_are_listed_newest_first_with_paging(stack: Stack) -> None:
    ids = [stack.post(live())[1]["id"] for _ in range(3)]
    status, page = stack.daemon.api("GET", "/api/v1/alerts?limit=2", token=stack.viewer)
    assert status == 200
    assert [a["id"] for a in page["alerts"]] == ids[::-1][:2]
    status, rest = stack.daemon.api("GET", f"/api/v1/alerts?limit=2&before={page['next']}",
                                    token=stack.viewer)
    assert rest["alerts"][0]["id"] == ids[0]


def test_exercise_goes_only_to_exercise_channels_with_the_banner(stack: Stack) -> None:
    status, alert = stack.post(live(mode="exercise"))
    assert status == 201
    assert [d["channel"] for d in alert["deliveries"]] == ["uebung"]
    assert alert["deliveries"][0]["text"].startswith("+++ ÜBUNG +++")
    stack.settled(alert["id"])
    received = [p for p in stack.sandbox.posts("webhook") if p["extra"]["id"] == alert["id"]]
    assert [p["target"] for p in received] == ["uebung"]
    assert received[0]["extra"]["mode"] == "exercise"


def test_live_alert_never_goes_to_an_exercise_channel(stack: Stack) -> None:
    status, error = stack.post(live(channels=["uebung"]))
    assert status == 422
    assert "exercise channel" in error["error"]["details"]["channels"]


def test_body_that_is_not_json_is_refused(stack: Stack) -> None:
    status, error = stack.post(None, raw=b"{not json")
    assert status == 400
    assert error["error"]["code"] == "bad_request"


def test_body_over_64_kib_is_refused(stack: Stack) -> None:
    status, error = stack.post(None, raw=b'{"template": "' + b"x" * (65 * 1024) + b'"}')
    assert status == 413
    assert error["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("token", [None, "", "bc_nobody_wrong", "not-even-a-token"])
def test_missing_or_wrong_token_is_401(stack: Stack, token: str | None) -> None:
    status, error = http("POST", stack.daemon.url + "/api/v1/alerts", live(), token)
    assert status == 401
    assert error["error"]["code"] == "unauthorized"


def test_right_user_with_a_forged_secret_is_401(stack: Stack) -> None:
    parts = split_token(stack.officer)
    assert parts is not None
    status, _ = stack.post(live(), token=f"bc_{parts[0]}_forged")
    assert status == 401


def test_viewer_cannot_send(stack: Stack) -> None:
    status, error = stack.post(live(), token=stack.viewer)
    assert status == 403
    assert "officer" in error["error"]["message"]


def test_unknown_template_is_404(stack: Stack) -> None:
    for template in ("gibtesnicht", "../../etc/passwd"):
        status, error = stack.post(live(template))
        assert status == 404
        assert "unknown template" in error["error"]["message"]


def test_invalid_variables_are_named_each(stack: Stack) -> None:
    body = live()
    body["variables"] = {**EVACUATION, "until": "25:00", "shelter": "Turnhalle",
                         "extra": "x"}
    del body["variables"]["area"]
    status, error = stack.post(body)
    assert status == 422
    details = error["error"]["details"]
    assert set(details) >= {"variables.until", "variables.shelter", "variables.area",
                            "variables.extra"}
    assert "25:00" in details["variables.until"]


def test_unknown_channel_is_422(stack: Stack) -> None:
    status, error = stack.post(live(channels=["leitstelle", "tiktok"]))
    assert status == 422
    assert "tiktok" in error["error"]["details"]["channels"]


@pytest.mark.parametrize("template,state", [("entwurf", "not approved"),
                                            ("unwetter", "changed, not approved")])
def test_live_alert_needs_an_approved_unchanged_template(stack: Stack, template: str,
                                                         state: str) -> None:
    variables = {"hazard": "Orkanböen", "until": "18:00"} if template == "unwetter" else EVACUATION
    status, error = stack.post({"template": template, "variables": variables, "mode": "live"})
    assert status == 422
    assert state in error["error"]["details"]["template"]
    # An exercise may use the draft.
    status, _ = stack.post({"template": template, "variables": variables, "mode": "exercise"})
    assert status == 201


@pytest.mark.parametrize("mode", ["test", "LIVE", None, 1])
def test_mode_must_be_live_or_exercise(stack: Stack, mode: object) -> None:
    body = live()
    if mode is None:
        del body["mode"]
    else:
        body["mode"] = mode
    status, error = stack.post(body)
    assert status == 422
    assert "mode" in error["error"]["details"]


def test_nothing_is_stored_for_a_refused_request(stack: Stack) -> None:
    before = stack.daemon.api("GET", "/api/v1/alerts?limit=500", token=stack.viewer)[1]
    stack.post(live(channels=["tiktok"]))
    stack.post({"template": "evakuierung", "variables": {}, "mode": "live"})
    after = stack.daemon.api("GET", "/api/v1/alerts?limit=500", token=stack.viewer)[1]
    assert len(after["alerts"]) == len(before["alerts"])


def test_unknown_alert_is_404(stack: Stack) -> None:
    status, error = stack.daemon.api("GET", "/api/v1/alerts/01NOSUCHALERT", token=stack.viewer)
    assert status == 404
    assert error["error"]["code"] == "not_found"


def test_health_endpoints_need_no_token(stack: Stack) -> None:
    assert stack.daemon.api("GET", "/healthz")[0] == 200
    status, ready = stack.daemon.api("GET", "/readyz")
    assert status == 200 and ready["status"] == "ready"
