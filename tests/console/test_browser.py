"""The console in a real browser (Chromium driven by Playwright): an exercise sent
from a phone through the whole flow, watched to delivery on the self-updating board,
all-cleared from the board and threaded on every platform; a live alert that will not
go without the typed word. Screenshots land in artifacts/console-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.console.conftest import PASSWORD, Stack
from tests.console.flow import EXERCISE_CHANNELS

CHROMIUM = Path("/usr/bin/chromium")
# No internet here: without the background-networking switches Chromium floods the
# log with refused connections to Google's services.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
TIMEOUT = 15_000  # ms, for every wait on a condition
PHONE = {"width": 375, "height": 812}
BOARD_URL = re.compile(r"/console/alerts/([0-9A-Z]{26})$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed: apt-get install chromium (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=ARGS)
        yield launched
        launched.close()


class Visit:
    """One browser tab on the console, checking each page as it goes."""

    def __init__(self, browser: Browser, stack: Stack, artifacts: Path,
                 viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport, locale="de-DE",  # type: ignore[arg-type]
                                           timezone_id="Europe/Berlin")
        self.context.set_default_timeout(TIMEOUT)
        self.page: Page = self.context.new_page()
        self.stack = stack
        self.artifacts = artifacts
        self.width = viewport["width"]
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error"
                     and self.errors.append(message.text))

    def check(self, name: str) -> None:
        """No horizontal scrolling, no script error; keep a screenshot."""
        self.page.wait_for_load_state("load")
        width = self.page.evaluate("document.documentElement.scrollWidth")
        self.page.screenshot(path=str(self.artifacts / f"console-{name}.png"), full_page=True)
        assert width <= self.width, f"{name}: {width} px wide on a {self.width} px screen"
        assert not self.errors, f"{name}: {self.errors}"

    def login(self, name: str) -> None:
        self.page.goto(self.stack.url + "/console/login")
        self.page.get_by_label("Benutzername").fill(name)
        self.page.get_by_label("Passwort oder API-Token").fill(PASSWORD)
        self.page.get_by_role("button", name="Anmelden").click()
        expect(self.page).to_have_url(self.stack.url + "/console/")

    def close(self) -> None:
        self.context.close()


def _threaded(posts: list[dict[str, Any]], original: str) -> None:
    """On every exercise target, the all-clear replies to the original's post."""
    by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for post in posts:
        by_target.setdefault((post["platform"], post["target"]), []).append(post)
    assert {platform for platform, _ in by_target} == {"webhook", "telegram", "mastodon"}
    for (platform, target), received in by_target.items():
        assert len(received) == 2, (platform, target, received)
        first, allclear = received
        assert "Entwarnung" in allclear["text"], allclear
        expected = original if platform == "webhook" else first["id"]  # webhooks: alert id
        assert allclear["reply_to"] == expected, (platform, target, allclear)


def test_an_exercise_goes_out_and_is_all_cleared_from_a_phone(
        stack: Stack, browser: Browser, artifacts: Path) -> None:
    # Mastodon answers slowly, so the board is seen to change without a reload.
    stack.sandbox.fault("mastodon", "latency", value=1500, count=1)
    visit = Visit(browser, stack, artifacts, PHONE)
    page = visit.page
    page.goto(stack.url + "/console/login")
    visit.check("01-login")
    visit.login("duty-1")
    visit.check("02-dashboard")

    page.get_by_role("link", name="Neue Meldung").click()
    visit.check("03-mode")
    page.locator("#choose-exercise").click()
    expect(page.locator(".banner-exercise")).to_be_visible()
    expect(page).to_have_title(re.compile(r"^ÜBUNG · "))
    visit.check("04-templates")
    page.locator('[data-template="evakuierung"]').click()
    area = page.get_by_label("Betroffenes Gebiet")
    expect(area).to_have_value(re.compile(".+"))  # an exercise starts from the examples
    area.fill("Oberwerth")
    expect(page.locator("#field-area-count")).to_have_text("9 von 80 Zeichen")
    visit.check("05-form")
    page.get_by_role("button", name="Vorschau").click()
    expect(page.locator(".preview")).to_have_count(len(EXERCISE_CHANNELS))
    expect(page.locator(".preview").first).to_contain_text("+++ ÜBUNG +++")
    visit.check("06-preview")
    page.get_by_role("button", name="Übung senden").click()

    expect(page).to_have_url(BOARD_URL)
    match = BOARD_URL.search(page.url)
    assert match
    original = match[1]
    page.evaluate("window.stillTheSamePage = true")
    for channel in EXERCISE_CHANNELS:
        expect(page.locator(f'.delivery[data-channel="{channel}"]')).to_have_attribute(
            "data-state", "delivered")
    expect(page.locator("#alert-state")).to_have_text("zugestellt")
    assert page.evaluate("window.stillTheSamePage === true"), "the board was reloaded"
    visit.check("07-board")

    page.locator("#followup-allclear").click()  # one click: straight to the form
    expect(page.get_by_label("Entwarnung für")).to_have_value("Evakuierung: Oberwerth")
    expect(page.locator(".banner-exercise")).to_be_visible()
    visit.check("08-allclear-form")
    page.get_by_role("button", name="Vorschau").click()
    visit.check("09-allclear-preview")
    page.get_by_role("button", name="Übung senden").click()
    expect(page).to_have_url(BOARD_URL)
    for channel in EXERCISE_CHANNELS:
        expect(page.locator(f'.delivery[data-channel="{channel}"]')).to_have_attribute(
            "data-state", "delivered")
    visit.check("10-allclear-board")
    visit.close()

    exercise = [p for p in stack.sandbox.posts() if "+++ ÜBUNG +++" in p["text"]]
    _threaded(exercise, original)


def test_a_live_alert_will_not_go_without_the_typed_word(
        stack: Stack, browser: Browser, artifacts: Path) -> None:
    visit = Visit(browser, stack, artifacts, {"width": 1280, "height": 900})
    page = visit.page
    visit.login("duty-1")
    page.get_by_role("link", name="Neue Meldung").click()
    page.locator("#choose-live").click()
    expect(page.locator(".banner-live")).to_be_visible()
    expect(page).to_have_title(re.compile(r"^ECHTALARM · "))
    visit.check("live-01-templates")
    page.locator('[data-template="evakuierung"]').click()
    area = page.get_by_label("Betroffenes Gebiet")
    expect(area).to_have_value("")  # live: nothing pre-filled that nobody typed
    area.fill("Oberwerth")
    page.get_by_label("Anlass").select_option("Gasaustritt")
    page.get_by_label("Gebiet verlassen bis (HH:MM)").fill("09:00")
    page.get_by_label("Notunterkunft").select_option("Rhein-Mosel-Halle")
    visit.check("live-02-form")
    page.get_by_role("button", name="Vorschau").click()

    send = page.get_by_role("button", name="ECHTALARM SENDEN")
    word = page.get_by_label(re.compile("Tippen Sie zur Bestätigung"))
    expect(send).to_be_disabled()
    word.fill("SEND")
    expect(send).to_be_disabled()
    word.fill("SENDEN")
    expect(send).to_be_enabled()
    visit.check("live-03-preview")

    # Around the browser's check (a script removed, a forged request): the server
    # refuses as well, and nothing is sent.
    word.fill("")
    page.evaluate("document.getElementById('send-button').disabled = false")
    page.evaluate("document.getElementById('confirm-word').required = false")
    send.click()
    expect(page.locator("#word-error")).to_contain_text("SENDEN eintippen")
    assert not BOARD_URL.search(page.url)
    visit.errors.clear()  # the 422 answer is logged as a failed load
    visit.check("live-04-refused")

    page.get_by_label(re.compile("Tippen Sie zur Bestätigung")).fill("SENDEN")
    page.get_by_role("button", name="ECHTALARM SENDEN").click()
    expect(page).to_have_url(BOARD_URL)
    expect(page.locator("#waiting-second")).to_contain_text("zweite Person")
    expect(page.locator("#alert-state")).to_have_text("wartet auf Bestätigung")
    visit.check("live-05-board-waiting")
    visit.close()
