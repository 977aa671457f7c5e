"""SMTP stand-in: a mail relay built on aiosmtpd, with STARTTLS, implicit TLS and AUTH.

Two listeners on the sandbox host, served by aiosmtpd's SMTP protocol on the
sandbox's own event loop (so posts and faults live on one loop, and port 0 binds
a free port without a race):

- ``port``: plain SMTP that offers STARTTLS (security "starttls", or "none" on loopback);
- ``tls_port``: implicit TLS (security "tls"), always on a free port.

The certificate is issued at start by a throw-away CA (trustme); ``ca_file`` is that
CA's PEM, for a client's ``ca_file``. AUTH (PLAIN, LOGIN) accepts any credentials
except the password ``revoked``, which gets 535 as a relay answers a bad password;
unauthenticated mail is accepted too.

Each message is recorded as one Post (platform "email", target = first recipient,
idempotency key = Message-ID, extra: subject and recipients). A message whose
Message-ID was already received is not recorded again: the first post's
``extra["duplicates"]`` counts the copies, as a mail client collapses them.

Faults (platform "email", target = a recipient address):
- error / ratelimit *with* a target answer that recipient's RCPT (the code given, or
  451 4.7.1 "try again later"), so one recipient can be refused while others are not;
- every fault without a target, or whose target is an accepted recipient, acts at
  DATA after the content was read: error → that code for the whole message,
  ratelimit → 421 4.7.0 "try again later", latency → a delay before the 250,
  hang → no answer ever, drop_after_receive → the message is recorded and the
  connection closed without the 250 (the relay has it; the client cannot know).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import shutil
import ssl
import tempfile
import weakref
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from broadcaster.sandbox.state import Fault, FaultKind, Post, SandboxState

SMTP_PLATFORM = "email"
REVOKED = b"revoked"
SERVER_NAME = "sandbox.broadcaster.invalid"

REPLY_TEXT = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox unavailable, try again later",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    535: "5.7.8 Authentication credentials invalid",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.6.0 Transaction failed",
}


class _QuietLoginData(logging.Filter):
    """aiosmtpd 1.4 warns about its own deprecated Session.login_data on every AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_QUIET = _QuietLoginData()


def reply(code: int) -> str:
    """An SMTP reply line for a fault's code."""
    default = "4.0.0 Temporary failure" if 400 <= code < 500 else "5.0.0 Rejected"
    return f"{code} {REPLY_TEXT.get(code, default)}"


class MailHandler:
    """aiosmtpd hooks: faults at RCPT and DATA, and recording what was accepted."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        fault = self._take(lambda f: f.target == address
                           and f.kind in (FaultKind.ERROR, FaultKind.RATELIMIT))
        if fault is not None:
            if fault.kind is FaultKind.RATELIMIT:
                return f"451 4.7.1 Too many messages, try again in {fault.value or 1:g} s"
            return reply(int(fault.value or 550))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._take(lambda f: f.target is None or f.target in envelope.rcpt_tos)
        if fault is not None:
            if fault.kind is FaultKind.LATENCY:
                await asyncio.sleep((fault.value or 0) / 1000)
            elif fault.kind is FaultKind.ERROR:
                return reply(int(fault.value or 554))
            elif fault.kind is FaultKind.RATELIMIT:
                return f"421 4.7.0 Too many messages, try again in {fault.value or 1:g} s"
            elif fault.kind is FaultKind.HANG:
                await asyncio.Event().wait()  # cancelled when the client gives up
            else:  # drop_after_receive: the relay has the message, the client never hears
                self._record(envelope)
                _abort(server.transport)
                await asyncio.Event().wait()
        post = self._record(envelope)
        return f"250 2.0.0 Ok: queued as {post.id}"

    def _take(self, applies: Callable[[Fault], bool]) -> Fault | None:
        """The first e-mail fault that applies, counted down (as state.take_fault)."""
        for fault in self.state.faults:
            if fault.platform == SMTP_PLATFORM and applies(fault):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.state.faults.remove(fault)
                return fault
        return None

    def _record(self, envelope: Envelope) -> Post:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        message_id = str(message.get("Message-ID", "")).strip() or None
        if message_id is not None:
            earlier = next((p for p in self.state.posts if p.platform == SMTP_PLATFORM
                            and p.idempotency_key == message_id), None)
            if earlier is not None:
                earlier.extra["duplicates"] = int(earlier.extra.get("duplicates", 0)) + 1
                self.state.updated()
                return earlier
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        in_reply_to = str(message.get("In-Reply-To", "")).strip() or None
        return self.state.record(Post(
            platform=SMTP_PLATFORM, target=envelope.rcpt_tos[0], id=str(self.state.next_id()),
            text=text.replace("\r\n", "\n").rstrip("\n"), reply_to=in_reply_to,
            idempotency_key=message_id,
            extra={"subject": str(message.get("Subject", "")),
                   "recipients": list(envelope.rcpt_tos),
                   "from": str(message.get("From", "")), "to": str(message.get("To", "")),
                   "duplicates": 0},
        ))


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Close a connection at once, without a goodbye."""
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
    """Any credentials but the password ``revoked`` (aiosmtpd then answers 535)."""
    ok = isinstance(auth_data, LoginPassword) and auth_data.password != REVOKED
    return AuthResult(success=ok, handled=False)


class SmtpReceiver:
    """Both listeners, their certificate and the sessions they serve."""

    def __init__(self, state: SandboxState, host: str) -> None:
        self.host = host
        self.handler = MailHandler(state)
        self.port = 0
        self.tls_port = 0
        self.ca_file: Path | None = None
        self._folder: str | None = None
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    async def start(self, port: int) -> None:
        """Listen on ``port`` (0: any free one) and on a free port for implicit TLS."""
        logging.getLogger("mail.log").addFilter(_QUIET)  # added once, however often
        self._folder = tempfile.mkdtemp(prefix="broadcaster-sandbox-")
        context = self._certificate(Path(self._folder))
        loop = asyncio.get_running_loop()
        try:
            plain = await loop.create_server(lambda: self._session(context), self.host, port)
            self._servers.append(plain)
            implicit = await loop.create_server(lambda: self._session(None), self.host, 0,
                                                ssl=context)
            self._servers.append(implicit)
        except BaseException:
            await self.stop()
            raise
        self.port = plain.sockets[0].getsockname()[1]
        self.tls_port = implicit.sockets[0].getsockname()[1]

    def _certificate(self, folder: Path) -> ssl.SSLContext:
        authority = trustme.CA(organization_name="broadcaster sandbox")
        names = {"127.0.0.1", "localhost", "::1"}
        if self.host not in ("", "0.0.0.0", "::"):  # noqa: S104 - not binding, naming
            names.add(self.host)
        certificate = authority.issue_cert(*sorted(names))
        self.ca_file = folder / "sandbox-ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        return context

    def _session(self, starttls: ssl.SSLContext | None) -> SMTP:
        session = SMTP(
            self.handler, hostname=SERVER_NAME, ident="broadcaster sandbox ESMTP",
            tls_context=starttls, require_starttls=False, auth_required=False,
            auth_require_tls=False, authenticator=authenticate,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session

    async def stop(self) -> None:
        """Stop listening, end open sessions (a hung DATA too) and remove the CA."""
        for server in self._servers:
            server.close()
        tasks = []
        for session in list(self._sessions):
            _abort(session.transport)
            # aiosmtpd cancels a session's task when its connection is lost; wait for it.
            task = session._handler_coroutine
            if task is not None:
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._sessions.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
