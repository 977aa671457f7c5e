"""E-mail channel: one message per delivery to every configured recipient, via SMTP.

The recipients are only in the envelope (Bcc style): the header says
``To: undisclosed-recipients:;``, so nobody learns who else is on the list. The body
is plain UTF-8 text (quoted-printable, so any relay takes it); an HTML part would
only repeat the same plain text, so there is none. ``Message-ID`` is
``<delivery id@sender domain>``, the same on every attempt, so a resend after an
unknown outcome is recognisable as the same message; follow-ups thread to the
original with ``In-Reply-To`` and ``References``. ``Auto-Submitted:
auto-generated`` keeps vacation replies away from the sender.

The transaction is driven step by step (connect + STARTTLS/TLS + AUTH, MAIL, one
RCPT per recipient, DATA) so that each failure is classified by where it happened:

- 4xx anywhere → Retryable; 5xx → Permanent (535: renew the password);
- refused before DATA (connect refused, timeout, disconnect) → Retryable;
- lost during DATA (the message may have been taken) → OutcomeUnknown; the
  stable Message-ID makes the retry recognisable, so on_unknown is RETRY;
- some recipients refused at RCPT → the others get the message: delivered, and the
  refused ones with their codes go into the receipt's ``extra["refused"]``;
  all refused → Permanent (Retryable if any refusal was temporary).
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import aiosmtplib

from broadcaster import lengths
from broadcaster.channels.base import (
    Channel,
    ChannelKind,
    Health,
    Markup,
    TextForm,
    UnknownPolicy,
)
from broadcaster.config import ChannelConfig, ConfigProblem, Secret, is_loopback_host
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.models import Outgoing, Receipt, utcnow

# ASCII only: the envelope is sent without SMTPUTF8 (write IDN domains as punycode).
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
UNDISCLOSED = "undisclosed-recipients:;"


def mailbox(value: str) -> str:
    """The bare address of ``addr`` or ``Name <addr>``; '' when it is not one."""
    _, address = email.utils.parseaddr(value)
    return address if _ADDRESS.match(address) else ""


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    sender: str  # "warnung@koblenz.de" or "Stadt Koblenz <warnung@koblenz.de>"
    recipients: tuple[str, ...]  # addresses (or one list address), never shown to each other
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    # PEM file of the CA that signed the relay's certificate (a private CA, or the
    # sandbox's); absolute path. Without it, the system's trusted CAs are used.
    ca_file: str | None = None

    def validate(self) -> None:
        if not self.host.strip():
            raise ConfigProblem("host", "name the SMTP relay, e.g. mail.example.org")
        if not 0 < self.port < 65536:
            raise ConfigProblem("port", "must be a port number (587 STARTTLS, 465 TLS)")
        if self.security == "none" and not is_loopback_host(self.host):
            raise ConfigProblem("security", '"none" (no encryption) is only allowed for a '
                                "relay on this machine (localhost); use starttls or tls")
        if (self.username is None) != (self.password is None):
            key = "password" if self.password is None else "username"
            raise ConfigProblem(key, "give username and password together, or neither")
        if not mailbox(self.sender):
            raise ConfigProblem("sender", f"{self.sender!r} is not an e-mail address")
        if not self.recipients:
            raise ConfigProblem("recipients", "list at least one address")
        for address in self.recipients:
            if not _ADDRESS.match(address):
                raise ConfigProblem("recipients", f"{address!r} is not an e-mail address "
                                    "(write the bare address, e.g. presse@koblenz.de)")
        if self.ca_file is not None and not Path(self.ca_file).is_absolute():
            raise ConfigProblem("ca_file", "give an absolute path to a PEM file")
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigProblem("ca_file", f"{self.ca_file} cannot be used as a CA "
                                    f"certificate file ({exc})") from None

    @property
    def target(self) -> str:
        return ", ".join(self.recipients)


def build_message(outgoing: Outgoing, sender: str) -> EmailMessage:
    """The message for one delivery; the same Message-ID on every attempt."""
    domain = mailbox(sender).rpartition("@")[2]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = UNDISCLOSED
    message["Subject"] = outgoing.headline
    message["Date"] = email.utils.format_datetime(utcnow())
    message["Message-ID"] = f"<{outgoing.delivery_id}@{domain}>"
    original = outgoing.reply_to.remote_id if outgoing.reply_to is not None else None
    if original:
        message["In-Reply-To"] = original
        message["References"] = original
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(outgoing.text, charset="utf-8", cte="quoted-printable")
    return message


class EmailChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, EmailConfig)
        self.settings = settings
        self._tls = ssl.create_default_context(cafile=settings.ca_file)

    @property
    def _renew(self) -> str:
        source = self.settings.password.source if self.settings.password else "none set"
        return (f"renew the SMTP password of {self.settings.username!r} on "
                f"{self.settings.host} for channel {self.name!r} (password = {source}) "
                "in channels.toml")

    def _client(self) -> aiosmtplib.SMTP:
        security = self.settings.security
        password = self.settings.password.reveal() if self.settings.password else None
        return aiosmtplib.SMTP(
            hostname=self.settings.host, port=self.settings.port,
            use_tls=security == "tls", start_tls=security == "starttls",
            tls_context=self._tls if security != "none" else None,
            username=self.settings.username, password=password,
            timeout=self.config.timeout,
        )

    async def send(self, outgoing: Outgoing) -> Receipt:
        message = build_message(outgoing, self.settings.sender)
        content = message.as_bytes(policy=email.policy.SMTP)
        client = self._client()
        in_data = False
        try:
            await client.connect()
            await client.mail(mailbox(self.settings.sender))
            refused = await self._recipients(client)
            in_data = True
            await client.data(content)
        except DeliveryError:
            raise
        except Exception as exc:
            raise self._classify(exc, in_data) from None
        finally:
            # No QUIT: once the relay took the message, waiting for its answer to QUIT
            # could only turn a delivered message into an unknown one.
            client.close()
        extra = {"refused": "; ".join(f"{address}: {code} {text}"
                                      for address, (code, text) in refused.items())}
        return Receipt(remote_id=str(message["Message-ID"]), extra=extra if refused else {})

    async def _recipients(self, client: aiosmtplib.SMTP) -> dict[str, tuple[int, str]]:
        """RCPT for each recipient; the refused ones, or the error when none is left."""
        refused: dict[str, tuple[int, str]] = {}
        for address in self.settings.recipients:
            try:
                await client.rcpt(address)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:  # the relay is closing the connection
                    raise
                refused[address] = (exc.code, " ".join(exc.message.split()))
        if len(refused) == len(self.settings.recipients):
            listed = "; ".join(f"{address}: {code} {text}"
                               for address, (code, text) in refused.items())
            if any(code < 500 for code, _ in refused.values()):
                raise Retryable(f"{self.name}: the relay refused every recipient for now "
                                f"({listed})")
            raise Permanent(f"{self.name}: the relay refused every recipient ({listed})")
        return refused

    def _classify(self, exc: Exception, in_data: bool) -> DeliveryError:
        name = self.name
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and exc.code >= 500:
            return CredentialsRejected(f"{name}: SMTP login refused ({exc.code} "
                             f"{' '.join(exc.message.split())}) — {self._renew}")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            what = f"{exc.code} {' '.join(exc.message.split())}"
            if 400 <= exc.code < 500:
                return Retryable(f"{name}: the relay said try again later ({what})")
            return Permanent(f"{name}: the relay rejected the message ({what})")
        untrusted = next((e for e in (exc, exc.__cause__, exc.__context__)
                          if isinstance(e, ssl.SSLCertVerificationError)), None)
        if untrusted is not None:
            return Permanent(f"{name}: the relay's TLS certificate is not trusted "
                             f"({untrusted.verify_message}) — set ca_file or check host")
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError):
            return Retryable(f"{name}: could not reach {self.settings.host}:"
                             f"{self.settings.port} ({type(exc).__name__})")
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
                      | ConnectionError | TimeoutError | OSError):
            if in_data:
                return OutcomeUnknown(f"{name}: connection lost during DATA; the relay may "
                                      f"have taken the message ({type(exc).__name__})")
            return Retryable(f"{name}: connection lost before the message was sent "
                             f"({type(exc).__name__})")
        if isinstance(exc, aiosmtplib.SMTPException):  # e.g. no STARTTLS, no AUTH offered
            return Permanent(f"{name}: {' '.join(str(exc).split())} — check security and "
                             "username in channels.toml")
        return OutcomeUnknown(f"{name}: unexpected error ({type(exc).__name__})")

    async def check_health(self) -> Health:
        """Connect, EHLO, STARTTLS or TLS and AUTH as configured, QUIT; nothing is sent."""
        client = self._client()
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            await client.connect()
            if client.last_ehlo_response is None:
                await client.ehlo()
            await client.quit()
        except Exception as exc:
            verdict = self._classify(exc, in_data=False)
            return Health(up=False, message=str(verdict).removeprefix(f"{self.name}: "),
                          credentials_rejected=isinstance(verdict, CredentialsRejected))
        finally:
            client.close()
        login = f" as {self.settings.username}" if self.settings.username else ""
        return Health(up=True, message=f"{where} accepts us{login} ({self.settings.security})")


KIND = ChannelKind(
    name="email",
    config_class=EmailConfig,
    create=EmailChannel,
    text_form=TextForm.LONG,
    markup=Markup.PLAIN,
    limit=None,
    count=lengths.characters,
    on_unknown=UnknownPolicy.RETRY,  # the stable Message-ID makes a resend recognisable
    rate=5.0,
    max_in_flight=2,
)
EmailChannel.kind = KIND
