"""The console's send flow over HTTP, as a browser walks it: form → preview → send."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tests.console.client import Client, Page

EVACUATION = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
              "shelter": "Rhein-Mosel-Halle"}
EXERCISE_CHANNELS = ("uebung", "telegram-uebung", "mastodon-uebung")
_ALERT_ID = re.compile(r"^/console/alerts/([0-9A-Z]{26})$")


def preview(client: Client, base: str, template: str, values: Mapping[str, str],
            channels: Sequence[str]) -> Page:
    """Open the form of ``base``/``template`` and submit it for the preview."""
    form = client.get(f"{base}/{template}")
    assert form.status == 200, form.text
    fields = [("csrf", form.hidden("csrf"))]
    fields += [(f"var_{name}", value) for name, value in values.items()]
    fields += [("channel", channel) for channel in channels]
    return client.post(f"{base}/{template}/preview", fields)


def send_form(page: Page, base: str, template: str) -> list[tuple[str, str]]:
    """The hidden fields of the preview's send form (values, channels, key, CSRF)."""
    return page.hidden_fields(f"{base}/{template}/send")


def send(client: Client, base: str, template: str, values: Mapping[str, str],
         channels: Sequence[str], word: str | None = None) -> Page:
    page = preview(client, base, template, values, channels)
    assert page.status == 200, page.text
    fields = send_form(page, base, template)
    if word is not None:
        fields.append(("confirm_word", word))
    return client.post(f"{base}/{template}/send", fields)


def alert_id(page: Page) -> str:
    """The id of the alert whose board a send redirected to."""
    assert page.status == 303, page.text
    match = _ALERT_ID.match(page.location)
    assert match, page.location
    return match[1]
