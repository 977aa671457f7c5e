"""`broadcaster templates check`: the press office's gate. It passes on the shipped set
and fails (exit 2) naming template, language, place, count and limit for every kind of
broken template. Broken templates are built in a temporary copy of the folder."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support import REPO, TEMPLATES, run_cli, write_config

SHIPPED_IDS = sorted(p.stem for p in TEMPLATES.glob("*.toml") if p.name != "approvals.toml")


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("templates", "check", "--config", str(config), env=env)


def check_folder(
    tmp_path: Path, folder: Path, channels: str = ""
) -> subprocess.CompletedProcess[str]:
    return check(write_config(tmp_path, channels, templates=folder))


def assert_fails(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for part in parts:
        assert part in result.stdout, f"{part!r} not in {result.stdout!r}"
    assert re.search(r"^\d+ problem\(s\) in \d+ template\(s\)$", result.stdout, re.MULTILINE)


# The shipped set


def test_shipped_templates_pass_with_the_shipped_configuration(tmp_path: Path) -> None:
    # The press office checks templates without any of the service's credentials:
    # the configuration's secret references are checked in form only.
    config = REPO / "channels.toml"
    result = check(config, CREDENTIALS_DIRECTORY=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(SHIPPED_IDS)} template(s) checked" in result.stdout
    assert "all render, fit every channel and are approved" in result.stdout


def test_shipped_templates_pass_without_channels(tmp_path: Path) -> None:
    result = check(write_config(tmp_path, ""))
    assert result.returncode == 0, result.stdout + result.stderr


# Broken files: exit 2, the problem named


def test_unknown_top_level_key(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", 'title = "Evakuierung"', 'title = "Evakuierung"\ncolour = 1')
    assert_fails(check_folder(tmp_path, folder), "evakuierung: evakuierung.toml:",
                 "unknown key 'colour'", "known keys: category")


def test_unknown_key_in_a_variable(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "max_length = 80\n", "max_length = 80\nmaxlength = 80\n")
    assert_fails(check_folder(tmp_path, folder), "evakuierung.toml: [variables.area]:",
                 "unknown key 'maxlength'", "known keys:")


def test_unknown_key_in_a_language_table(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "[en]\n", '[en]\nfooter = "Stadt Koblenz"\n')
    assert_fails(check_folder(tmp_path, folder), "evakuierung.toml: [en]:",
                 "unknown key 'footer'", "headline, short and body")


def test_variable_used_but_not_declared(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "Notunterkunft: {{ shelter }}. Infos",
         "Notunterkunft: {{ shelter_name }}. Infos")
    assert_fails(check_folder(tmp_path, folder), "evakuierung.toml: [de].short:",
                 "'shelter_name' is used but not declared", "add [variables.shelter_name]")


def test_jinja_syntax_error_names_the_line(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "in der Notunterkunft {{ shelter }}.",
         "in der Notunterkunft {{ shelter }.")
    assert_fails(check_folder(tmp_path, folder), "evakuierung.toml: [de].body line 3:",
                 "Jinja syntax error")


def test_short_text_over_280_for_the_longest_inputs(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", "max_length = 80\n", "max_length = 200\n")
    result = check_folder(tmp_path, folder)
    assert_fails(result)
    match = re.search(r"^evakuierung: \[de\]\.short is (\d+) X-weighted characters with the "
                      r"longest inputs \(live\); the limit is 280$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    assert int(match[1]) > 280


def test_exercise_banner_counts_towards_the_limit(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    short = "Probe " + "x" * 264  # 270: fits live, not with "+++ ÜBUNG +++ " before it
    (folder / "knapp.toml").write_text(
        'title = "Knapp"\nseverity = "minor"\nevent = "Probe"\ncategory = "Other"\n'
        f'[de]\nheadline = "Knapp"\nshort = "{short}"\nbody = "Text"\n', encoding="utf-8")
    result = check_folder(tmp_path, folder)
    assert_fails(result, "knapp: [de].short is 284 X-weighted characters with the longest "
                         "inputs (exercise); the limit is 280")
    assert "(live)" not in result.stdout


def test_template_breaking_the_sandbox_fails_the_check(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", 'headline = "Evakuierung: {{ area }}"',
         'headline = "Evakuierung: {{ area.__class__.__mro__ }}"')
    assert_fails(check_folder(tmp_path, folder), "evakuierung: evakuierung.toml: [de].headline:",
                 "sandbox forbids")


def test_template_with_a_failing_expression_fails_the_check(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "evakuierung.toml", 'headline = "Evakuierung: {{ area }}"',
         'headline = "Evakuierung: {{ area }} {% for x in range(10**9) %}.{% endfor %}"')
    assert_fails(check_folder(tmp_path, folder), "evakuierung.toml: [de].headline:",
                 "cannot be rendered", "sandbox")


def test_unreadable_template_file_is_reported_and_the_rest_checked(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "kaputt.toml").mkdir()
    result = check_folder(tmp_path, folder)
    assert_fails(result, "kaputt: kaputt.toml: cannot read the file")
    assert f"1 problem(s) in {len(SHIPPED_IDS) + 1} template(s)" in result.stdout


def test_template_without_approval_fails(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    shutil.copy(folder / "probealarm.toml", folder / "probealarm-neu.toml")
    assert_fails(check_folder(tmp_path, folder),
                 "probealarm-neu: not approved: after review run "
                 "`broadcaster templates approve probealarm-neu --by NAME`")


def test_changed_template_fails_until_approved_again(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    with (folder / "unwetter.toml").open("a", encoding="utf-8") as file:
        file.write("# geändert\n")
    assert_fails(check_folder(tmp_path, folder), "unwetter: changed, not approved (approved by "
                 "Pressestelle Stadt Koblenz", "review and approve again")


# Problems that depend on the configured channels


def test_channel_language_without_texts_fails(tmp_path: Path) -> None:
    channel = """
[[channel]]
name = "partenaire"
kind = "webhook"
url = "http://127.0.0.1:8025/webhook/partenaire"
secret = { env = "WEBHOOK_SECRET" }
languages = ["fr"]
"""
    result = check_folder(tmp_path, copy_templates(tmp_path), channel)
    assert_fails(result, "evakuierung: no [fr] texts, but channel 'partenaire' posts in 'fr'")
    for template_id in SHIPPED_IDS:
        assert f"{template_id}: no [fr] texts" in result.stdout


def test_post_over_a_channels_limit_fails(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    edit(folder / "lageupdate.toml", "max_length = 140\n", "max_length = 4000\n")
    channel = """
[[channel]]
name = "tg-de"
kind = "telegram"
chat_id = "@stadt_koblenz"
token = { env = "TELEGRAM_TOKEN" }
"""
    result = check_folder(tmp_path, folder, channel)
    assert_fails(result)
    match = re.search(r"^lageupdate: \[de\] is (\d+) characters on telegram \(channel 'tg-de'\) "
                      r"with the longest inputs \(live\); the limit is 4096$",
                      result.stdout, re.MULTILINE)
    assert match, result.stdout
    assert int(match[1]) > 4096


def test_broken_configuration_stops_the_check_with_its_own_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", service='colour = "blau"')
    result = check(config)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "key 'service.colour'" in result.stderr
