"""docs/operations.md stays true: its links lead somewhere, the files it tells the
operator to copy exist, and the commands and options it uses are real."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO, run_cli

GUIDE = REPO / "docs" / "operations.md"


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_inside_the_guide_leads_to_a_heading() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    anchors = {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links - anchors == set()


def test_the_files_it_copies_exist() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    named = set(re.findall(r"/opt/broadcaster/((?:systemd|monitoring|templates)/[\w.-]*)", text))
    named |= set(re.findall(r"`((?:systemd|monitoring)/[\w.-]+)`", text))
    assert {"systemd/broadcaster.service", "systemd/broadcaster-backup.timer",
            "monitoring/broadcaster-rules.yml", "monitoring/grafana-dashboard.json"} <= named
    for path in named:
        assert (REPO / path).exists(), path


@pytest.mark.parametrize("command", [
    "serve", "backup", "demo", "send", "followup", "status", "retry", "users add",
    "users list", "audit verify", "audit list", "channels check", "templates check",
    "templates approve",
])
def test_the_commands_it_uses_exist(command: str) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert f"broadcaster {command}" in text or f"broadcaster-admin {command}" in text
    result = run_cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("command", "option"), [
    ("backup", "--keep"), ("channels check", "--live"), ("send", "--exercise"),
    ("users add", "--password"), ("templates approve", "--by"),
])
def test_the_options_it_uses_exist(command: str, option: str) -> None:
    assert option in run_cli(*command.split(), "--help").stdout
