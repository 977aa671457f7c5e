"""From a request to an alert ready for the ledger: validation, channel choice,
rendering and length checks, all before anything is written.

Shared by the API (send, preview, follow-ups), the CLI and the scheduler. Every
problem is collected into one ValidationError that names each bad field, so an
officer fixes everything in one go; nothing half-valid reaches the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from broadcaster.approvals import ApprovalState
from broadcaster.catalog import Catalog
from broadcaster.channels import KINDS
from broadcaster.channels.base import Channel, Composed, RenderedText
from broadcaster.config import ChannelConfig, Config
from broadcaster.errors import ValidationError
from broadcaster.models import Alert, AlertKind, Mode, new_id
from broadcaster.store import SCHEDULED, NewAlert, NewDelivery
from broadcaster.templates import RenderContext, Template, render_languages
from broadcaster.timing import Repeat, parse_repeat, reminder_note


@dataclass(frozen=True)
class AlertRequest:
    """What an officer asks for (API body, CLI flags or a scheduled job)."""

    template: str
    variables: Mapping[str, Any]
    mode: str = "live"
    channels: Sequence[str] | None = None
    send_at: datetime | None = None
    kind: AlertKind = AlertKind.ALERT
    references: str | None = None
    repeat: Mapping[str, Any] | None = None

    def fingerprint(self) -> str:
        """A hash of the request, to tell a repeat from a different request."""
        document = {
            "template": self.template, "variables": dict(self.variables), "mode": self.mode,
            "channels": sorted(self.channels) if self.channels is not None else None,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "kind": self.kind.value, "references": self.references,
            "repeat": dict(self.repeat) if self.repeat is not None else None,
        }
        encoded = json.dumps(document, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChannelPreview:
    channel: str
    kind: str
    composed: Composed
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A validated, rendered request: what preview shows and accept stores."""

    alert_id: str
    template: Template
    mode: Mode
    values: dict[str, str]
    previews: tuple[ChannelPreview, ...]
    problems: dict[str, str] = field(default_factory=dict)
    repeat: Repeat | None = None


class Composer:
    """Validates and renders requests against the configuration and templates."""

    def __init__(self, config: Config, catalog: Catalog,
                 channels: Mapping[str, Channel] | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.channels = channels or {}

    def prepare(self, request: AlertRequest, now: datetime,
                reference: Alert | None = None) -> Prepared:
        """Validate and render; problems are collected in ``Prepared.problems``.

        Raises UnknownTemplate for an id that is not loaded, and ValidationError
        when nothing can be rendered (bad mode or variables).
        """
        snapshot = self.catalog.snapshot()
        problems: dict[str, str] = {}
        mode = self._mode(request, reference, problems)
        template = snapshot.templates.get(request.template)
        if not isinstance(request.variables, Mapping):
            raise ValidationError({"variables": "must be an object of variable values"})
        try:
            values = template.clean_values(request.variables)
        except ValidationError as exc:
            problems.update(exc.problems)
            values = {}
        if mode is None:
            raise ValidationError(problems)

        state = snapshot.approval(template)
        if mode is Mode.LIVE and state is not ApprovalState.APPROVED:
            problems["template"] = (
                f"{template.id!r} is {state.label}: live alerts use approved templates only "
                "(exercises may use drafts); ask the press office to approve it"
            )
        self._check_kind(request, template, reference, problems)
        channels = self._channels(request, mode, reference, problems)
        if any(key.startswith("variables") for key in problems):
            raise ValidationError(problems)  # nothing to render with

        alert_id = new_id()
        context = RenderContext(
            city=self.config.service.city, info_url=self.config.service.info_url,
            alert_id=alert_id, sent_at=request.send_at or now, mode=mode,
            exercise_banner=self.config.service.exercise_banner,
            timezone=self.config.service.timezone,
        )
        repeat = self._repeat(request, now, problems)
        zone = ZoneInfo(self.config.service.timezone)
        previews = []
        # Channels of one kind and languages get the same text: render and count once.
        rendered: dict[tuple[str, ...], list[RenderedText]] = {}
        composed_for: dict[tuple[str, tuple[str, ...], int | None], Composed] = {}
        for channel in channels:
            if channel.languages not in rendered:
                rendered[channel.languages] = render_languages(template, values, context,
                                                               channel.languages)
            live = self.channels.get(channel.name)
            limit = live.length_limit() if live is not None else None
            kind = KINDS[channel.kind]
            key = (channel.kind, channel.languages, limit)
            if key not in composed_for:
                composed_for[key] = kind.compose(rendered[channel.languages], limit)
            composed = composed_for[key]
            issues: tuple[str, ...] = ()
            if composed.too_long:
                issues = (f"{composed.length} characters, {channel.kind} allows {composed.limit}: "
                          "shorten the values (nothing is cut off automatically)",)
                problems[f"channels.{channel.name}"] = issues[0]
            elif repeat is not None and composed.limit is not None:
                note = reminder_note(channel.languages[0], now, zone)
                with_note = kind.count(composed.text + note)
                if with_note > composed.limit:
                    issues = (f"a repetition adds a reminder line: {with_note} characters, "
                              f"{channel.kind} allows {composed.limit}",)
                    problems["repeat"] = f"channel {channel.name!r}: {issues[0]}"
            previews.append(ChannelPreview(channel.name, channel.kind, composed, issues))
        return Prepared(alert_id, template, mode, values, tuple(previews), problems, repeat)

    def _repeat(self, request: AlertRequest, now: datetime,
                problems: dict[str, str]) -> Repeat | None:
        if request.repeat is None:
            return None
        if request.kind is not AlertKind.ALERT:
            problems["repeat"] = "only an alert repeats; its follow-ups end or update it"
            return None
        try:
            return parse_repeat(request.repeat, ZoneInfo(self.config.service.timezone),
                                request.send_at or now)
        except ValidationError as exc:
            problems.update(exc.problems)
            return None

    def accept(
        self, request: AlertRequest, created_by: str, now: datetime,
        reference: Alert | None = None, idempotency_key: str | None = None,
        hold: str | None = None,
    ) -> NewAlert:
        """A NewAlert for the store, or ValidationError naming every problem."""
        prepared = self.prepare(request, now, reference)
        if prepared.problems:
            raise ValidationError(prepared.problems)
        template = prepared.template
        expires_at = None
        if template.expires_after is not None and request.kind is AlertKind.ALERT:
            expires_at = (request.send_at or now) + template.expires_after
        if hold is None and request.send_at is not None:
            hold = SCHEDULED
        return NewAlert(
            id=prepared.alert_id,
            template=prepared.template.id,
            template_sha256=prepared.template.sha256,
            variables=prepared.values,
            mode=prepared.mode,
            kind=request.kind,
            severity=prepared.template.severity,
            references=request.references,
            created_by=created_by,
            created_at=now,
            send_at=request.send_at,
            hold=hold,
            idempotency_key=idempotency_key,
            request_hash=request.fingerprint() if idempotency_key else None,
            repeat=prepared.repeat.to_json() if prepared.repeat else None,
            expires_at=expires_at,
            deliveries=tuple(
                NewDelivery(new_id(), p.channel, p.composed.headline, p.composed.text)
                for p in prepared.previews
            ),
        )

    def _mode(self, request: AlertRequest, reference: Alert | None,
              problems: dict[str, str]) -> Mode | None:
        try:
            mode = Mode(request.mode)
        except ValueError:
            problems["mode"] = f"must be \"live\" or \"exercise\", not {request.mode!r}"
            return None
        if reference is not None and mode is not reference.mode:
            problems["mode"] = (f"a follow-up has the mode of the alert it follows "
                                f"({reference.mode.value})")
            return None
        return mode

    def _check_kind(self, request: AlertRequest, template: Template, reference: Alert | None,
                    problems: dict[str, str]) -> None:
        if request.kind is AlertKind.ALERT:
            if request.references is not None:
                problems["kind"] = "a follow-up is an update, allclear or correction"
            elif template.kind is not AlertKind.ALERT:
                problems["template"] = (f"{template.id!r} is a {template.kind.value} template; "
                                        "send it as a follow-up of the alert it concerns")
            return
        if reference is None:
            problems["references"] = f"a {request.kind.value} follows up an earlier alert"
        if request.kind in (AlertKind.ALLCLEAR, AlertKind.CORRECTION):
            if template.kind is not request.kind:
                problems["template"] = (f"a {request.kind.value} uses a {request.kind.value} "
                                        f"template; {template.id!r} is a {template.kind.value} "
                                        "template")
        elif template.kind not in (AlertKind.ALERT, AlertKind.UPDATE):
            problems["template"] = (f"an update uses an alert or update template; "
                                    f"{template.id!r} is a {template.kind.value} template")

    def _channels(self, request: AlertRequest, mode: Mode, reference: Alert | None,
                  problems: dict[str, str]) -> list[ChannelConfig]:
        exercise = mode is Mode.EXERCISE
        eligible = [c for c in self.config.channels if c.enabled and c.exercise == exercise]
        if request.channels is not None:
            chosen = []
            for name in request.channels:
                channel = self.config.channel(name) if isinstance(name, str) else None
                if channel is None:
                    known = ", ".join(c.name for c in self.config.channels)
                    problems["channels"] = f"unknown channel {name!r} (configured: {known})"
                elif not channel.enabled:
                    problems["channels"] = f"channel {name!r} is disabled in channels.toml"
                elif channel.exercise != exercise:
                    problems["channels"] = (
                        f"channel {name!r} is an exercise channel; live alerts never go there"
                        if channel.exercise else
                        f"channel {name!r} is a live channel; exercises go only to channels "
                        "with exercise = true"
                    )
                elif channel not in chosen:
                    chosen.append(channel)
        elif reference is not None:
            before = {d.channel for d in reference.deliveries}
            chosen = [c for c in eligible if c.name in before] or eligible
        else:
            chosen = eligible
        if not chosen and "channels" not in problems:
            problems["channels"] = f"no enabled {mode.value} channels are configured"
        return chosen
