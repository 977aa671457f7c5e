"""What the console's pages show: exercise and live never alike, the form generated
from the variable schema, drafts unusable for live alerts, the status document, the
attempts, the security headers — and never a secret."""

from __future__ import annotations

import re

from broadcaster.auth import split_token
from broadcaster.console.i18n import LANGUAGES, TEXTS
from tests.console.conftest import MASTODON_TOKEN, PASSWORD, TELEGRAM_TOKEN, Stack
from tests.console.flow import EVACUATION, EXERCISE_CHANNELS, alert_id, preview, send
from tests.support import REPO, WEBHOOK_SECRET

EXERCISE = "/console/send/exercise"
LIVE = "/console/send/live"
FLOOD = {"river": "Mosel", "level": "8.25", "peak_time": "18:30", "area": "Lützel"}


def test_exercise_and_live_never_look_alike(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    for mode, banner, title, other in (
            ("exercise", "ÜBUNG – keine echte Warnung", "<title>ÜBUNG · ", "ECHTALARM"),
            ("live", "ECHTALARM – geht an die Öffentlichkeit", "<title>ECHTALARM · ", "ÜBUNG")):
        base = f"/console/send/{mode}"
        values = EVACUATION
        pages = [client.get(base), client.get(f"{base}/evakuierung"),
                 preview(client, base, "evakuierung", values,
                         ["uebung"] if mode == "exercise" else ["leitstelle"])]
        word = "SENDEN" if mode == "live" else None
        sent = alert_id(send(client, base, "evakuierung", values,
                             ["uebung"] if mode == "exercise" else ["leitstelle"], word))
        pages.append(client.get(f"/console/alerts/{sent}"))
        pages.append(client.get(f"/console/alerts/{sent}/attempts"))
        for page in pages:
            assert page.status == 200, page.text
            assert f'<body class="mode-{mode}">' in page.text
            assert banner in page.text and title in page.text
            assert f"banner-{other.lower()}" not in page.text


def test_the_form_is_generated_from_the_variable_schema(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    exercise = client.get(f"{EXERCISE}/hochwasser").text
    assert re.search(r'<select id="field-river" name="var_river" required', exercise)
    assert "<option selected>Rhein</option>" in exercise  # the example, in an exercise
    level = re.search(r'<input id="field-level"[^>]*>', exercise, re.S)
    assert level is not None
    for attribute in ('type="number"', 'value="7.80"', 'step="0.01"', 'min="3"', 'max="12"'):
        assert attribute in level[0]
    assert re.search(r'id="field-peak_time"[^>]*type="time"[^>]*value="18:00"', exercise)
    assert re.search(r'id="field-area"[^>]*maxlength="80"', exercise)
    assert "von 3 bis 12 · 2 Nachkommastellen" in exercise
    assert "Erwarteter Scheitel am maßgeblichen Pegel" in exercise  # the help text
    assert 'id="field-area-count"' in exercise and "von 80 Zeichen" in exercise

    live = client.get(f"{LIVE}/hochwasser").text
    assert "<option selected>" not in live and 'value="7.80"' not in live
    assert re.search(r'id="field-area"[^>]*value=""', live)
    update = client.get(f"{EXERCISE}/lageupdate")
    assert update.status == 404  # an update template is no first alert


def test_the_preview_shows_each_channel_exactly_as_posted(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    page = preview(client, EXERCISE, "evakuierung", EVACUATION, list(EXERCISE_CHANNELS))
    assert page.status == 200
    for channel in EXERCISE_CHANNELS:
        assert f'data-channel="{channel}"' in page.text
    assert "+++ ÜBUNG +++" in page.text
    assert "<b>" not in page.text and "&lt;b&gt;" not in page.text  # Telegram: visible text
    assert re.search(r"\d+ von 4096 Zeichen", page.text)  # Telegram's limit
    assert re.search(r"\d+ von 500 Zeichen", page.text)  # Mastodon's limit


def test_live_alerts_offer_approved_templates_only(stack: Stack) -> None:
    path = stack.templates / "stromausfall.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    client = stack.signed_in("duty-1")
    live = client.get(LIVE).text
    draft = re.search(r'<span class="template-choice disabled"[^>]*data-template="stromausfall"'
                      r".*?</span>\s*</span>", live, re.S)
    assert draft is not None and "nicht freigegeben" in draft[0]
    assert f'href="{LIVE}/stromausfall"' not in live
    assert client.get(f"{LIVE}/stromausfall").status == 409
    assert f'href="{EXERCISE}/stromausfall"' in client.get(EXERCISE).text
    assert client.get(f"{EXERCISE}/stromausfall").status == 200


def test_the_status_document_and_the_attempts(stack: Stack) -> None:
    client = stack.signed_in("press-1")
    officer = stack.signed_in("duty-1")
    sent = alert_id(send(officer, EXERCISE, "evakuierung", EVACUATION, ["uebung"]))
    stack.settled(sent)
    status = client.get(f"/console/alerts/{sent}/status")
    assert status.status == 200 and status.headers["Cache-Control"] == "no-store"
    assert '"state": "delivered"' in status.text and '"state_label": "zugestellt"' in status.text
    attempts = client.get(f"/console/alerts/{sent}/attempts")
    assert attempts.status == 200 and "delivered" in attempts.text
    assert client.get("/console/alerts/01ABCDEFGHJKMNPQRSTVWXYZ00").status == 404


def test_the_alert_list_is_paged_newest_first(stack: Stack) -> None:
    officer = stack.signed_in("duty-1")
    for _ in range(3):
        alert_id(send(officer, EXERCISE, "evakuierung", EVACUATION, ["uebung"]))
    newest = stack.api("GET", "/api/v1/alerts?limit=25")[1]["alerts"]
    listing = officer.get("/console/alerts").text
    ids = re.findall(r'<a href="/console/alerts/([0-9A-Z]{26})">', listing)
    assert ids == [a["id"] for a in newest][:20]
    if len(newest) > 20:
        older = officer.get(f"/console/alerts?before={ids[-1]}").text
        assert re.findall(r'<a href="/console/alerts/([0-9A-Z]{26})">', older)[0] == \
            newest[20]["id"]


def test_console_answers_carry_security_headers(stack: Stack) -> None:
    client = stack.client()
    for path in ("/console/login", "/console/static/console.css"):
        page = client.get(path)
        assert page.status == 200
        assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    signed = stack.signed_in("duty-1")
    page = signed.get("/console/")
    assert page.headers["Cache-Control"] == "no-store"
    for template in (REPO / "broadcaster/console/templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"\son[a-z]+=", text), f"inline event handler in {template}"
        assert "<script>" not in text and " style=" not in text, template


def _secret_of(token: str) -> str:
    # The token's own parser: its secret may itself contain "_".
    parts = split_token(token)
    assert parts is not None
    return parts[1]


def test_pages_never_show_a_secret(stack: Stack) -> None:
    officer = stack.signed_in("duty-1")
    stack.sandbox.fault("telegram", "error", value=401, count=1)
    sent = alert_id(send(officer, EXERCISE, "evakuierung", EVACUATION, list(EXERCISE_CHANNELS)))
    stack.settled(sent)
    stack.sandbox.clear_faults()
    session = officer.cookie("bc_session")
    assert session
    secrets = [WEBHOOK_SECRET, TELEGRAM_TOKEN, TELEGRAM_TOKEN.split(":")[1], MASTODON_TOKEN,
               PASSWORD, session, "scrypt$", *stack.tokens.values(),
               *(_secret_of(t) for t in stack.tokens.values())]
    paths = ["/console/", "/console/alerts", f"/console/alerts/{sent}",
             f"/console/alerts/{sent}/status", f"/console/alerts/{sent}/attempts",
             "/console/send", EXERCISE, f"{EXERCISE}/evakuierung",
             f"/console/alerts/{sent}/followup/allclear/entwarnung"]
    pages = [(path, officer.get(path)) for path in paths]
    pages.append(("preview", preview(officer, EXERCISE, "evakuierung", EVACUATION,
                                     ["telegram-uebung"])))
    pages.append(("/console/login", stack.client().get("/console/login")))
    for path, page in pages:
        assert page.status == 200, f"{path}: HTTP {page.status}\n{page.text[:2000]}"
        for secret in secrets:
            assert secret not in page.text, f"{path} shows a secret"


def test_every_dictionary_entry_has_both_languages_and_every_used_key_exists() -> None:
    assert LANGUAGES == ("de", "en")
    for key, texts in TEXTS.items():
        assert len(texts) == 2 and all(texts), key
    root = REPO / "broadcaster/console"
    used = set()
    for path in [*root.glob("*.py"), *root.glob("templates/*.html")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_]+)["']""",
                               path.read_text(encoding="utf-8")))
    assert used and used <= set(TEXTS), sorted(used - set(TEXTS))
