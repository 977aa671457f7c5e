"""The send form's fields follow the variable schema: one input per type with the
limits a person needs, and what a new form starts with."""

from __future__ import annotations

import pytest

from broadcaster.console.forms import field_for, initial_values
from broadcaster.console.i18n import translator
from broadcaster.models import Mode
from broadcaster.templates import Variable, load_templates
from tests.support import TEMPLATES

t = translator("de")


@pytest.mark.parametrize(("variable", "widget", "limits", "step"), [
    (Variable("a", "A", "text", max_length=80), "text", (), None),
    (Variable("a", "A", "text", max_length=140), "textarea", (), None),
    (Variable("a", "A", "choice", choices=("x", "y")), "select", (), None),
    (Variable("a", "A", "time"), "time", ("Uhrzeit, z. B. 14:30",), None),
    (Variable("a", "A", "date"), "date", ("Datum, z. B. 24.11.2026",), None),
    (Variable("a", "A", "url"), "url", ("Webadresse mit https://",), None),
    (Variable("a", "A", "number", min=0, max=500), "number",
     ("von 0 bis 500", "ganze Zahl"), "1"),
    (Variable("a", "A", "number", min=3, decimals=2), "number",
     ("mindestens 3", "2 Nachkommastellen"), "0.01"),
])
def test_each_type_gets_its_input(variable: Variable, widget: str, limits: tuple[str, ...],
                                  step: str | None) -> None:
    field = field_for(variable, "", None, t)
    assert (field.widget, field.limits, field.step) == (widget, limits, step)
    assert field.name == "var_a" and field.id == "field-a"


def test_a_number_with_a_decimal_comma_is_shown_with_a_point() -> None:
    field = field_for(Variable("level", "L", "number", decimals=2), "7,80", None, t)
    assert field.value == "7.80"  # what an <input type=number> can hold


def test_only_an_exercise_starts_from_the_examples() -> None:
    template = load_templates(TEMPLATES).get("evakuierung")
    assert initial_values(template, Mode.EXERCISE, None) == template.example_values()
    assert initial_values(template, Mode.LIVE, None) == {}
