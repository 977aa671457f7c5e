"""Signing in to the console: cookies, wrong passwords and the lockout, tokens,
sessions that survive a restart and end at logout or a password change, the audit
trail of every attempt — through the real daemon."""

from __future__ import annotations

from pathlib import Path

from tests.console.client import Client
from tests.console.conftest import ENV, PASSWORD, Stack, add_person, start_stack
from tests.support import Daemon, SandboxThread, run_cli


def _cookie(headers: list[str], name: str) -> str:
    found = [h for h in headers if h.startswith(name + "=")]
    assert found, headers
    return found[0]


def test_login_sets_a_strict_httponly_session_cookie(stack: Stack) -> None:
    client = stack.client()
    page = client.login("duty-1", PASSWORD)
    assert page.status == 303 and page.location == "/console/"
    cookie = _cookie(page.cookies(), "bc_session")
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags
    assert "secure" not in flags  # plain http on loopback: a Secure cookie would be lost
    dashboard = client.get("/console/")
    assert dashboard.status == 200 and "duty-1" in dashboard.text


def test_the_cookie_is_secure_behind_a_tls_proxy(stack: Stack) -> None:
    page = stack.client().login("duty-1", PASSWORD, headers={"X-Forwarded-Proto": "https"})
    assert page.status == 303
    flags = [p.strip().lower() for p in _cookie(page.cookies(), "bc_session").split(";")]
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags


def test_a_wrong_password_is_refused_and_audited(stack: Stack) -> None:
    client = stack.client()
    page = client.login("duty-2", "not-the-password")
    assert page.status == 401
    assert "Benutzername oder Passwort falsch" in page.text
    assert not any(c.startswith("bc_session=") for c in page.cookies())
    assert client.get("/console/").status == 303  # still not signed in
    unknown = client.login("nobody-here", "whatever-it-is")
    assert unknown.status == 401 and "Benutzername oder Passwort falsch" in unknown.text
    audit = stack.audit()
    assert "console.login_failed" in audit and "127.0.0.1" in audit


def test_an_api_token_signs_in_too(stack: Stack) -> None:
    client = stack.client()
    page = client.login("", stack.tokens["press-1"])
    assert page.status == 303
    assert "press-1" in client.get("/console/").text
    wrong_user = stack.client().login("duty-1", stack.tokens["press-1"])
    assert wrong_user.status == 401


def test_pages_need_a_session(stack: Stack) -> None:
    client = stack.client()
    page = client.get("/console/alerts")
    assert page.status == 303
    assert page.location.replace("%2F", "/") == "/console/login?next=/console/alerts"
    assert client.get("/console/alerts/01ABCDEFGHJKMNPQRSTVWXYZ00/status").status == 401
    root = client.get("/")
    assert root.status == 302 and root.location == "/console/"


def test_twenty_wrong_passwords_lock_the_account_with_a_clear_message(stack: Stack) -> None:
    token = add_person(stack.config, "locked-1", "officer")
    client = stack.client()
    for attempt in range(19):
        assert client.login("locked-1", f"wrong-{attempt}").status == 401
    locked = client.login("locked-1", "wrong-20")
    assert locked.status == 429
    assert "Zu viele fehlgeschlagene Anmeldungen" in locked.text
    assert "15 Minuten" in locked.text and "gesperrt" in locked.text
    assert 800 < int(locked.headers["Retry-After"]) <= 900
    right = client.login("locked-1", PASSWORD)
    assert right.status == 429, "the right password must not open a locked account"
    assert client.get("/console/").status == 303
    # Other people sign in as usual, and the locked person's token still works:
    # a stranger typing wrong passwords cannot lock the duty officer out.
    assert stack.client().login("duty-2", PASSWORD).status == 303
    assert stack.client().login("", token).status == 303
    assert "console.login_refused" in stack.audit()


def test_fifty_failures_from_one_address_lock_the_address(
        live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    separate = start_stack(tmp_path, live_sandbox)
    daemons.append(separate.daemon)
    client = separate.client()
    statuses = [client.login(f"guess-{n}", "wrong-password").status for n in range(50)]
    assert statuses[:49] == [401] * 49 and statuses[49] == 429
    refused = separate.client().login("duty-1", PASSWORD)
    assert refused.status == 429 and "15 Minuten" in refused.text


def test_sessions_survive_a_daemon_restart(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    stack.restart()
    page = client.get("/console/")
    assert page.status == 200 and "duty-1" in page.text


def test_logout_ends_the_session(stack: Stack) -> None:
    client = stack.signed_in("duty-2")
    session = client.cookie("bc_session")
    assert session
    page = client.post("/console/logout", {"csrf": client.csrf()})
    assert page.status == 303 and page.location == "/console/login?out=1"
    assert "Sie sind abgemeldet" in client.get(page.location).text
    replay = Client(stack.url)
    replay.opener.addheaders = [("Cookie", f"bc_session={session}")]
    assert replay.get("/console/").status == 303, "the old session id must not work"
    assert "console.logout" in stack.audit()


def test_a_new_password_ends_the_sessions_and_replaces_the_old_one(stack: Stack) -> None:
    add_person(stack.config, "duty-9", "officer")
    client = stack.signed_in("duty-9")
    result = run_cli("users", "passwd", "duty-9", "--password-stdin", "--config",
                     str(stack.config), input="a-brand-new-password\n", env=ENV)
    assert result.returncode == 0, result.stderr
    assert client.get("/console/").status == 303
    assert stack.client().login("duty-9", PASSWORD).status == 401
    assert stack.client().login("duty-9", "a-brand-new-password").status == 303


def test_the_cli_asks_for_a_password_only_on_a_terminal(stack: Stack) -> None:
    result = run_cli("users", "add", "duty-8", "--role", "officer", "--password",
                     "--config", str(stack.config), input="", env=ENV)
    assert result.returncode == 2 and "--password-stdin" in result.stderr
    short = run_cli("users", "add", "duty-8", "--role", "officer", "--password-stdin",
                    "--config", str(stack.config), input="short\n", env=ENV)
    assert short.returncode == 2 and "at least 10" in short.stderr
    added = run_cli("users", "add", "duty-8", "--role", "officer", "--password-stdin",
                    "--config", str(stack.config), input=PASSWORD + "\n", env=ENV)
    assert added.returncode == 0
    assert added.stdout.strip().splitlines()[-1].startswith("bc_")  # the token, alone, last


def test_the_language_switch_is_remembered(stack: Stack) -> None:
    client = stack.signed_in("duty-1")
    page = client.get("/console/lang/en?next=/console/alerts")
    assert page.status == 303 and page.location == "/console/alerts"
    english = client.get("/console/alerts")
    assert '<html lang="en">' in english.text and "All alerts" in english.text
    assert client.get("/console/lang/de?next=https://evil.example/").location == "/console/"
    assert '<html lang="de">' in client.get("/console/").text


def test_a_link_from_elsewhere_is_rechecked_once_from_our_own_page(stack: Stack) -> None:
    """A SameSite=Strict cookie stays home when a link in a chat or a mail opens the
    console; the login page then asks once more from itself, which sends it."""
    client = stack.signed_in("duty-1")
    first = stack.client().get("/console/login?next=/console/alerts")
    assert 'data-recheck="/console/login?next=%2Fconsole%2Falerts&amp;checked=1"' in first.text
    second = stack.client().get("/console/login?next=/console/alerts&checked=1")
    assert "data-recheck" not in second.text
    signed = client.get("/console/login?next=/console/alerts&checked=1")
    assert signed.status == 303 and signed.location == "/console/alerts"
