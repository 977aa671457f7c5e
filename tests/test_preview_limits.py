"""A text over a platform's limit is refused at preview and at send, naming the
channel, the count and the limit — never cut off, never posted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from broadcaster import lengths
from broadcaster.models import Mode
from broadcaster.templates import RenderContext, load_templates, render
from tests.support import (
    TEMPLATES,
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    webhook_channel,
    write_config,
)

X_ENV = {"X_CONSUMER_KEY": "sandbox-consumer", "X_CONSUMER_SECRET": "sandbox-consumer-secret",
         "X_ACCESS_TOKEN": "42-sandbox-access", "X_ACCESS_SECRET": "sandbox-access-secret"}


def _x_channel(sandbox: str) -> str:
    return f"""
[[channel]]
name = "x"
kind = "x"
consumer_key = {{ env = "X_CONSUMER_KEY" }}
consumer_secret = {{ env = "X_CONSUMER_SECRET" }}
access_token = {{ env = "X_ACCESS_TOKEN" }}
access_token_secret = {{ env = "X_ACCESS_SECRET" }}
api_base = "{sandbox}/x"
"""


def _values_weighing(target: int) -> dict[str, str]:
    """Evacuation values whose X text (the `short`) weighs exactly ``target``: an area
    of letters and emoji (emoji weigh 2 on X), within its 80 characters."""
    template = load_templates(TEMPLATES).get("evakuierung")
    base = {"reason": "Gasaustritt", "until": "09:00", "shelter": "Rhein-Mosel-Halle"}
    context = RenderContext(city="Stadt Koblenz", info_url="https://www.koblenz.de/warnung",
                            alert_id="01KAZZZZZZZZZZZZZZZZZZZZZZ",
                            sent_at=datetime(2026, 11, 23, tzinfo=UTC), mode=Mode.LIVE,
                            exercise_banner="+++ ÜBUNG +++")
    def weight(area: str) -> int:
        short = render(template, {**base, "area": area}, context, "de").short
        return lengths.x_weighted_length(short)

    # The area appears once: each letter adds 1, each emoji 2.
    needed = target - (weight("A") - 1)
    emoji = max(0, needed - 80)
    area = "🌊" * emoji + "A" * (needed - 2 * emoji)
    assert len(area) <= 80 and weight(area) == target
    return {**base, "area": area}


def test_an_x_text_of_281_is_refused_at_preview_and_send(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    port = free_port()
    config = write_config(tmp_path, _x_channel(live_sandbox.url)
                          + webhook_channel("leitstelle", live_sandbox.url), port=port)
    token = add_user(config, "duty-1", "officer")
    daemon = Daemon(config, port, env=X_ENV)
    daemons.append(daemon.start())
    body = {"template": "evakuierung", "variables": _values_weighing(281), "mode": "live"}

    status, preview = daemon.api("POST", "/api/v1/alerts/preview", body, token)
    assert status == 200
    x = next(c for c in preview["channels"] if c["channel"] == "x")
    assert (x["length"], x["limit"]) == (281, 280)
    assert "281 characters, x allows 280" in x["problems"][0]
    assert "nothing is cut off" in preview["problems"]["channels.x"]

    status, refused = daemon.api("POST", "/api/v1/alerts", body, token)
    assert status == 422
    assert "281 characters" in refused["error"]["details"]["channels.x"]
    assert live_sandbox.posts() == []

    fitting = {**body, "variables": _values_weighing(280)}
    status, _ = daemon.api("POST", "/api/v1/alerts/preview", fitting, token)
    assert status == 200
    status, accepted = daemon.api("POST", "/api/v1/alerts", fitting, token)
    assert status == 201, accepted
