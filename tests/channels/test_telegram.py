"""The Telegram channel through python-telegram-bot against the sandbox's Bot API
stand-in: round trips, both body encodings, HTML escaping from template to screen,
every fault's verdict, health checks, and that the token never leaks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broadcaster.channels import KINDS
from broadcaster.channels.base import Channel
from broadcaster.errors import (
    ConfigError,
    CredentialsRejected,
    DeliveryError,
    Permanent,
    Retryable,
)
from broadcaster.models import Mode, Receipt
from broadcaster.sandbox.server import RunningSandbox
from broadcaster.sandbox.state import Post
from broadcaster.sandbox.telegram import visible_text
from broadcaster.templates import RenderContext, load_templates, render
from tests.channels import kit
from tests.support import TEMPLATES, free_port, outgoing, start_channel

TOKEN = "123456789:AAHsandboxTokenForTests-xyz"
CHAT = "@stadt_warnung"


def block(api_base: str, *, chat_id: str = CHAT, name: str = "telegram") -> str:
    return f"""
[[channel]]
name = "{name}"
kind = "telegram"
chat_id = "{chat_id}"
token = {{ env = "TELEGRAM_TOKEN" }}
api_base = "{api_base}"
"""


async def telegram_channel(directory: Path, api_base: str, token: str = TOKEN,
                           **kwargs: Any) -> Channel:
    channel: Channel = await start_channel(directory, block(api_base, **kwargs),
                                           environ={"TELEGRAM_TOKEN": token})
    return channel


@pytest.fixture
async def channel(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Channel]:
    started = await telegram_channel(tmp_path, f"{sandbox.url}/telegram")
    yield started
    await started.close()


def posts(sandbox: RunningSandbox) -> list[Post]:
    return kit.posts(sandbox, "telegram")


def fault(sandbox: RunningSandbox, kind: str, value: float | None = None,
          target: str | None = CHAT, count: int | None = 1) -> None:
    kit.inject(sandbox, "telegram", kind, value, target, count)


async def verdict(channel: Channel, **kwargs: Any) -> DeliveryError:
    return await kit.refusal(channel, (TOKEN, TOKEN.split(":")[0]), **kwargs)


# --- round trips ----------------------------------------------------------------

async def test_send_reply_edit_and_retract(channel: Channel, sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing(text="<b>Evakuierung</b>\n\nBitte verlassen Sie …"))
    assert first.remote_id is not None and first.remote_id.isdigit()
    assert first.url == f"https://t.me/stadt_warnung/{first.remote_id}"
    assert first.extra["chat_id"].startswith("-100")

    update = await channel.send(outgoing("01TESTDELIVERY000000000002", text="Lageupdate",
                                         kind="update", reply_to=first))
    recorded = {p.id: p for p in posts(sandbox)}
    assert recorded[first.remote_id].text == "<b>Evakuierung</b>\n\nBitte verlassen Sie …"
    assert recorded[first.remote_id].target == CHAT
    assert recorded[first.remote_id].reply_to is None
    assert recorded[update.remote_id or ""].reply_to == first.remote_id

    edited = await channel.edit(first, outgoing(text="<b>Korrektur</b>"))
    assert edited.remote_id == first.remote_id
    assert recorded[first.remote_id].text == "<b>Korrektur</b>"
    assert recorded[first.remote_id].edited
    # The same text again is what Telegram calls "not modified": the edit is done.
    await channel.edit(first, outgoing(text="<b>Korrektur</b>"))

    await channel.retract(update)
    assert recorded[update.remote_id or ""].deleted
    assert not recorded[first.remote_id].deleted
    assert len(posts(sandbox)) == 2


async def test_reply_to_a_vanished_message_is_still_sent(channel: Channel,
                                                         sandbox: RunningSandbox) -> None:
    gone = Receipt(remote_id="999999", extra={"chat_id": "-1001"})
    receipt = await channel.send(outgoing(text="Entwarnung", kind="allclear", reply_to=gone))
    assert posts(sandbox)[-1].id == receipt.remote_id
    assert posts(sandbox)[-1].reply_to is None


async def test_numeric_chat_has_no_public_link(sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await telegram_channel(tmp_path, f"{sandbox.url}/telegram",
                                     chat_id="-1001234567890")
    try:
        receipt = await channel.send(outgoing())
    finally:
        await channel.close()
    assert receipt.url is None
    assert receipt.extra == {"chat_id": "-1001234567890"}
    assert posts(sandbox)[-1].target == "-1001234567890"


async def test_unknown_messages_and_overlong_text_are_permanent(
        channel: Channel, sandbox: RunningSandbox) -> None:
    missing = Receipt(remote_id="424242", extra={})
    with pytest.raises(Permanent, match=r"(?i)message to edit not found"):
        await channel.edit(missing, outgoing())
    with pytest.raises(Permanent, match=r"(?i)message to delete not found"):
        await channel.retract(missing)
    error = await verdict(channel, text="x" * 4097)
    assert isinstance(error, Permanent) and "too long" in str(error)
    # 4096 visible characters fit, however much markup carries them.
    await channel.send(outgoing(text="<b>" + "&amp;" * 4096 + "</b>"))
    assert len(posts(sandbox)) == 1


# --- the stand-in's wire protocol -------------------------------------------------

async def test_stand_in_reads_form_and_json_bodies(sandbox: RunningSandbox) -> None:
    base = f"{sandbox.url}/telegram/bot{TOKEN}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/sendMessage", json={
                "chat_id": CHAT, "text": "<i>JSON</i>", "parse_mode": "HTML"}) as response:
            sent = await response.json()
        assert response.status == 200 and sent["ok"], sent
        first = sent["result"]
        assert first["text"] == "JSON"  # the visible text, as Telegram answers
        assert first["chat"]["username"] == "stadt_warnung"
        assert first["chat"]["type"] == "channel"

        reply = json.dumps({"message_id": first["message_id"]})
        async with session.post(f"{base}/sendMessage", data={
                "chat_id": str(first["chat"]["id"]), "text": "Form",
                "reply_parameters": reply}) as response:
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["result"]["reply_to_message"]["message_id"] == first["message_id"]

        async with session.post(f"{base}/deleteMessage", json={
                "chat_id": CHAT, "message_id": first["message_id"]}) as response:
            assert await response.json() == {"ok": True, "result": True}

        async with session.post(f"{base}/sendMessage", json={
                "chat_id": CHAT, "text": "<blink>x</blink>", "parse_mode": "HTML"}) as response:
            refused = await response.json()
        assert response.status == 400
        assert refused["description"].startswith("Bad Request: can't parse entities")

        async with session.post(f"{sandbox.url}/telegram/botrevoked/getMe") as response:
            assert response.status == 401
            assert await response.json() == {"ok": False, "error_code": 401,
                                              "description": "Unauthorized"}

    recorded = posts(sandbox)
    assert [p.text for p in recorded] == ["<i>JSON</i>", "Form"]
    assert recorded[0].deleted and recorded[1].reply_to == str(first["message_id"])
    assert recorded[1].target == CHAT  # the numeric id of a named chat names it


async def test_variable_markup_arrives_escaped_and_shows_literally(
        channel: Channel, sandbox: RunningSandbox) -> None:
    template = load_templates(TEMPLATES).get("evakuierung")
    value = '<b>Alarm</b> & "Räumung"'
    values = template.clean_values({**template.example_values(), "area": value})
    context = RenderContext(city="Stadt Koblenz", info_url="https://www.koblenz.de/warnung",
                            alert_id="01TESTALERT0000000000000001",
                            sent_at=datetime(2026, 11, 23, 3, 12, tzinfo=UTC),
                            mode=Mode.LIVE, exercise_banner="+++ ÜBUNG +++")
    composed = KINDS["telegram"].compose([render(template, values, context, "de")])
    assert "<b>Alarm</b>" not in composed.text

    await channel.send(outgoing(text=composed.text, headline=composed.headline))
    received = posts(sandbox)[-1].text
    assert received == composed.text  # stored as sent: HTML
    assert "&lt;b&gt;Alarm&lt;/b&gt; &amp; \"Räumung\"" in received
    shown = visible_text(received, "HTML")
    assert shown.startswith(f"Evakuierung: {value}\n")  # headline bold, value literal
    assert value in shown.split("\n", 1)[1]
    assert composed.length == len(shown.encode("utf-16-le")) // 2


# --- faults and verdicts ----------------------------------------------------------

async def test_flood_control_is_retryable_with_telegrams_wait(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "ratelimit", 3)
    error = await verdict(channel)
    assert isinstance(error, Retryable) and error.retry_after == 3
    assert posts(sandbox) == []


@pytest.mark.parametrize("status, expected", [(500, Retryable), (502, Retryable),
                                              (400, Permanent), (403, CredentialsRejected)])
async def test_error_answers_echoing_the_token_never_leak_it(
        channel: Channel, sandbox: RunningSandbox, status: int,
        expected: type[DeliveryError]) -> None:
    # The stand-in's error names the URL, token included, as the test's premise.
    fault(sandbox, "error", status, count=2)
    async with aiohttp.ClientSession() as session, session.post(
            f"{sandbox.url}/telegram/bot{TOKEN}/sendMessage", json={"chat_id": CHAT}) as raw:
        assert TOKEN in (await raw.json())["description"]
    error = await verdict(channel)  # also checks the token is absent
    assert type(error) is expected
    assert "/bot***/" in str(error)






async def test_nobody_listening_is_retryable(tmp_path: Path) -> None:
    channel = await telegram_channel(tmp_path, f"http://127.0.0.1:{free_port()}/telegram")
    try:
        error = await verdict(channel)
        assert isinstance(error, Retryable)
        health = await channel.check_health()
    finally:
        await channel.close()
    assert not health.up and "unreachable" in health.message


async def test_revoked_token_is_permanent_and_says_what_to_renew(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await telegram_channel(tmp_path, f"{sandbox.url}/telegram", token="revoked")
    try:
        with pytest.raises(Permanent) as raised:
            await channel.send(outgoing())
        health = await channel.check_health()
    finally:
        await channel.close()
    assert "renew `token` (env:TELEGRAM_TOKEN) in channels.toml" in str(raised.value)
    assert not health.up
    assert health.message.startswith("Telegram rejected the bot token of channel 'telegram'")
    assert posts(sandbox) == []


async def test_health_is_up_with_a_valid_token(channel: Channel) -> None:
    health = await channel.check_health()
    assert health.up, health.message


# --- configuration ----------------------------------------------------------------

@pytest.mark.parametrize("chat_id", ["stadt_warnung", "@abc", "@with-dash", "12ab"])
async def test_a_malformed_chat_id_is_refused_by_name(tmp_path: Path, chat_id: str) -> None:
    with pytest.raises(ConfigError) as raised:
        await start_channel(tmp_path, block("https://api.telegram.org", chat_id=chat_id),
                            environ={"TELEGRAM_TOKEN": TOKEN})
    assert raised.value.key == "chat_id" and raised.value.channel == "telegram"
