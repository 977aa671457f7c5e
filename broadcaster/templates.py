"""The press office's templates: file format, variable schema and sandboxed rendering.

One TOML file per template in the templates folder; the file name (without .toml)
is the template id. Texts are Jinja2 expressions rendered in a SandboxedEnvironment
with StrictUndefined: values are data passed into the context, never template
source, so ``{{ 7*7 }}`` typed by an officer stays ``{{ 7*7 }}``. Rendering is plain
text; escaping for a target (Telegram's HTML) happens when a channel kind composes
its post (channels/base.py).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from broadcaster.channels.base import RenderedText
from broadcaster.durations import parse_duration
from broadcaster.errors import TemplateError, UnknownTemplate, ValidationError
from broadcaster.models import AlertKind, Mode, Severity

GLOBALS = ("city", "info_url", "alert_id", "sent_at", "mode")
TEXT_FIELDS = ("headline", "short", "body")
VARIABLE_TYPES = ("text", "choice", "time", "date", "number", "url")
APPROVALS_FILE = "approvals.toml"

_TOP_KEYS = {"title", "severity", "event", "category", "description", "kind",
             "expires_after", "variables"}
_VARIABLE_KEYS = {"label", "type", "max_length", "choices", "min", "max", "decimals", "help",
                  "example", "translations"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^-?(\d{1,12})(?:[.,](\d+))?$")
# Languages that write a decimal comma; the others get a decimal point.
_DECIMAL_COMMA = {"de", "fr", "es", "it", "nl", "pl", "tr", "ru", "uk", "cs", "da", "sv"}
DEFAULT_URL_MAX = 300
# Bidirectional overrides can make a text display differently from what it says.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


@dataclass(frozen=True)
class Variable:
    """One declared variable: what the officer fills in, and its limits."""

    name: str
    label: str
    type: str
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    decimals: int = 0
    help: str | None = None
    example: str | None = None
    # language → {choice as entered → how that language's texts show it}
    translations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def shown_in(self, language: str, value: str) -> str:
        """The value as a text in ``language`` shows it: choices may be translated,
        numbers take the language's decimal separator."""
        if self.type == "number":
            separator = "," if language in _DECIMAL_COMMA else "."
            return value.replace(".", separator).replace(",", separator)
        return self.translations.get(language, {}).get(value, value)

    def clean(self, raw: object) -> str:
        """The value as it will be rendered, or ValueError saying what is wrong."""
        if self.type == "number" and isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        value = unicodedata.normalize("NFC", raw.strip())
        if not value:
            raise ValueError("is required")
        bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"
                    or ch in _BIDI_CONTROLS or ch in "\u2028\u2029"), None)
        if bad is not None:
            raise ValueError(
                f"contains a control character (U+{ord(bad):04X}); use plain text on one line"
            )
        return getattr(self, f"_clean_{self.type}")(value)  # type: ignore[no-any-return]

    def _clean_text(self, value: str) -> str:
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"is {len(value)} characters long; at most {self.max_length}")
        return value

    def _clean_choice(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(self.choices)}")
        return value

    def _clean_time(self, value: str) -> str:
        match = _TIME.match(value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(f"{value!r} is not a time; use HH:MM, e.g. 14:30")
        return f"{int(match[1]):02d}:{match[2]}"

    def _clean_date(self, value: str) -> str:
        try:
            if not _DATE.match(value):
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-24") from None
        return value

    def _clean_number(self, value: str) -> str:
        match = _NUMBER.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a number")
        decimals = match[2] or ""
        if len(decimals) > self.decimals:
            allowed = (f"at most {self.decimals} decimal places" if self.decimals
                       else "a whole number")
            raise ValueError(f"{value!r}: give {allowed}")
        number = float(value.replace(",", "."))
        if self.min is not None and number < self.min:
            raise ValueError(f"{value} is below the minimum {format_number(self.min)}")
        if self.max is not None and number > self.max:
            raise ValueError(f"{value} is above the maximum {format_number(self.max)}")
        return value

    def _clean_url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in value:
            raise ValueError(f"{value!r} is not a web address; use http:// or https://")
        limit = self.max_length or DEFAULT_URL_MAX
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters long; at most {limit}")
        return value


def format_number(value: float) -> str:
    """A bound as a person writes it: 12, not 12.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Texts:
    """One language's text sources (Jinja2)."""

    language: str
    headline: str
    short: str
    body: str


@dataclass(frozen=True)
class Template:
    """A loaded, parsed template file."""

    id: str
    path: Path
    sha256: str
    title: str
    severity: Severity
    event: str
    category: str
    description: str
    kind: AlertKind
    expires_after: timedelta | None
    variables: Mapping[str, Variable]
    texts: Mapping[str, Texts]
    compiled: Mapping[tuple[str, str], jinja2.Template] = field(repr=False, compare=False)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def clean_values(self, values: Mapping[str, object]) -> dict[str, str]:
        """Validate every value; ValidationError names each bad variable."""
        problems: dict[str, str] = {}
        cleaned: dict[str, str] = {}
        for name in values:
            if name not in self.variables:
                known = ", ".join(self.variables) or "none"
                problems[name] = f"is not a variable of template {self.id!r} (it has: {known})"
        for name, variable in self.variables.items():
            if name not in values:
                problems[name] = f"is required ({variable.label})"
                continue
            try:
                cleaned[name] = variable.clean(values[name])
            except ValueError as exc:
                problems[name] = str(exc)
        if problems:
            raise ValidationError({f"variables.{k}": v for k, v in problems.items()})
        return cleaned

    def example_values(self) -> dict[str, str]:
        """Values from each variable's `example` (for demos and console defaults)."""
        return {name: v.example for name, v in self.variables.items() if v.example is not None}


@dataclass(frozen=True)
class RenderContext:
    """The globals every template sees, and the exercise banner."""

    city: str
    info_url: str
    alert_id: str
    sent_at: datetime
    mode: Mode
    exercise_banner: str
    timezone: str = "Europe/Berlin"

    def globals(self) -> dict[str, str]:
        local = self.sent_at.astimezone(ZoneInfo(self.timezone))
        return {
            "city": self.city,
            "info_url": self.info_url,
            "alert_id": self.alert_id,
            "sent_at": local.strftime("%d.%m.%Y %H:%M"),
            "mode": self.mode.value,
        }


def render(
    template: Template, values: Mapping[str, str], context: RenderContext, language: str
) -> RenderedText:
    """Render one language's texts; values must come from ``clean_values``.

    A template that reaches for something the sandbox forbids raises TemplateError.
    """
    if language not in template.texts:
        language = next(iter(template.texts))
    shown = {
        name: template.variables[name].shown_in(language, value) if name in template.variables
        else value
        for name, value in values.items()
    }
    variables = {**context.globals(), **shown}
    rendered: dict[str, str] = {}
    for text_field in TEXT_FIELDS:
        compiled = template.compiled[(language, text_field)]
        try:
            rendered[text_field] = compiled.render(variables).strip()
        except SecurityError as exc:
            raise TemplateError(
                f"the template tried something the sandbox forbids ({exc})",
                file=template.path.name, where=f"[{language}].{text_field}",
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{exc.message}", file=template.path.name, where=f"[{language}].{text_field}"
            ) from None
        except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError,
                ValueError) as exc:
            # An expression of the template itself failed (the sandbox's range limit
            # raises OverflowError, `1/0`, `city + 1`): a template problem, not a crash.
            raise TemplateError(
                f"the text cannot be rendered ({type(exc).__name__}: {exc}); fix the "
                "expression in the template", file=template.path.name,
                where=f"[{language}].{text_field}",
            ) from None
    if context.mode is Mode.EXERCISE:
        banner = context.exercise_banner
        rendered["headline"] = f"{banner} {rendered['headline']}"
        rendered["short"] = f"{banner} {rendered['short']}"
        rendered["body"] = f"{banner}\n{rendered['body']}"
    return RenderedText(language=language, **rendered)


def render_languages(
    template: Template, values: Mapping[str, str], context: RenderContext,
    languages: Iterable[str],
) -> list[RenderedText]:
    """Render each requested language (falling back to the template's first)."""
    seen: list[str] = []
    for language in languages:
        chosen = language if language in template.texts else next(iter(template.texts))
        if chosen not in seen:
            seen.append(chosen)
    return [render(template, values, context, language) for language in seen]


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


@dataclass
class TemplateSet:
    """Every template of the folder, and the problems that kept others out."""

    directory: Path
    templates: dict[str, Template]
    problems: list[TemplateError]

    def get(self, template_id: str) -> Template:
        """The template by id; unknown ids never touch the file system."""
        template = self.templates.get(template_id) if isinstance(template_id, str) else None
        if template is None:
            raise UnknownTemplate(str(template_id))
        return template


def load_templates(directory: Path) -> TemplateSet:
    """Load every *.toml in the folder (except approvals.toml), collecting problems."""
    environment = _environment()
    templates: dict[str, Template] = {}
    problems: list[TemplateError] = []
    if not directory.is_dir():
        problems.append(TemplateError("templates folder not found", file=str(directory)))
        return TemplateSet(directory, templates, problems)
    for path in sorted(directory.glob("*.toml")):
        if path.name == APPROVALS_FILE:
            continue
        try:
            templates[path.stem] = load_template(path, environment)
        except TemplateError as exc:
            problems.append(exc)
    return TemplateSet(directory, templates, problems)


def load_template(path: Path, environment: SandboxedEnvironment | None = None) -> Template:
    """Parse one template file; TemplateError names the file and the place."""
    environment = environment or _environment()
    name = path.name

    def fail(message: str, where: str | None = None) -> TemplateError:
        return TemplateError(message, file=name, where=where)

    if not _ID.match(path.stem):
        raise fail("file name must be a lower-case id (letters, digits, '-', '_') + .toml")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the file ({exc.strerror}); check its owner and mode") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"not valid TOML: {exc}") from None

    languages = [key for key, value in document.items()
                 if _LANGUAGE.match(key) and isinstance(value, dict)]
    unknown = set(document) - _TOP_KEYS - set(languages)
    if unknown:
        raise fail(
            f"unknown key {sorted(unknown)[0]!r}; known keys: {', '.join(sorted(_TOP_KEYS))}, "
            "and one table per language ([de], [en], …)"
        )
    for key in ("title", "severity", "event", "category"):
        if not isinstance(document.get(key), str) or not document[key].strip():
            raise fail(f"{key!r} is required and must be a string")
    try:
        severity = Severity(document["severity"])
    except ValueError:
        raise fail(
            f"severity {document['severity']!r} must be one of "
            f"{', '.join(s.value for s in Severity)}", "severity",
        ) from None
    try:
        kind = AlertKind(document.get("kind", "alert"))
    except ValueError:
        raise fail(
            f"kind must be one of {', '.join(k.value for k in AlertKind)}", "kind"
        ) from None
    expires_after = None
    if "expires_after" in document:
        try:
            expires_after = parse_duration(str(document["expires_after"]))
        except ValueError as exc:
            raise fail(str(exc), "expires_after") from None

    variables = _parse_variables(document.get("variables", {}), fail)
    if not languages:
        raise fail("no texts: add a table per language, e.g. [de] with headline, short, body")

    texts: dict[str, Texts] = {}
    compiled: dict[tuple[str, str], jinja2.Template] = {}
    for language in languages:
        table = document[language]
        unknown_fields = set(table) - set(TEXT_FIELDS)
        if unknown_fields:
            raise fail(
                f"unknown key {sorted(unknown_fields)[0]!r}; a language table has "
                "headline, short and body", f"[{language}]",
            )
        used: set[str] = set()
        for text_field in TEXT_FIELDS:
            where = f"[{language}].{text_field}"
            source = table.get(text_field)
            if not isinstance(source, str) or not source.strip():
                raise fail("is required and must be a non-empty string", where)
            try:
                tree = environment.parse(source)
            except jinja2.TemplateSyntaxError as exc:
                raise fail(f"Jinja syntax error: {exc.message}", f"{where} line {exc.lineno}"
                           ) from None
            names = meta.find_undeclared_variables(tree)
            known = set(variables) | set(GLOBALS) | set(environment.globals)
            undeclared = sorted(names - known)
            if undeclared:
                raise fail(
                    f"variable {undeclared[0]!r} is used but not declared; add "
                    f"[variables.{undeclared[0]}] or use one of the globals "
                    f"({', '.join(GLOBALS)})", where,
                )
            used |= names
            compiled[(language, text_field)] = environment.from_string(source)
        unused = sorted(set(variables) - used)
        if unused:
            raise fail(
                f"variable {unused[0]!r} is declared but no {language!r} text uses it",
                f"[{language}]",
            )
        texts[language] = Texts(language, table["headline"], table["short"], table["body"])

    return Template(
        id=path.stem,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        title=document["title"],
        severity=severity,
        event=document["event"],
        category=document["category"],
        description=str(document.get("description", "")),
        kind=kind,
        expires_after=expires_after,
        variables=variables,
        texts=texts,
        compiled=compiled,
    )


def _parse_variables(table: Any, fail: Any) -> dict[str, Variable]:
    if not isinstance(table, dict):
        raise fail("[variables] must hold one table per variable", "variables")
    variables: dict[str, Variable] = {}
    for name, spec in table.items():
        where = f"[variables.{name}]"
        if not name.isidentifier() or name in GLOBALS:
            raise fail("variable names are identifiers and not one of the globals", where)
        if not isinstance(spec, dict):
            raise fail("must be a table with label and type", where)
        unknown = set(spec) - _VARIABLE_KEYS
        if unknown:
            raise fail(
                f"unknown key {sorted(unknown)[0]!r}; known keys: "
                f"{', '.join(sorted(_VARIABLE_KEYS))}", where,
            )
        kind = spec.get("type")
        if kind not in VARIABLE_TYPES:
            raise fail(f"type must be one of {', '.join(VARIABLE_TYPES)}", where)
        if not isinstance(spec.get("label"), str):
            raise fail("label is required (what the officer sees)", where)
        choices = spec.get("choices", [])
        if kind == "choice" and (not choices or not all(isinstance(c, str) for c in choices)):
            raise fail("a choice variable needs choices = [\"…\", …]", where)
        max_length = spec.get("max_length")
        if kind == "text" and not (isinstance(max_length, int) and max_length > 0):
            raise fail("a text variable needs max_length (a positive whole number)", where)
        for bound in ("min", "max"):
            if bound in spec and not isinstance(spec[bound], int | float):
                raise fail(f"{bound} must be a number", where)
        decimals = spec.get("decimals", 0)
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 6:
            raise fail("decimals must be a whole number from 0 to 6", where)
        translations = spec.get("translations", {})
        if not isinstance(translations, dict) or not all(
            isinstance(lang_map, dict) and all(k in choices and isinstance(v, str)
                                               for k, v in lang_map.items())
            for lang_map in translations.values()
        ):
            raise fail("translations maps a language to {choice = \"translated text\"} for "
                       "choices of this variable", where)
        example = spec.get("example")
        variable = Variable(
            name=name,
            label=spec["label"],
            type=kind,
            max_length=max_length,
            choices=tuple(choices),
            min=spec.get("min"),
            max=spec.get("max"),
            decimals=decimals,
            help=spec.get("help"),
            example=str(example) if example is not None else None,
            translations=translations,
        )
        if variable.example is not None:
            try:
                variable.clean(variable.example)
            except ValueError as exc:
                raise fail(f"example {exc}", where) from None
        variables[name] = variable
    return variables
