"""The send form: input fields generated from a template's variable schema, the
values read back from a submitted form, and what a form starts with.

Only shape lives here (which input, which limits to show, what to pre-fill);
whether a value is valid is decided by the Composer, the single source of rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from multidict import MultiDictProxy

from broadcaster.config import Config
from broadcaster.models import Alert, Mode
from broadcaster.templates import Template, Variable, format_number

PREFIX = "var_"
TEXTAREA_FROM = 100  # longer texts get a text area (wraps on a phone)


@dataclass(frozen=True)
class Field:
    """One input of the form, ready for the page."""

    name: str  # the form field's name (PREFIX + variable name)
    variable: Variable
    widget: str  # text | textarea | select | time | date | number | url
    value: str
    limits: tuple[str, ...]  # what the officer must know, shown under the label
    error: str | None = None
    step: str | None = None

    @property
    def id(self) -> str:
        return "field-" + self.variable.name


def _number(value: float | None) -> str:
    return "" if value is None else format_number(value)


def field_for(variable: Variable, value: str, error: str | None,
              t: Callable[..., str]) -> Field:
    limits: list[str] = []
    step = None
    widget = {"choice": "select", "time": "time", "date": "date", "number": "number",
              "url": "url"}.get(variable.type, "text")
    if variable.type == "text":  # the limit shows in the character counter
        if variable.max_length is not None and variable.max_length > TEXTAREA_FROM:
            widget = "textarea"
    elif variable.type == "number":
        low, high = _number(variable.min), _number(variable.max)
        if low and high:
            limits.append(t("send.range", min=low, max=high))
        elif low:
            limits.append(t("send.min", min=low))
        elif high:
            limits.append(t("send.max", max=high))
        limits.append(t("send.decimals", count=variable.decimals) if variable.decimals
                      else t("send.whole"))
        step = "1" if not variable.decimals else "0." + "0" * (variable.decimals - 1) + "1"
        value = value.replace(",", ".")  # an <input type=number> holds a decimal point
    elif variable.type == "time":
        limits.append(t("send.time"))
    elif variable.type == "date":
        limits.append(t("send.date"))
    elif variable.type == "url":
        limits.append(t("send.url"))
    return Field(PREFIX + variable.name, variable, widget, value, tuple(limits), error, step)


def fields(template: Template, values: Mapping[str, str], errors: Mapping[str, str],
           t: Callable[..., str]) -> list[Field]:
    """The form's fields, with values and the problems the Composer found per variable."""
    return [field_for(v, values.get(name, ""), errors.get(f"variables.{name}"), t)
            for name, v in template.variables.items()]


def submitted_values(form: MultiDictProxy[str] | Mapping[str, str], template: Template
                     ) -> dict[str, str]:
    """The variable values of a submitted form (a text area's line breaks become spaces:
    a post's values are one line)."""
    values = {}
    for name in template.variables:
        raw = form.get(PREFIX + name)
        if isinstance(raw, str):
            values[name] = " ".join(raw.splitlines()) if "\n" in raw or "\r" in raw else raw
    return values


def submitted_channels(form: MultiDictProxy[str]) -> list[str]:
    return [c for c in form.getall("channel", []) if isinstance(c, str)]


def eligible_channels(config: Config, mode: Mode) -> list[str]:
    """The channels an alert of this mode may go to (what the Composer accepts)."""
    exercise = mode is Mode.EXERCISE
    return [c.name for c in config.channels if c.enabled and c.exercise == exercise]


def initial_values(template: Template, mode: Mode, reference: Alert | None,
                   subjects: Sequence[str] = ()) -> dict[str, str]:
    """What a new form starts with: for a follow-up, the original's values where the
    names match, and as its `subject` the first of ``subjects`` that fits; in an
    exercise, the template's examples; a live alert starts empty, so that nothing goes
    out that nobody typed."""
    values: dict[str, str] = {}
    if reference is not None:
        for name in template.variables:
            if name in reference.variables:
                values[name] = reference.variables[name]
        subject = template.variables.get("subject")
        if subject is not None and "subject" not in values:
            fitting = [s for s in subjects if s and (
                subject.max_length is None or len(s) <= subject.max_length)]
            if fitting:
                values["subject"] = fitting[0]
    if mode is Mode.EXERCISE:
        for name, example in template.example_values().items():
            values.setdefault(name, example)
    return values


def headline_of(reference: Alert, config: Config) -> str | None:
    """The original's headline in the default language, without the exercise banner."""
    language = config.service.default_language
    banner = config.service.exercise_banner
    headlines = [
        d.headline for d in reference.deliveries
        if (c := config.channel(d.channel)) is not None and c.languages[:1] == (language,)
    ] or [d.headline for d in reference.deliveries]
    if not headlines:
        return None
    headline = headlines[0]
    if headline.startswith(banner):
        headline = headline[len(banner):].strip()
    return headline or None
