"""`broadcaster templates check`: render every template with extreme inputs.

Each text variable at its max_length with umlauts and emoji, every choice, both
number bounds, in every language, live and as an exercise (the banner counts too).
Reports: a `short` text over X's 280 weighted characters (it is the text of every
short-form channel, configured or not), any post over the limit of a configured
channel, render failures, texts missing for a configured channel's language, and
missing or stale approvals. Load problems (syntax, unknown keys, undeclared
variables) come from the TemplateSet.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from broadcaster import lengths
from broadcaster.approvals import Approval, ApprovalState, approval_state
from broadcaster.channels import KINDS
from broadcaster.config import Config
from broadcaster.errors import TemplateError
from broadcaster.models import Mode
from broadcaster.templates import (
    DEFAULT_URL_MAX,
    RenderContext,
    Template,
    TemplateSet,
    Variable,
    format_number,
    render,
    render_languages,
)

# Umlauts, ß and emoji: what makes lengths differ between platforms.
_EXTREME_PATTERN = "Überflutung Ölhafen-Süd, Straßenbrücke 🚨 Äußere Grüngürtel ⚠️ "
SAMPLE_ALERT_ID = "01KAZZZZZZZZZZZZZZZZZZZZZZ"
SAMPLE_SENT_AT = datetime(2026, 12, 31, 22, 59, tzinfo=UTC)


@dataclass(frozen=True)
class Problem:
    template: str
    message: str
    # True for "not approved" / "changed, not approved": the problems approving fixes.
    approval: bool = False

    def __str__(self) -> str:
        return f"{self.template}: {self.message}"


def extreme_values(variable: Variable) -> list[str]:
    """The longest or boundary inputs the variable admits; the worst one first."""
    if variable.type == "text":
        limit = variable.max_length or 0
        text = (_EXTREME_PATTERN * (limit // len(_EXTREME_PATTERN) + 1))[:limit]
        return [text.rstrip() + "Ä" * (limit - len(text.rstrip()))]
    if variable.type == "choice":
        # Longest as any language shows it (translations differ in length).
        def shown_length(choice: str) -> int:
            shown = [choice, *(t.get(choice, choice) for t in variable.translations.values())]
            return max(len(s) for s in shown)
        return sorted(variable.choices, key=shown_length, reverse=True)
    if variable.type == "number":
        return _longest_numbers(variable)
    if variable.type == "time":
        return ["23:59"]
    if variable.type == "date":
        return ["2026-12-31"]
    limit = variable.max_length or DEFAULT_URL_MAX
    prefix = "https://www.beispielstadt.de/warnung/"
    return [prefix + "ä" * (limit - len(prefix))]


def _longest_numbers(variable: Variable) -> list[str]:
    """Both bounds, and numbers near them that use every decimal place allowed."""
    low = -999_999_999_999.0 if variable.min is None else variable.min
    high = 999_999_999_999.0 if variable.max is None else variable.max
    values = {format_number(low), format_number(high)}
    if variable.decimals:
        fraction = 10 ** -variable.decimals * (10 ** variable.decimals - 1)  # 0.99…
        for whole in {math.floor(high), math.floor(high) - 1, math.ceil(low), math.ceil(low) + 1}:
            number = whole + fraction if whole >= 0 else whole - fraction
            if low <= number <= high:
                values.add(f"{number:.{variable.decimals}f}")
    return sorted(values, key=len, reverse=True)


def input_sets(template: Template) -> Iterator[dict[str, str]]:
    """The worst case for every variable at once, then each alternative of each."""
    extremes = {name: extreme_values(v) for name, v in template.variables.items()}
    worst = {name: values[0] for name, values in extremes.items()}
    yield worst
    for name, values in extremes.items():
        for value in values[1:]:
            yield {**worst, name: value}


def check_templates(
    template_set: TemplateSet, approvals: Mapping[str, Approval], config: Config
) -> list[Problem]:
    """Every problem of every template; empty means the set is ready for use."""
    problems = [Problem(p.file.removesuffix(".toml"), str(p)) for p in template_set.problems]
    for template in template_set.templates.values():
        problems.extend(_check_one(template, approvals, config))
    return problems


def _check_one(
    template: Template, approvals: Mapping[str, Approval], config: Config
) -> Iterator[Problem]:
    state = approval_state(template, approvals)
    if state is ApprovalState.DRAFT:
        yield Problem(template.id, "not approved: after review run "
                      f"`broadcaster templates approve {template.id} --by NAME`", approval=True)
    elif state is ApprovalState.CHANGED:
        approval = approvals[template.id]
        yield Problem(template.id, f"changed, not approved (approved by {approval.approved_by} "
                      f"at {approval.approved_at}, file changed since): review and approve again",
                      approval=True)

    for channel in config.channels:
        missing = [lang for lang in channel.languages if lang not in template.texts]
        if missing:
            yield Problem(template.id, f"no [{missing[0]}] texts, but channel {channel.name!r} "
                          f"posts in {missing[0]!r}")

    reported: set[tuple[str, ...]] = set()
    for values, mode in itertools.product(list(input_sets(template)), Mode):
        context = RenderContext(
            city=config.service.city, info_url=config.service.info_url or "https://example.org",
            alert_id=SAMPLE_ALERT_ID, sent_at=SAMPLE_SENT_AT, mode=mode,
            exercise_banner=config.service.exercise_banner, timezone=config.service.timezone,
        )
        try:
            for language in template.languages:
                rendered = render(template, values, context, language)
                weighted = lengths.x_weighted_length(rendered.short)
                key: tuple[str, ...] = ("short", language)
                if weighted > lengths.X_LIMIT and key not in reported:
                    reported.add(key)
                    yield Problem(
                        template.id, f"[{language}].short is {weighted} X-weighted characters "
                        f"with the longest inputs ({mode.value}); the limit is {lengths.X_LIMIT}",
                    )
            for channel in config.channels:
                kind = KINDS[channel.kind]
                texts = render_languages(template, values, context, channel.languages)
                composed = kind.compose(texts)
                key = ("channel", channel.kind, *channel.languages)
                if composed.too_long and key not in reported:
                    reported.add(key)
                    yield Problem(
                        template.id, f"[{'+'.join(channel.languages)}] is {composed.length} "
                        f"characters on {channel.kind} (channel {channel.name!r}) with the longest "
                        f"inputs ({mode.value}); the limit is {composed.limit}",
                    )
        except TemplateError as exc:
            yield Problem(template.id, str(exc))
            return
