"""Templates: loading the press office's files, validating an officer's values, and
sandboxed rendering (broadcaster/templates.py, broadcaster/durations.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.durations import format_duration, parse_duration
from broadcaster.errors import TemplateError, UnknownTemplate, ValidationError
from broadcaster.models import Mode
from broadcaster.templates import (
    RenderContext,
    Template,
    TemplateSet,
    load_template,
    load_templates,
    render,
    render_languages,
)
from tests.support import TEMPLATES

SHIPPED_IDS = sorted(p.stem for p in TEMPLATES.glob("*.toml") if p.name != "approvals.toml")
WINTER = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


def context(mode: Mode = Mode.LIVE, *, banner: str = "+++ ÜBUNG +++",
            sent_at: datetime = WINTER, timezone: str = "Europe/Berlin") -> RenderContext:
    return RenderContext(
        city="Stadt Koblenz", info_url="https://www.koblenz.de/warnung",
        alert_id="01KTESTALERT00000000000000", sent_at=sent_at, mode=mode,
        exercise_banner=banner, timezone=timezone,
    )


@pytest.fixture(scope="module")
def shipped() -> TemplateSet:
    return load_templates(TEMPLATES)


HOCHWASSER_OK = {"river": "Rhein", "level": "7,80", "peak_time": "18:00",
                 "area": "Konrad-Adenauer-Ufer"}


def write_template(directory: Path, body: str, name: str = "probe") -> Path:
    """A small template file; ``body`` holds variables and language tables."""
    path = directory / f"{name}.toml"
    path.write_text(
        'title = "Probe"\nseverity = "minor"\nevent = "Probe"\ncategory = "Other"\n' + body,
        encoding="utf-8",
    )
    return path


def one_text(headline: str, short: str = "kurz", body: str = "lang") -> str:
    """A [de] table; JSON string syntax is TOML basic-string syntax."""
    return (f"[de]\nheadline = {json.dumps(headline, ensure_ascii=False)}\n"
            f"short = {json.dumps(short, ensure_ascii=False)}\n"
            f"body = {json.dumps(body, ensure_ascii=False)}\n")


# The shipped set


def test_every_shipped_template_loads_without_problems(shipped: TemplateSet) -> None:
    assert shipped.problems == []
    assert sorted(shipped.templates) == SHIPPED_IDS
    assert len(SHIPPED_IDS) >= 10


@pytest.mark.parametrize("template_id", SHIPPED_IDS)
def test_every_shipped_template_has_german_and_english_texts(
    shipped: TemplateSet, template_id: str
) -> None:
    assert set(shipped.get(template_id).languages) == {"de", "en"}


@pytest.mark.parametrize("template_id", SHIPPED_IDS)
def test_every_shipped_example_is_a_valid_value(shipped: TemplateSet, template_id: str) -> None:
    template = shipped.get(template_id)
    assert set(template.example_values()) == set(template.variables)
    template.clean_values(template.example_values())  # raises when an example is invalid


# Values: every bad value is a ValidationError naming the variable


def problems_for(template: Template, **changes: object) -> dict[str, str]:
    values: dict[str, object] = {**HOCHWASSER_OK, **changes}
    with pytest.raises(ValidationError) as caught:
        template.clean_values(values)
    return caught.value.problems


def test_missing_variable_is_named(shipped: TemplateSet) -> None:
    values = {k: v for k, v in HOCHWASSER_OK.items() if k != "area"}
    with pytest.raises(ValidationError) as caught:
        shipped.get("hochwasser").clean_values(values)
    assert list(caught.value.problems) == ["variables.area"]
    assert "required" in caught.value.problems["variables.area"]
    assert "Betroffenes Gebiet" in caught.value.problems["variables.area"]  # the label


def test_undeclared_variable_is_named_with_the_declared_ones(shipped: TemplateSet) -> None:
    problems = problems_for(shipped.get("hochwasser"), colour="blau")
    assert list(problems) == ["variables.colour"]
    assert "not a variable of template 'hochwasser'" in problems["variables.colour"]
    assert "river, level, peak_time, area" in problems["variables.colour"]


def test_choice_outside_the_list_is_named_with_the_choices(shipped: TemplateSet) -> None:
    problems = problems_for(shipped.get("hochwasser"), river="Elbe")
    assert list(problems) == ["variables.river"]
    assert "'Elbe'" in problems["variables.river"]
    assert "Rhein, Mosel" in problems["variables.river"]


@pytest.mark.parametrize("value", ["25:00", "12:60", "noon", "1230", "12:5"])
def test_impossible_time_is_refused(shipped: TemplateSet, value: str) -> None:
    problems = problems_for(shipped.get("hochwasser"), peak_time=value)
    assert list(problems) == ["variables.peak_time"]
    assert value in problems["variables.peak_time"]
    assert "HH:MM" in problems["variables.peak_time"]


def test_text_over_max_length_is_refused_with_both_lengths(shipped: TemplateSet) -> None:
    problems = problems_for(shipped.get("hochwasser"), area="x" * 81)
    assert list(problems) == ["variables.area"]
    assert "81 characters" in problems["variables.area"]
    assert "at most 80" in problems["variables.area"]


def test_text_of_exactly_max_length_is_accepted(shipped: TemplateSet) -> None:
    cleaned = shipped.get("hochwasser").clean_values({**HOCHWASSER_OK, "area": "x" * 80})
    assert cleaned["area"] == "x" * 80


@pytest.mark.parametrize(
    ("character", "code"),
    [("\n", "U+000A"), ("\x07", "U+0007"), ("\u202e", "U+202E"), ("\u2028", "U+2028")],
    ids=["newline", "bell", "bidi-override", "line-separator"],
)
def test_control_character_is_refused(shipped: TemplateSet, character: str, code: str) -> None:
    problems = problems_for(shipped.get("hochwasser"), area=f"Ufer{character}straße")
    assert list(problems) == ["variables.area"]
    assert "control character" in problems["variables.area"]
    assert code in problems["variables.area"]


@pytest.mark.parametrize("value", ["7,801", "7.801"])
def test_number_with_too_many_decimals_is_refused(shipped: TemplateSet, value: str) -> None:
    problems = problems_for(shipped.get("hochwasser"), level=value)
    assert list(problems) == ["variables.level"]
    assert "at most 2 decimal places" in problems["variables.level"]


@pytest.mark.parametrize(("value", "words"), [("2,99", "below the minimum 3"),
                                              ("12,01", "above the maximum 12")])
def test_number_outside_min_max_is_refused(shipped: TemplateSet, value: str, words: str) -> None:
    problems = problems_for(shipped.get("hochwasser"), level=value)
    assert list(problems) == ["variables.level"]
    assert words in problems["variables.level"]


@pytest.mark.parametrize("value", ["sieben", "7e1", "1/2", "--7"])
def test_non_number_is_refused(shipped: TemplateSet, value: str) -> None:
    problems = problems_for(shipped.get("hochwasser"), level=value)
    assert list(problems) == ["variables.level"]
    assert "not a number" in problems["variables.level"]


def test_every_bad_value_is_reported_at_once(shipped: TemplateSet) -> None:
    problems = problems_for(shipped.get("hochwasser"), river="Elbe", peak_time="25:00",
                            level="99")
    assert set(problems) == {"variables.river", "variables.peak_time", "variables.level"}


def test_values_are_tidied_before_use(shipped: TemplateSet) -> None:
    cleaned = shipped.get("hochwasser").clean_values(
        {**HOCHWASSER_OK, "peak_time": "9:05", "area": "  Neuendorf  ", "level": 7.8}
    )
    assert cleaned["peak_time"] == "09:05"
    assert cleaned["area"] == "Neuendorf"
    assert cleaned["level"] == "7.8"


def test_values_are_nfc_normalised(tmp_path: Path) -> None:
    template = load_template(write_template(
        tmp_path, '[variables.area]\nlabel = "Gebiet"\ntype = "text"\nmax_length = 5\n'
        + one_text("{{ area }}")))
    assert template.clean_values({"area": "Su\u0308d"}) == {"area": "Süd"}


URL_TEMPLATE = ('[variables.link]\nlabel = "Link"\ntype = "url"\n'
                '[variables.day]\nlabel = "Tag"\ntype = "date"\n'
                + one_text("{{ link }} {{ day }}"))


@pytest.mark.parametrize("value", ["javascript:alert(1)", "JAVASCRIPT:alert(1)",
                                   "ftp://example.org/x", "https://", "www.koblenz.de",
                                   "https://example.org/a b"])
def test_url_that_is_not_a_web_address_is_refused(tmp_path: Path, value: str) -> None:
    template = load_template(write_template(tmp_path, URL_TEMPLATE))
    with pytest.raises(ValidationError) as caught:
        template.clean_values({"link": value, "day": "2026-11-24"})
    assert list(caught.value.problems) == ["variables.link"]
    assert "not a web address" in caught.value.problems["variables.link"]


def test_web_address_is_accepted(tmp_path: Path) -> None:
    template = load_template(write_template(tmp_path, URL_TEMPLATE))
    cleaned = template.clean_values({"link": "https://www.koblenz.de/a?b=1", "day": "2026-11-24"})
    assert cleaned == {"link": "https://www.koblenz.de/a?b=1", "day": "2026-11-24"}


@pytest.mark.parametrize("value", ["2026-02-30", "24.11.2026", "2026-11-24T10:00"])
def test_impossible_date_is_refused(tmp_path: Path, value: str) -> None:
    template = load_template(write_template(tmp_path, URL_TEMPLATE))
    with pytest.raises(ValidationError) as caught:
        template.clean_values({"link": "https://x.de", "day": value})
    assert list(caught.value.problems) == ["variables.day"]
    assert "YYYY-MM-DD" in caught.value.problems["variables.day"]


# Values are data, never template source


@pytest.mark.parametrize("value", ["{{ 7*7 }}", "{% for x in range(10**9) %}x{% endfor %}",
                                   "{{ ''.__class__.__mro__ }}"])
def test_template_syntax_in_a_value_is_shown_literally(shipped: TemplateSet, value: str) -> None:
    template = shipped.get("hochwasser")
    cleaned = template.clean_values({**HOCHWASSER_OK, "area": value})
    for language in ("de", "en"):
        rendered = render(template, cleaned, context(), language)
        for text in (rendered.short, rendered.body):
            assert value in text
        assert "49" not in rendered.body


def test_template_reaching_for_python_internals_is_stopped_by_the_sandbox(
    tmp_path: Path,
) -> None:
    template = load_template(write_template(tmp_path, one_text("{{ ''.__class__.__mro__ }}")))
    with pytest.raises(TemplateError) as caught:
        render(template, {}, context(), "de")
    assert "sandbox" in str(caught.value)
    assert "probe.toml" in str(caught.value)
    assert "[de].headline" in str(caught.value)


def test_template_with_a_huge_loop_is_stopped_by_the_sandbox(tmp_path: Path) -> None:
    template = load_template(write_template(
        tmp_path, one_text("kurz", body="{% for x in range(10**9) %}x{% endfor %}")))
    with pytest.raises(TemplateError) as caught:
        render(template, {}, context(), "de")
    assert "sandbox" in str(caught.value)
    assert "[de].body" in str(caught.value)


@pytest.mark.parametrize("expression", ["{{ 1/0 }}", "{{ city + 1 }}", "{{ city[99] }}"])
def test_template_expression_that_fails_is_a_template_error(
    tmp_path: Path, expression: str
) -> None:
    template = load_template(write_template(tmp_path, one_text(expression)))
    with pytest.raises(TemplateError) as caught:
        render(template, {}, context(), "de")
    assert "probe.toml" in str(caught.value)
    assert "[de].headline" in str(caught.value)


# Unknown ids never become file reads


@pytest.mark.parametrize("template_id", ["../../etc/passwd", "../outside", "approvals",
                                         "EVAKUIERUNG", "", "evakuierung.toml"])
def test_an_id_that_is_not_loaded_is_an_unknown_template(
    tmp_path: Path, template_id: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    write_template(folder, one_text("drinnen"), name="inside")
    write_template(tmp_path, one_text("draußen"), name="outside")  # reachable as ../outside
    template_set = load_templates(folder)
    assert list(template_set.templates) == ["inside"]
    with pytest.raises(UnknownTemplate) as caught:
        template_set.get(template_id)
    assert "unknown template" in str(caught.value)


# Rendering


@pytest.mark.parametrize("template_id", SHIPPED_IDS)
@pytest.mark.parametrize("banner", ["+++ ÜBUNG +++", "*** EXERCISE ***"])
def test_every_exercise_text_starts_with_the_banner(
    shipped: TemplateSet, template_id: str, banner: str
) -> None:
    template = shipped.get(template_id)
    values = template.clean_values(template.example_values())
    for language in template.languages:
        rendered = render(template, values, context(Mode.EXERCISE, banner=banner), language)
        assert rendered.headline.startswith(f"{banner} ")
        assert rendered.short.startswith(f"{banner} ")
        assert rendered.body.startswith(f"{banner}\n")


@pytest.mark.parametrize("template_id", SHIPPED_IDS)
def test_live_texts_carry_no_banner(shipped: TemplateSet, template_id: str) -> None:
    template = shipped.get(template_id)
    values = template.clean_values(template.example_values())
    for language in template.languages:
        rendered = render(template, values, context(Mode.LIVE), language)
        for text in (rendered.headline, rendered.short, rendered.body):
            assert "ÜBUNG" not in text


GLOBALS_TEMPLATE = one_text(
    "{{ city }}|{{ info_url }}|{{ alert_id }}|{{ sent_at }}|{{ mode }}", short="x", body="y"
)


@pytest.mark.parametrize(
    ("sent_at", "timezone", "shown"),
    [(WINTER, "Europe/Berlin", "15.01.2026 13:00"),
     (SUMMER, "Europe/Berlin", "15.07.2026 14:00"),
     (WINTER, "America/New_York", "15.01.2026 07:00")],
    ids=["berlin-winter", "berlin-summer", "new-york"],
)
def test_globals_are_available_with_sent_at_in_the_configured_zone(
    tmp_path: Path, sent_at: datetime, timezone: str, shown: str
) -> None:
    template = load_template(write_template(tmp_path, GLOBALS_TEMPLATE))
    rendered = render(template, {}, context(sent_at=sent_at, timezone=timezone), "de")
    assert rendered.headline == (
        f"Stadt Koblenz|https://www.koblenz.de/warnung|01KTESTALERT00000000000000|{shown}|live"
    )


def test_mode_global_says_exercise_in_an_exercise(tmp_path: Path) -> None:
    template = load_template(write_template(tmp_path, GLOBALS_TEMPLATE))
    rendered = render(template, {}, context(Mode.EXERCISE, banner="ÜBUNG"), "de")
    assert rendered.headline.endswith("|exercise")


@pytest.mark.parametrize(("entered", "de", "en"), [("7,80", "7,80", "7.80"),
                                                   ("7.80", "7,80", "7.80"),
                                                   ("12", "12", "12")])
def test_numbers_take_each_languages_decimal_separator(
    shipped: TemplateSet, entered: str, de: str, en: str
) -> None:
    template = shipped.get("hochwasser")
    values = template.clean_values({**HOCHWASSER_OK, "level": entered})
    assert f"auf {de} m" in render(template, values, context(), "de").headline
    assert f"reach {en} m" in render(template, values, context(), "en").headline


def test_choices_are_shown_translated_in_each_language(shipped: TemplateSet) -> None:
    template = shipped.get("hochwasser")
    values = template.clean_values({**HOCHWASSER_OK, "river": "Mosel"})
    assert render(template, values, context(), "de").headline.startswith(
        "Hochwasser an der Mosel:")
    assert render(template, values, context(), "en").headline.startswith(
        "Flooding on the Moselle:")


def test_choice_without_translation_is_shown_as_entered(shipped: TemplateSet) -> None:
    template = shipped.get("evakuierung")
    values = template.clean_values({**template.example_values(), "shelter": "Conlog-Arena"})
    assert "Shelter: Conlog-Arena." in render(template, values, context(), "en").short


def test_missing_language_falls_back_to_the_first(shipped: TemplateSet) -> None:
    template = shipped.get("probealarm")
    values = template.clean_values(template.example_values())
    rendered = render_languages(template, values, context(), ["fr", "de"])
    assert [r.language for r in rendered] == ["de"]


# Template files (the CLI's `templates check` covers the press office's view)


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [('colour = "blau"\n' + one_text("x"), None, ["unknown key 'colour'", "known keys"]),
     ('[variables.area]\nlabel = "G"\ntype = "text"\nmax_length = 9\nmaxlength = 9\n'
      + one_text("{{ area }}"), "[variables.area]", ["unknown key 'maxlength'"]),
     (one_text("x") + "title = 'T'\n", "[de]", ["unknown key 'title'",
                                                 "headline, short and body"]),
     (one_text("{{ area }}"), "[de].headline", ["'area' is used but not declared",
                                                "[variables.area]"]),
     (one_text("x", body="a\nb\n{{ city "), "[de].body line 3", ["Jinja syntax error"]),
     ('[variables.area]\nlabel = "G"\ntype = "text"\nmax_length = 9\n' + one_text("x"),
      "[de]", ["'area' is declared but no 'de' text uses it"]),
     ('[variables.area]\nlabel = "G"\ntype = "text"\n' + one_text("{{ area }}"),
      "[variables.area]", ["needs max_length"]),
     ('expires_after = "12h"\n' + one_text("x"), "expires_after", ["PT12H"]),
     ('[variables.city]\nlabel = "G"\ntype = "text"\nmax_length = 9\n' + one_text("{{ city }}"),
      "[variables.city]", ["globals"])],
    ids=["unknown-top-level-key", "unknown-variable-key", "unknown-language-key",
         "undeclared-variable", "jinja-syntax-error", "unused-variable",
         "text-without-max-length", "bad-duration", "variable-shadows-global"],
)
def test_broken_template_file_names_the_place(
    tmp_path: Path, body: str, where: str | None, words: list[str]
) -> None:
    with pytest.raises(TemplateError) as caught:
        load_template(write_template(tmp_path, body))
    assert caught.value.file == "probe.toml"
    assert caught.value.where == where
    for word in words:
        assert word in str(caught.value)


def test_unreadable_template_file_is_a_problem_of_the_set(tmp_path: Path) -> None:
    write_template(tmp_path, one_text("gut"), name="good")
    (tmp_path / "broken.toml").mkdir()  # unreadable as a file, even for root
    template_set = load_templates(tmp_path)
    assert list(template_set.templates) == ["good"]
    assert [p.file for p in template_set.problems] == ["broken.toml"]
    assert "cannot read" in str(template_set.problems[0])


def test_expires_after_is_read_as_a_duration(shipped: TemplateSet) -> None:
    assert shipped.get("evakuierung").expires_after == timedelta(hours=12)
    assert shipped.get("abkochgebot").expires_after == timedelta(days=3)
    assert shipped.get("lageupdate").expires_after is None


# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [("PT12H", timedelta(hours=12)), ("P1DT6H", timedelta(days=1, hours=6)),
     ("PT30M", timedelta(minutes=30)), ("PT45S", timedelta(seconds=45)),
     ("P3D", timedelta(days=3)), ("pt6h", timedelta(hours=6)), (" PT1H30M ", timedelta(hours=1.5))],
)
def test_iso_durations_are_parsed(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "12h", "P1M", "P1Y", "PT1.5H", "-PT1H",
                                  "PT0S", "P0D"])
def test_not_a_positive_iso_duration_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="PT12H"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["PT12H", "P1DT6H", "PT30M", "P2DT3H4M5S", "P3D", "PT59S"])
def test_format_duration_is_the_inverse_of_parse(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
