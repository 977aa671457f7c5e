"""`broadcaster templates list | render | approve` as the press office uses them.
Approvals are only ever written into a temporary copy of the templates folder."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import TEMPLATES, run_cli, write_config

SHIPPED_IDS = sorted(p.stem for p in TEMPLATES.glob("*.toml") if p.name != "approvals.toml")
EVAKUIERUNG_AREA = "Oberwerth zwischen Rheinufer und Südallee"  # the template's example


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("templates", *args, "--config", str(config))


def assert_invalid(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for part in parts:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"


def approval_column(listing: str) -> dict[str, str]:
    """`templates list` output → {template id: approval state}."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in listing.splitlines()[2:] if line]
    return {row[0]: row[-1] for row in rows if len(row) == 6}


def approvals(folder: Path) -> dict[str, dict[str, str]]:
    return tomllib.loads((folder / "approvals.toml").read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# list


def test_list_shows_every_shipped_template_as_approved(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "list")
    assert result.returncode == 0, result.stderr
    assert approval_column(result.stdout) == dict.fromkeys(SHIPPED_IDS, "approved")


def test_list_shows_title_severity_kind_and_languages(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "list")
    rows = {row[0]: row for row in (re.split(r"\s{2,}", line.strip())
                                    for line in result.stdout.splitlines()[2:])}
    assert rows["entwarnung"] == ["entwarnung", "Entwarnung", "minor", "allclear", "de,en",
                                  "approved"]


def test_list_names_files_that_did_not_load(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "[en]\n", '[en]\nfooter = "x"\n')
    result = cli(write_config(tmp_path, "", templates=folder), "list")
    assert result.returncode == 2
    assert "not loaded: evakuierung.toml: [en]: unknown key 'footer'" in result.stdout
    assert "evakuierung" not in approval_column(result.stdout)


# render


def test_render_with_examples_shows_all_three_texts(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--examples")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"headline: Evakuierung: {EVAKUIERUNG_AREA}\n")
    assert f"short:\nEvakuierung {EVAKUIERUNG_AREA} wegen Entschärfung einer Fliegerbombe: " \
        "Bitte verlassen Sie das Gebiet bis 09:00 Uhr" in result.stdout
    assert "\nbody:\nWegen Entschärfung einer Fliegerbombe muss das Gebiet" in result.stdout
    assert "https://www.koblenz.de/warnung" in result.stdout  # info_url from the config


def test_render_in_english_with_a_value_set(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--examples",
                 "--lang", "en", "--set", "reason=Gasaustritt")
    assert result.returncode == 0, result.stderr
    assert f"Evacuation of {EVAKUIERUNG_AREA} (a gas leak)" in result.stdout


def test_render_as_exercise_starts_every_text_with_the_banner(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", service='exercise_banner = "*** PROBE ***"')
    result = cli(config, "render", "evakuierung", "--examples", "--exercise")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("headline: *** PROBE *** Evakuierung:")
    assert "short:\n*** PROBE *** Evakuierung" in result.stdout
    assert "body:\n*** PROBE ***\nWegen" in result.stdout


def test_render_for_telegram_escapes_html_and_shows_the_length(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    area = "Oberwerth <Süd> & Rheinufer"
    telegram = cli(config, "render", "evakuierung", "--examples", "--set", f"area={area}",
                   "--channel-kind", "telegram")
    assert telegram.returncode == 0, telegram.stderr
    post, _, footer = telegram.stdout.rstrip("\n").rpartition("\n\n")
    assert post.startswith("<b>Evakuierung: Oberwerth &lt;Süd&gt; &amp; Rheinufer</b>\n\n")
    assert "das Gebiet Oberwerth &lt;Süd&gt; &amp; Rheinufer bis 09:00 Uhr" in post
    assert area not in post

    # The length is what readers see: headline, blank line, body, unescaped.
    plain = cli(config, "render", "evakuierung", "--examples", "--set", f"area={area}")
    headline = plain.stdout.split("\n", 1)[0].removeprefix("headline: ")
    body = plain.stdout.split("\nbody:\n", 1)[1].rstrip("\n")
    visible = len(headline) + 2 + len(body)  # all in the BMP: one UTF-16 unit each
    assert footer == f"[telegram: {visible} of 4096 — fits]"


def test_render_with_bad_values_names_each_variable(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--examples",
                 "--set", "until=25:00", "--set", "shelter=Turnhalle")
    assert_invalid(result, "variables.until", "'25:00' is not a time", "variables.shelter",
                   "'Turnhalle' is not one of")


def test_render_without_required_values_names_them(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--set", "area=Süd")
    assert_invalid(result, "variables.until: is required", "variables.reason: is required")


def test_render_in_a_language_the_template_lacks(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--examples", "--lang", "fr")
    assert_invalid(result, "no 'fr' texts", "de, en")


def test_render_malformed_set_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path, ""), "render", "evakuierung", "--set", "area")
    assert_invalid(result, "--set 'area'", "NAME=VALUE")


@pytest.mark.parametrize("template_id", ["../../etc/passwd", "../outside", "/etc/passwd",
                                         "nicht-da"])
def test_render_unknown_id_is_unknown_template_never_a_file(
    tmp_path: Path, template_id: str
) -> None:
    folder = copy_templates(tmp_path)
    shutil.copy(folder / "probealarm.toml", tmp_path / "outside.toml")  # valid, but outside
    result = cli(write_config(tmp_path, "", templates=folder), "render", template_id,
                 "--examples")
    assert_invalid(result, f"unknown template {template_id!r}", "templates list")
    assert result.stdout == ""


def test_render_a_template_that_failed_to_load_names_its_problem(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "in der Notunterkunft {{ shelter }}.",
         "in der Notunterkunft {{ shelter }.")
    result = cli(write_config(tmp_path, "", templates=folder), "render", "evakuierung",
                 "--examples")
    assert_invalid(result, "evakuierung.toml: [de].body line 3:", "cannot be used until",
                   "Jinja syntax error")
    assert "unknown template" not in result.stderr


# approve


def test_approve_records_hash_person_and_time(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "approvals.toml").unlink()
    config = write_config(tmp_path, "", templates=folder)
    assert approval_column(cli(config, "list").stdout)["evakuierung"] == "not approved"

    before = datetime.now(UTC)
    result = cli(config, "approve", "evakuierung", "--by", "Erika Mustermann")
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "evakuierung: approved by Erika Mustermann" in result.stdout

    entry = approvals(folder)["evakuierung"]
    assert entry["sha256"] == sha256(folder / "evakuierung.toml")
    assert entry["approved_by"] == "Erika Mustermann"
    approved_at = datetime.fromisoformat(entry["approved_at"])
    assert entry["approved_at"].endswith("Z")
    assert before - timedelta(seconds=1) <= approved_at <= after + timedelta(seconds=1)
    assert set(approvals(folder)) == {"evakuierung"}
    assert approval_column(cli(config, "list").stdout)["evakuierung"] == "approved"


def test_edited_template_needs_a_new_approval(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    config = write_config(tmp_path, "", templates=folder)
    shipped = approvals(folder)
    edit(folder / "evakuierung.toml", "Helfen Sie älteren Nachbarinnen und Nachbarn.",
         "Helfen Sie älteren Menschen in Ihrer Nachbarschaft.")

    assert approval_column(cli(config, "list").stdout)["evakuierung"] == "changed, not approved"
    checked = cli(config, "check")
    assert checked.returncode == 2
    assert "evakuierung: changed, not approved" in checked.stdout

    approved = cli(config, "approve", "evakuierung", "--by", "Max Mustermann")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approval_column(cli(config, "list").stdout) == dict.fromkeys(SHIPPED_IDS, "approved")
    assert cli(config, "check").returncode == 0
    now = approvals(folder)
    assert now["evakuierung"]["sha256"] == sha256(folder / "evakuierung.toml")
    assert now["evakuierung"]["sha256"] != shipped["evakuierung"]["sha256"]
    assert {k: v for k, v in now.items() if k != "evakuierung"} == \
        {k: v for k, v in shipped.items() if k != "evakuierung"}


def test_approve_refuses_a_template_that_fails_its_checks(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "max_length = 80\n", "max_length = 200\n")
    before = (folder / "approvals.toml").read_bytes()
    result = cli(write_config(tmp_path, "", templates=folder), "approve", "evakuierung",
                 "--by", "Erika Mustermann")
    assert_invalid(result, "evakuierung: fix the problems above before approving")
    assert "evakuierung: [de].short is" in result.stdout
    assert "the limit is 280" in result.stdout
    assert (folder / "approvals.toml").read_bytes() == before


def test_approve_refuses_whatever_the_template_is_called(tmp_path: Path) -> None:
    # The id (and so every message about the file) contains "approve".
    folder = copy_templates(tmp_path)
    (folder / "approve-me.toml").write_text(
        'title = "T"\nseverity = "minor"\nevent = "E"\ncategory = "Other"\n'
        '[de]\nheadline = "{{ city.__class__.__mro__ }}"\nshort = "kurz"\nbody = "lang"\n',
        encoding="utf-8")
    result = cli(write_config(tmp_path, "", templates=folder), "approve", "approve-me",
                 "--by", "Erika Mustermann")
    assert_invalid(result, "approve-me: fix the problems above before approving")
    assert "sandbox" in result.stdout
    assert "approve-me" not in approvals(folder)


def test_approve_a_template_that_failed_to_load_names_its_problem(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "[en]\n", '[en]\nfooter = "x"\n')
    result = cli(write_config(tmp_path, "", templates=folder), "approve", "evakuierung",
                 "--by", "Erika Mustermann")
    assert_invalid(result, "evakuierung.toml: [en]:", "unknown key 'footer'")
    assert "unknown template" not in result.stderr


def test_approve_needs_a_name(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    before = (folder / "approvals.toml").read_bytes()
    result = cli(write_config(tmp_path, "", templates=folder), "approve", "evakuierung",
                 "--by", "  ")
    assert_invalid(result, "--by needs the name of the person approving")
    assert (folder / "approvals.toml").read_bytes() == before


def test_approve_unknown_template(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    result = cli(write_config(tmp_path, "", templates=folder), "approve", "../evakuierung",
                 "--by", "Erika Mustermann")
    assert_invalid(result, "unknown template '../evakuierung'")
