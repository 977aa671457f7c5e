"""The send flow and the follow-up flow: mode → template → form → preview → send.

New alert:  /console/send → /console/send/{mode} → /console/send/{mode}/{template}
            → POST …/preview → POST …/send → the alert's status board.
Follow-up:  /console/alerts/{id}/followup/{kind} (skipped when one template fits)
            → …/{template} → POST …/preview → POST …/send.

The mode is an explicit first step and part of every URL of the flow, so every page
shows it. The preview is ``Composer.prepare`` and the send is ``api.alerts.accept``,
exactly what the JSON API runs. Each rendered preview carries a fresh idempotency
key, so a double click sends one alert; a live send needs the typed word.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from broadcaster.accept import AlertRequest, Prepared
from broadcaster.api.alerts import accept, needs_second_officer
from broadcaster.appkeys import CATALOG, CLOCK, COMPOSER, CONFIG, DATABASE
from broadcaster.approvals import ApprovalState
from broadcaster.console import forms
from broadcaster.console.guard import page
from broadcaster.console.i18n import TEXTS, translator
from broadcaster.console.render import error_page, render, see_other
from broadcaster.console.session import language
from broadcaster.errors import NotFound, ValidationError
from broadcaster.models import Alert, AlertKind, Mode, Severity
from broadcaster.templates import Template

_SEVERITY_ORDER = list(Severity)
# The word a live send must be confirmed with, in every console language.
CONFIRM_WORDS = {word.casefold() for word in TEXTS["send.confirm_word"]}


@dataclass(frozen=True)
class Flow:
    """Where in which flow a request is: the mode, the kind and what it follows up."""

    mode: Mode
    kind: AlertKind
    reference: Alert | None
    base: str  # the flow's URL up to the template id

    def url(self, template: str, step: str = "") -> str:
        return f"{self.base}/{template}" + (f"/{step}" if step else "")


@dataclass(frozen=True)
class TemplateOption:
    template: Template
    approval: ApprovalState
    usable: bool


async def _flow(request: web.Request) -> Flow:
    info = request.match_info
    if "id" in info:
        database = request.app[DATABASE]
        reference = await database.read(database.store.get_alert, info["id"])
        if info["kind"] not in ("update", "allclear", "correction"):
            raise NotFound(f"no follow-up of kind {info['kind']!r}")
        kind = AlertKind(info["kind"])
        return Flow(reference.mode, kind, reference,
                    f"/console/alerts/{reference.id}/followup/{kind.value}")
    if info["mode"] not in ("live", "exercise"):
        raise NotFound(f"no mode {info['mode']!r}: live or exercise")
    mode = Mode(info["mode"])
    return Flow(mode, AlertKind.ALERT, None, f"/console/send/{mode.value}")


def _options(request: web.Request, flow: Flow) -> list[TemplateOption]:
    snapshot = request.app[CATALOG].snapshot()
    found = [t for t in snapshot.templates.templates.values() if t.kind is flow.kind]
    found.sort(key=lambda t: (_SEVERITY_ORDER.index(t.severity), t.title))
    options = []
    for template in found:
        state = snapshot.approval(template)
        usable = flow.mode is Mode.EXERCISE or state is ApprovalState.APPROVED
        options.append(TemplateOption(template, state, usable))
    return options


def _frame(request: web.Request, flow: Flow, step: str, template: Template | None = None
           ) -> dict[str, Any]:
    """What every page of the flow shows: the mode (banner, colours, title) and where."""
    t = translator(language(request))
    heading = t("send.title")
    if flow.reference is not None:
        heading = t("send.followup_title", kind=t(f"kind.{flow.kind.value}"),
                    title=_title_of(request, flow.reference))
    title = " · ".join(p for p in (t(f"mode.{flow.mode.value}"), heading,
                                   template.title if template else "", t(step)) if p)
    return {"mode": flow.mode.value, "flow": flow, "heading": heading, "title": title,
            "step": t(step)}


def _title_of(request: web.Request, alert: Alert) -> str:
    templates = request.app[CATALOG].snapshot().templates.templates
    template = templates.get(alert.template)
    return template.title if template else alert.template


@page("officer")
async def choose_mode(request: web.Request) -> web.StreamResponse:
    t = translator(language(request))
    return render(request, "send_mode.html", title=t("send.title"), step=t("send.step_mode"))


@page("officer")
async def choose_template(request: web.Request) -> web.StreamResponse:
    flow = await _flow(request)
    options = _options(request, flow)
    usable = [o for o in options if o.usable]
    if flow.reference is not None and len(usable) == 1:
        raise web.HTTPSeeOther(flow.url(usable[0].template.id))  # one click to the form
    return render(request, "send_templates.html", options=options,
                  **_frame(request, flow, "send.step_template"))


async def _template(request: web.Request, flow: Flow) -> Template | web.Response:
    snapshot = request.app[CATALOG].snapshot()
    template = snapshot.templates.get(request.match_info["template"])
    if template.kind is not flow.kind:
        raise NotFound(f"{template.id!r} is a {template.kind.value} template, "
                       f"not a {flow.kind.value} template")
    if flow.mode is Mode.LIVE and snapshot.approval(template) is not ApprovalState.APPROVED:
        return error_page(request, 409, translator(language(request))("send.live_only_approved"))
    return template


@page("officer")
async def show_form(request: web.Request) -> web.StreamResponse:
    flow = await _flow(request)
    template = await _template(request, flow)
    if isinstance(template, web.Response):
        return template
    if any(key.startswith(forms.PREFIX) for key in request.query):
        values = forms.submitted_values(request.query, template)
        channels = [c for c in request.query.getall("channel", [])]
    else:
        subjects: list[str] = []
        if flow.reference is not None:
            headline = forms.headline_of(flow.reference, request.app[CONFIG])
            subjects = [s for s in (headline, _title_of(request, flow.reference)) if s]
        values = forms.initial_values(template, flow.mode, flow.reference, subjects)
        channels = _default_channels(request, flow)
    return _form_page(request, flow, template, values, channels, {})


def _default_channels(request: web.Request, flow: Flow) -> list[str]:
    eligible = forms.eligible_channels(request.app[CONFIG], flow.mode)
    if flow.reference is None:
        return eligible
    before = {d.channel for d in flow.reference.deliveries}
    return [c for c in eligible if c in before] or eligible


def _form_page(request: web.Request, flow: Flow, template: Template, values: dict[str, str],
               channels: list[str], errors: dict[str, str], status: int = 200) -> web.Response:
    t = translator(language(request))
    other = {k: v for k, v in errors.items() if not k.startswith("variables.")}
    return render(
        request, "send_form.html", http_status=status, template=template,
        fields=forms.fields(template, values, errors, t), problems=other,
        channels=forms.eligible_channels(request.app[CONFIG], flow.mode), chosen=channels,
        **_frame(request, flow, "send.step_form", template))


def _submitted(form: Any, template: Template, flow: Flow) -> tuple[dict[str, str], list[str],
                                                                    AlertRequest]:
    values = forms.submitted_values(form, template)
    channels = forms.submitted_channels(form)
    alert_request = AlertRequest(
        template=template.id, variables=values, mode=flow.mode.value, channels=channels,
        kind=flow.kind, references=flow.reference.id if flow.reference else None)
    return values, channels, alert_request


@page("officer")
async def preview(request: web.Request) -> web.StreamResponse:
    flow = await _flow(request)
    template = await _template(request, flow)
    if isinstance(template, web.Response):
        return template
    values, channels, alert_request = _submitted(await request.post(), template, flow)
    return _checked_preview(request, flow, template, values, channels, alert_request,
                            key="console-" + secrets.token_urlsafe(18))


def _checked_preview(request: web.Request, flow: Flow, template: Template,
                     values: dict[str, str], channels: list[str],
                     alert_request: AlertRequest, key: str, status: int = 200,
                     word_error: str | None = None) -> web.Response:
    """The preview page, or the form again when the values cannot be rendered."""
    t = translator(language(request))
    if not channels:
        return _form_page(request, flow, template, values, channels,
                          {"channels": t("send.channels_none")}, 422)
    try:
        prepared = request.app[COMPOSER].prepare(alert_request, request.app[CLOCK](),
                                                 flow.reference)
    except ValidationError as exc:
        return _form_page(request, flow, template, values, channels, dict(exc.problems), 422)
    return _preview_page(request, flow, template, prepared, values, channels, key,
                         status=422 if prepared.problems or word_error else status,
                         word_error=word_error)


def _preview_page(request: web.Request, flow: Flow, template: Template, prepared: Prepared,
                  values: dict[str, str], channels: list[str], key: str, status: int,
                  word_error: str | None) -> web.Response:
    query = urlencode([*((forms.PREFIX + k, v) for k, v in values.items()),
                       *(("channel", c) for c in channels)])
    return render(
        request, "send_preview.html", http_status=status, template=template,
        prepared=prepared, values=values, channels=channels, key=key, word_error=word_error,
        edit_url=f"{flow.url(template.id)}?{query}",
        second_officer=needs_second_officer(request, flow.mode.value, flow.kind),
        **_frame(request, flow, "send.step_preview", template))


@page("officer")
async def send(request: web.Request) -> web.StreamResponse:
    flow = await _flow(request)
    template = await _template(request, flow)
    if isinstance(template, web.Response):
        return template
    form = await request.post()
    values, channels, alert_request = _submitted(form, template, flow)
    key = form.get("idempotency_key")
    if not isinstance(key, str) or not 8 <= len(key) <= 255:
        return error_page(request, 400, translator(language(request))("error.form"))
    word = form.get("confirm_word")
    if flow.mode is Mode.LIVE and not (isinstance(word, str)
                                       and word.strip().casefold() in CONFIRM_WORDS):
        t = translator(language(request))
        return _checked_preview(request, flow, template, values, channels, alert_request, key,
                                word_error=t("send.word_wrong", word=t("send.confirm_word")))
    try:
        alert, _ = await accept(request, alert_request, flow.reference, key, via="console")
    except ValidationError:
        # Something changed since the preview (a template edit, a channel switched off):
        # show the preview again with what is wrong now.
        return _checked_preview(request, flow, template, values, channels, alert_request, key,
                                status=422)
    return see_other(f"/console/alerts/{alert.id}")


ROUTES = [
    web.get("/console/send", choose_mode),
    web.get("/console/send/{mode}", choose_template),
    web.get("/console/send/{mode}/{template}", show_form),
    web.post("/console/send/{mode}/{template}/preview", preview),
    web.post("/console/send/{mode}/{template}/send", send),
    web.get("/console/alerts/{id}/followup/{kind}", choose_template),
    web.get("/console/alerts/{id}/followup/{kind}/{template}", show_form),
    web.post("/console/alerts/{id}/followup/{kind}/{template}/preview", preview),
    web.post("/console/alerts/{id}/followup/{kind}/{template}/send", send),
]
