"""The e-mail channel through aiosmtplib against the sandbox's SMTP relay (aiosmtpd):
STARTTLS, implicit TLS and plain-on-loopback, threading, the stable Message-ID,
partial and total recipient refusal, the SMTP reply table, health, and the daemon
riding out a failing relay — with the password nowhere in errors, logs, the API
or the metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channels.base import Channel, NotSupported
from broadcaster.channels.email import build_message
from broadcaster.errors import (
    ConfigError,
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.sandbox.server import RunningSandbox
from broadcaster.sandbox.state import Post
from tests.channels import kit
from tests.support import (
    Daemon,
    SandboxThread,
    assert_secrets_stay_hidden,
    free_port,
    http,
    outgoing,
    send_example,
    start_beside_webhook,
    start_channel,
    wait_for,
)

PASSWORD = "smtp-Passw0rd-never-shown"
SENDER = "Stadt Koblenz <warnung@koblenz.example>"
FIRST, SECOND = "presse@koblenz.example", "leitstelle@koblenz.example"


def block(port: int, *, security: str = "starttls", ca_file: Path | None = None,
          recipients: tuple[str, ...] = (FIRST, SECOND), login: bool = True,
          extra: str = "") -> str:
    listed = ", ".join(f'"{r}"' for r in recipients)
    credentials = 'username = "stadt"\npassword = { env = "SMTP_PASSWORD" }' if login else ""
    trust = f'ca_file = "{ca_file}"' if ca_file else ""
    return f"""
[[channel]]
name = "email"
kind = "email"
host = "127.0.0.1"
port = {port}
security = "{security}"
sender = "{SENDER}"
recipients = [{listed}]
{credentials}
{trust}
{extra}
"""


async def email_channel(directory: Path, sandbox: RunningSandbox, security: str = "starttls",
                        password: str = PASSWORD, **kwargs: Any) -> Channel:
    port = sandbox.smtp_tls_port if security == "tls" else sandbox.smtp_port
    assert port is not None
    channel: Channel = await start_channel(
        directory, block(port, security=security, ca_file=sandbox.smtp_ca_file, **kwargs),
        environ={"SMTP_PASSWORD": password})
    return channel


@pytest.fixture
async def channel(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Channel]:
    started = await email_channel(tmp_path, sandbox)
    yield started
    await started.close()


def mails(sandbox: RunningSandbox) -> list[Post]:
    return kit.posts(sandbox, "email")


def fault(sandbox: RunningSandbox, kind: str, value: float | None = None,
          target: str | None = None, count: int | None = 1) -> None:
    kit.inject(sandbox, "email", kind, value, target, count)


async def verdict(channel: Channel, **kwargs: Any) -> DeliveryError:
    return await kit.refusal(channel, (PASSWORD,), **kwargs)


# --- delivery ---------------------------------------------------------------------

@pytest.mark.parametrize("security", ["starttls", "tls", "none"])
async def test_each_security_mode_delivers(sandbox: RunningSandbox, tmp_path: Path,
                                           security: str) -> None:
    channel = await email_channel(tmp_path, sandbox, security)
    try:
        receipt = await channel.send(outgoing(headline="Evakuierung: Oberwerth",
                                              text="Bitte verlassen Sie das Gebiet.\nÄÖÜß"))
        assert (await channel.check_health()).up
    finally:
        await channel.close()
    [mail] = mails(sandbox)
    assert receipt.remote_id == "<01TESTDELIVERY000000000001@koblenz.example>"
    assert mail.idempotency_key == receipt.remote_id
    assert mail.text == "Bitte verlassen Sie das Gebiet.\nÄÖÜß"
    assert mail.extra["subject"] == "Evakuierung: Oberwerth"
    assert mail.extra["recipients"] == [FIRST, SECOND]
    assert mail.target == FIRST


def test_the_recipients_are_only_in_the_envelope() -> None:
    message = build_message(outgoing(), SENDER)
    raw = message.as_string()
    assert FIRST not in raw and SECOND not in raw
    assert message["To"] == "undisclosed-recipients:;"
    assert message["Message-ID"] == "<01TESTDELIVERY000000000001@koblenz.example>"
    assert message.get_content_type() == "text/plain" and not message.is_multipart()
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"


async def test_a_followup_threads_to_the_original(channel: Channel,
                                                  sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing())
    await channel.send(outgoing("01TESTDELIVERY000000000002", reply_to=first, kind="update"))
    original, update = mails(sandbox)
    assert (original.reply_to, update.reply_to) == (None, first.remote_id)
    followup = build_message(outgoing("01TESTDELIVERY000000000002", reply_to=first), SENDER)
    assert followup["References"] == first.remote_id


async def test_mail_cannot_be_edited_or_retracted(channel: Channel) -> None:
    receipt = await channel.send(outgoing())
    with pytest.raises(NotSupported):
        await channel.edit(receipt, outgoing())
    with pytest.raises(NotSupported):
        await channel.retract(receipt)


async def test_a_resend_is_recognised_by_its_message_id(channel: Channel,
                                                        sandbox: RunningSandbox) -> None:
    first = await channel.send(outgoing())
    again = await channel.send(outgoing(attempt=2))
    assert again == first
    [mail] = mails(sandbox)
    assert mail.extra["duplicates"] == 1


async def test_a_lost_answer_after_data_is_unknown(channel: Channel,
                                                  sandbox: RunningSandbox) -> None:
    fault(sandbox, "drop_after_receive")
    assert type(await verdict(channel)) is OutcomeUnknown
    await channel.send(outgoing(attempt=2))
    [mail] = mails(sandbox)  # the relay had it; the resend is the same message
    assert mail.extra["duplicates"] == 1




# --- refused recipients -------------------------------------------------------------

async def test_a_partly_refused_message_is_delivered_and_names_the_refused(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "error", 550, target=SECOND)
    receipt = await channel.send(outgoing())
    assert receipt.extra["refused"].startswith(f"{SECOND}: 550 5.1.1")
    assert FIRST not in receipt.extra["refused"]
    assert mails(sandbox)[0].extra["recipients"] == [FIRST]


async def test_all_recipients_refused_is_permanent_and_lists_each(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "error", 550, target=FIRST)
    fault(sandbox, "error", 553, target=SECOND)
    error = await verdict(channel)
    assert type(error) is Permanent
    assert f"{FIRST}: 550" in str(error) and f"{SECOND}: 553" in str(error)
    assert mails(sandbox) == []


async def test_all_recipients_refused_for_now_is_retryable(
        channel: Channel, sandbox: RunningSandbox) -> None:
    fault(sandbox, "ratelimit", 60, target=FIRST)
    fault(sandbox, "error", 550, target=SECOND)
    error = await verdict(channel)
    assert type(error) is Retryable
    assert f"{FIRST}: 451" in str(error) and f"{SECOND}: 550" in str(error)


# --- the SMTP reply table -------------------------------------------------------------

SMTP_TABLE = [
    # (reply code, where the relay gives it, verdict)
    (250, "data", "delivered"),
    (421, "rcpt", Retryable), (421, "data", Retryable),
    (450, "rcpt", Retryable), (450, "data", Retryable),
    (451, "rcpt", Retryable), (451, "data", Retryable),
    (452, "rcpt", Retryable), (452, "data", Retryable),
    (535, "auth", CredentialsRejected),
    (550, "rcpt", Permanent), (550, "data", Permanent),
    (552, "rcpt", Permanent), (552, "data", Permanent),
    (554, "rcpt", Permanent), (554, "data", Permanent),
]


@pytest.mark.parametrize(("code", "stage", "expected"), SMTP_TABLE,
                         ids=[f"{code}-{stage}" for code, stage, _ in SMTP_TABLE])
async def test_smtp_reply_is_classified(sandbox: RunningSandbox, tmp_path: Path, code: int,
                                        stage: str, expected: Any) -> None:
    channel = await email_channel(tmp_path, sandbox, recipients=(FIRST,),
                                  password="revoked" if stage == "auth" else PASSWORD)
    if stage in ("rcpt", "data") and code != 250:
        fault(sandbox, "error", code, target=FIRST if stage == "rcpt" else None)
    try:
        if expected == "delivered":
            assert (await channel.send(outgoing())).remote_id
            return
        error = await verdict(channel)
        assert type(error) is expected, error
        assert str(code) in str(error)
        if stage == "auth":
            assert "renew the SMTP password" in str(error) and "env:SMTP_PASSWORD" in str(error)
    finally:
        await channel.close()


@pytest.mark.parametrize("targets", [[None], [FIRST, SECOND]], ids=["data", "rcpt"])
async def test_ratelimit_is_retryable(channel: Channel, sandbox: RunningSandbox,
                                      targets: list[str | None]) -> None:
    for target in targets:
        fault(sandbox, "ratelimit", 30, target=target, count=None)
    error = await verdict(channel)
    assert type(error) is Retryable and "try again" in str(error)


# --- reaching and trusting the relay -----------------------------------------------

async def test_nobody_listening_is_retryable_and_health_is_down(tmp_path: Path) -> None:
    channel = await start_channel(tmp_path, block(free_port(), security="none"),
                                  environ={"SMTP_PASSWORD": PASSWORD})
    try:
        assert type(await verdict(channel)) is Retryable
        health = await channel.check_health()
    finally:
        await channel.close()
    assert not health.up and "could not reach 127.0.0.1" in health.message


async def test_a_revoked_password_shows_in_health_with_what_to_renew(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    channel = await email_channel(tmp_path, sandbox, password="revoked")
    try:
        health = await channel.check_health()
    finally:
        await channel.close()
    assert not health.up
    assert "535" in health.message and "renew the SMTP password" in health.message


async def test_health_is_up_without_login_and_sends_nothing(sandbox: RunningSandbox,
                                                            tmp_path: Path) -> None:
    channel = await email_channel(tmp_path, sandbox, login=False)
    try:
        health = await channel.check_health()
    finally:
        await channel.close()
    assert health.up and mails(sandbox) == []


async def test_an_untrusted_certificate_is_permanent(sandbox: RunningSandbox,
                                                     tmp_path: Path) -> None:
    assert sandbox.smtp_port is not None
    channel = await start_channel(tmp_path, block(sandbox.smtp_port),
                                  environ={"SMTP_PASSWORD": PASSWORD})
    try:
        error = await verdict(channel)
    finally:
        await channel.close()
    assert type(error) is Permanent and "ca_file" in str(error)


@pytest.mark.parametrize(("changes", "key"), [
    ({"host": '"mail.koblenz.example"', "security": '"none"'}, "security"),
    ({"username": '"stadt"'}, "password"),
    ({"recipients": '["presse at koblenz"]'}, "recipients"),
    ({"sender": '"Stadt Koblenz"'}, "sender"),
    ({"ca_file": '"relative/ca.pem"'}, "ca_file"),
    ({"ca_file": '"/nonexistent/ca.pem"'}, "ca_file"),
])
async def test_config_problems_name_the_key(tmp_path: Path, changes: dict[str, str],
                                            key: str) -> None:
    lines = block(587, login=False).strip().splitlines()
    settings = dict(line.split(" = ", 1) for line in lines[1:] if " = " in line)
    settings.update(changes)
    text = "[[channel]]\n" + "\n".join(f"{k} = {v}" for k, v in settings.items())
    with pytest.raises(ConfigError) as raised:
        await start_channel(tmp_path, text, environ={"SMTP_PASSWORD": PASSWORD})
    assert raised.value.key == key


# --- the daemon -------------------------------------------------------------------

def test_daemon_rides_out_a_failing_relay_and_never_shows_the_password(
        live_sandbox: SandboxThread, daemons: list[Daemon], tmp_path: Path) -> None:
    assert live_sandbox.smtp_port is not None
    daemon, officer = start_beside_webhook(
        tmp_path, live_sandbox,
        block(live_sandbox.smtp_port, security="none", extra="timeout = 1"), daemons,
        env={"SMTP_PASSWORD": PASSWORD})

    # "Try again later", then a relay that never answers DATA.
    live_sandbox.fault("email", "error", value=451, count=1)
    live_sandbox.fault("email", "hang", count=1)
    run = send_example(daemon, officer)
    current, sent_at = run.delivery, run.sent_at

    wait_for(lambda: current("leitstelle")["state"] == "delivered", timeout=5,
             message="the webhook delivery")
    assert time.monotonic() - sent_at < 3, "the webhook waited for the mail relay"

    delivered = wait_for(lambda: (d := current("email"))["state"] == "delivered" and d,
                         timeout=15, message="the e-mail delivery")
    [mail] = live_sandbox.posts("email")
    assert delivered["attempts"] == 3
    assert delivered["remote_id"] == mail["idempotency_key"]
    assert mail["extra"]["subject"] == delivered["headline"]

    metrics = http("GET", daemon.url + "/metrics")[1]
    for result in ("retryable", "unknown", "delivered"):
        assert (f'broadcaster_delivery_attempts_total{{channel="email",result="{result}"}}'
                " 1.0") in metrics
    output = assert_secrets_stay_hidden(daemon, officer, {"the password": PASSWORD})
    assert "delivery.retryable" in output and "delivery.unknown" in output
