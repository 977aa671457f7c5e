"""What the console lets people do: CSRF on every form, roles, the two-person rule,
the typed word for live alerts, one alert per form however often it is submitted,
retries and follow-ups — over HTTP against the real daemon."""

from __future__ import annotations

from typing import Any

from tests.console.client import Client
from tests.console.conftest import PASSWORD, Stack
from tests.console.flow import EVACUATION, EXERCISE_CHANNELS, alert_id, preview, send, send_form

EXERCISE = "/console/send/exercise"
LIVE = "/console/send/live"


def _count(stack: Stack) -> int:
    return len(stack.api("GET", "/api/v1/alerts?limit=500")[1]["alerts"])


def _exercise_alert(stack: Stack, client: Client) -> str:
    return alert_id(send(client, EXERCISE, "evakuierung", EVACUATION, ["uebung"]))


def _held_live_alert(stack: Stack, client: Client) -> str:
    new = alert_id(send(client, LIVE, "evakuierung", EVACUATION, ["leitstelle"], "SENDEN"))
    assert stack.alert(new)["state"] == "awaiting_approval"
    return new


def test_every_form_refuses_a_missing_or_wrong_csrf_token(stack: Stack) -> None:
    officer = stack.signed_in("duty-1")
    second = stack.signed_in("duty-2")
    delivered = _exercise_alert(stack, officer)
    stack.settled(delivered)
    held = _held_live_alert(stack, officer)
    stack.sandbox.fault("webhook", "error", target="uebung", value=400, count=1)
    failed = _exercise_alert(stack, officer)
    failing = stack.settled(failed)["deliveries"][0]
    assert failing["state"] == "failed"

    new_preview = preview(officer, EXERCISE, "evakuierung", EVACUATION, ["uebung"])
    followup = f"/console/alerts/{delivered}/followup/allclear"
    allclear_preview = preview(officer, followup, "entwarnung", {"subject": "Oberwerth"},
                               ["uebung"])
    forms: list[tuple[Client, str, list[tuple[str, str]]]] = [
        (officer, "/console/logout", []),
        (officer, f"{EXERCISE}/evakuierung/preview",
         [(f"var_{k}", v) for k, v in EVACUATION.items()] + [("channel", "uebung")]),
        (officer, f"{EXERCISE}/evakuierung/send",
         send_form(new_preview, EXERCISE, "evakuierung")),
        (officer, f"{followup}/entwarnung/preview", [("var_subject", "Oberwerth"),
                                                     ("channel", "uebung")]),
        (officer, f"{followup}/entwarnung/send",
         send_form(allclear_preview, followup, "entwarnung")),
        (second, f"/console/alerts/{held}/approve", []),
        (second, f"/console/alerts/{held}/withdraw", []),
        (officer, f"/console/deliveries/{failing['id']}/retry", []),
    ]
    before = _count(stack)
    for client, path, fields in forms:
        without = [(k, v) for k, v in fields if k != "csrf"]
        for label, extra in (("missing", []), ("wrong", [("csrf", "0" * 64)])):
            page = client.post(path, without + extra)
            assert page.status == 403, f"{path} with a {label} CSRF token: {page.status}"
            assert "gefälschten Anfragen" in page.text
    assert _count(stack) == before, "a refused form sent an alert"
    assert stack.alert(held)["state"] == "awaiting_approval"
    assert stack.alert(failed)["deliveries"][0]["state"] == "failed"
    assert officer.get("/console/").status == 200, "a refused logout ended the session"

    login = stack.client()
    login.get("/console/login")
    refused = login.post("/console/login", {"csrf": "forged-token-forged-token",
                                            "username": "duty-1", "secret": PASSWORD})
    assert refused.status == 403 and login.cookie("bc_session") is None


def test_a_viewer_sees_everything_but_cannot_send(stack: Stack) -> None:
    officer = stack.signed_in("duty-1")
    sent = _exercise_alert(stack, officer)
    viewer = stack.signed_in("press-1")
    dashboard = viewer.get("/console/")
    assert dashboard.status == 200 and 'href="/console/send"' not in dashboard.text
    board = viewer.get(f"/console/alerts/{sent}")
    assert board.status == 200 and "followup" not in board.text and "/retry" not in board.text
    assert viewer.get(f"/console/alerts/{sent}/attempts").status == 200
    assert viewer.get("/console/alerts").status == 200
    for path in ("/console/send", f"{EXERCISE}", f"{EXERCISE}/evakuierung",
                 f"/console/alerts/{sent}/followup/correction"):
        page = viewer.get(path)
        assert page.status == 403 and "Einsatzkraft" in page.text, path
    before = _count(stack)
    forged = viewer.post(f"{EXERCISE}/evakuierung/send", [
        ("csrf", viewer.csrf()), ("idempotency_key", "console-viewer-try-1"),
        *((f"var_{k}", v) for k, v in EVACUATION.items()), ("channel", "uebung")])
    assert forged.status == 403 and _count(stack) == before


def test_there_is_no_user_administration_in_the_console(stack: Stack) -> None:
    """Users are managed with `broadcaster users` on the server only; the console has
    no admin-only pages, so an officer (or an admin) finds none."""
    for name in ("duty-1", "it-1"):
        client = stack.signed_in(name)
        for path in ("/console/users", "/console/admin", "/console/users/add"):
            assert client.get(path).status == 404, (name, path)


def test_an_officer_cannot_confirm_their_own_live_alert(stack: Stack) -> None:
    first = stack.signed_in("duty-1")
    held = _held_live_alert(stack, first)
    own_board = first.get(f"/console/alerts/{held}")
    assert "Wartet auf eine zweite Person" in own_board.text
    assert "/approve" not in own_board.text
    forged = first.post(f"/console/alerts/{held}/approve", {"csrf": first.csrf()})
    assert forged.status == 403 and "different officer" in forged.text
    assert stack.alert(held)["state"] == "awaiting_approval"
    assert not [p for p in stack.sandbox.posts("webhook") if p["extra"].get("id") == held]

    second = stack.signed_in("duty-2")
    dashboard = second.get("/console/").text
    awaiting = dashboard[dashboard.index('id="h-awaiting"'):dashboard.index('id="h-delivering"')]
    assert f'href="/console/alerts/{held}"' in awaiting
    board = second.get(f"/console/alerts/{held}")
    assert f'action="/console/alerts/{held}/approve"' in board.text
    confirmed = second.post(f"/console/alerts/{held}/approve", {"csrf": second.csrf()})
    assert confirmed.status == 303 and confirmed.location == f"/console/alerts/{held}"
    assert stack.settled(held)["state"] == "delivered"
    assert "alert.approve" in stack.audit()


def test_a_held_alert_can_be_withdrawn(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    held = _held_live_alert(stack, client)
    page = client.post(f"/console/alerts/{held}/withdraw", {"csrf": client.csrf()})
    assert page.status == 303
    assert stack.alert(held)["state"] == "cancelled"


def test_a_live_alert_needs_the_typed_word(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    page = preview(client, LIVE, "evakuierung", EVACUATION, ["leitstelle"])
    assert page.status == 200 and 'data-confirm-word="SENDEN"' in page.text
    fields = send_form(page, LIVE, "evakuierung")
    before = _count(stack)
    for word in (None, "", "SENDE", "ja"):
        extra = [] if word is None else [("confirm_word", word)]
        refused = client.post(f"{LIVE}/evakuierung/send", fields + extra)
        assert refused.status == 422, word
        assert "SENDEN eintippen" in refused.text
    assert _count(stack) == before
    accepted = client.post(f"{LIVE}/evakuierung/send", [*fields, ("confirm_word", "senden")])
    assert alert_id(accepted)
    assert _count(stack) == before + 1


def test_the_same_form_submitted_twice_sends_one_alert(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    page = preview(client, EXERCISE, "evakuierung", EVACUATION, list(EXERCISE_CHANNELS))
    fields = send_form(page, EXERCISE, "evakuierung")
    before = _count(stack)
    first = alert_id(client.post(f"{EXERCISE}/evakuierung/send", fields))
    second = alert_id(client.post(f"{EXERCISE}/evakuierung/send", fields))
    assert first == second
    assert _count(stack) == before + 1
    stack.settled(first)
    received = [p for p in stack.sandbox.posts("webhook") if p["extra"].get("id") == first]
    assert len(received) == 1
    again = preview(client, EXERCISE, "evakuierung", EVACUATION, ["uebung"])
    assert dict(send_form(again, EXERCISE, "evakuierung"))["idempotency_key"] != \
        dict(fields)["idempotency_key"], "each preview must carry a fresh key"


def test_a_failed_delivery_is_retried_with_one_click(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    stack.sandbox.fault("webhook", "error", target="uebung", value=400, count=1)
    failed = _exercise_alert(stack, client)
    delivery = stack.settled(failed)["deliveries"][0]
    assert delivery["state"] == "failed"
    board = client.get(f"/console/alerts/{failed}")
    retry_form = f'action="/console/deliveries/{delivery["id"]}/retry"'
    assert retry_form in board.text
    page = client.post(f"/console/deliveries/{delivery['id']}/retry", {"csrf": client.csrf()})
    assert page.status == 303 and page.location == f"/console/alerts/{failed}"
    assert stack.settled(failed)["state"] == "delivered"
    assert "delivery.retry" in stack.audit()


def test_a_correction_is_prefilled_from_the_original(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    original = alert_id(send(client, EXERCISE, "evakuierung", EVACUATION,
                             ["uebung", "telegram-uebung"]))
    stack.settled(original)
    board = client.get(f"/console/alerts/{original}")
    link = f'href="/console/alerts/{original}/followup/correction"'
    assert link in board.text
    opened = client.get(f"/console/alerts/{original}/followup/correction")
    assert opened.status == 303, "one correction template: straight to its form"
    form = client.get(opened.location)
    assert form.status == 200
    assert 'value="Evakuierung: Oberwerth"' in form.text  # the original's headline
    assert 'value="uebung" checked' in form.text
    assert 'value="telegram-uebung" checked' in form.text
    assert 'value="mastodon-uebung">' in form.text  # not in the original: not preselected
    assert "ÜBUNG" in form.text and "mode-exercise" in form.text
    base = opened.location.rsplit("/", 1)[0]
    sent = alert_id(send(client, base, "korrektur", {"subject": "Evakuierung: Oberwerth"},
                         ["uebung", "telegram-uebung"]))
    correction: dict[str, Any] = stack.settled(sent)
    assert correction["kind"] == "correction" and correction["references"] == original
    assert correction["state"] == "delivered"


def test_problems_are_shown_on_the_form(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    page = preview(client, EXERCISE, "evakuierung",
                   {**EVACUATION, "until": "25:00", "area": "x" * 81}, ["uebung"])
    assert page.status == 422
    assert "25:00" in page.text and "at most 80" in page.text
    assert 'class="field has-error"' in page.text
    none = preview(client, EXERCISE, "evakuierung", EVACUATION, [])
    assert none.status == 422 and "mindestens einen Kanal" in none.text
