"""Telegram channel: posts to a channel or group through the Bot API.

Uses python-telegram-bot's bare ``telegram.Bot`` (no Application, no polling) with
our own HTTPXRequest, created in start() and shut down in close(). The Bot is never
``initialize()``d: that would call getMe at start, and start must not fail while
Telegram is unreachable; the methods used here do not need it.

The text arrives composed and HTML-escaped (``ChannelKind.compose``), so it is sent
with ``parse_mode=HTML`` as it is. A follow-up replies to the original message.

Verdicts, in python-telegram-bot's exception order: RetryAfter → Retryable with
Telegram's wait; Forbidden and InvalidToken → Permanent, saying what a person must
do; BadRequest → Permanent with Telegram's description; TimedOut → Retryable when
the request never left (pool or connect timeout), else OutcomeUnknown; NetworkError
→ Retryable when the connection could not be made or Telegram answered with an
error status (5xx), OutcomeUnknown when the connection broke after the request
went out. Telegram has no idempotency, so an unknown outcome is held for an officer.

python-telegram-bot puts the token in the URL path and error answers may echo the
path: every message built here is scrubbed of the token.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import timedelta

import httpx
from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from broadcaster import lengths
from broadcaster.channels.base import (
    Channel,
    ChannelKind,
    Health,
    Markup,
    TextForm,
    UnknownPolicy,
    connection_error,
)
from broadcaster.config import ChannelConfig, ConfigProblem, Secret, require_http_url
from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.models import Outgoing, Receipt

# Public usernames: 5–32 characters, letters, digits and underscores, a letter first.
_CHANNEL_NAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{4,31}")
_NUMERIC_CHAT = re.compile(r"-?[0-9]{1,20}")
# Transport failures that happen before a byte of the request is sent.
_NOT_SENT = (httpx.ConnectError, httpx.ProxyError, httpx.UnsupportedProtocol,
             httpx.LocalProtocolError)
_NOT_SENT_TIMEOUTS = (httpx.ConnectTimeout, httpx.PoolTimeout)
_NOT_MODIFIED = "message is not modified"
# Whatever follows /bot in a URL path is a token, whether or not it is ours.
_PATH_TOKEN = re.compile(r"/bot[^/\s\"'?#]+")


@dataclass(frozen=True)
class TelegramConfig:
    chat_id: str  # "@channelname" or a numeric chat id such as "-1001234567890"
    token: Secret
    api_base: str = "https://api.telegram.org"

    def validate(self) -> None:
        if not (_CHANNEL_NAME.fullmatch(self.chat_id) or _NUMERIC_CHAT.fullmatch(self.chat_id)):
            raise ConfigProblem(
                "chat_id", f'must be "@channelname" (5–32 letters, digits or _) or a numeric '
                f'chat id such as "-1001234567890", not {self.chat_id!r}',
            )
        require_http_url("api_base", self.api_base)
        if "?" in self.api_base or "#" in self.api_base:
            raise ConfigProblem("api_base", "give the host (and path) only, without ? or #")

    @property
    def target(self) -> str:
        return self.chat_id


def _chat(chat_id: str) -> int | str:
    """The Bot API's chat_id: an integer for numeric ids, the @name otherwise."""
    return int(chat_id) if _NUMERIC_CHAT.fullmatch(chat_id) else chat_id


def _seconds(exc: RetryAfter) -> float:
    # python-telegram-bot 22 warns on reading an int-valued retry_after unless
    # PTB_TIMEDELTA is set; either form means the same wait.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramChannel(Channel):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        settings = config.settings
        assert isinstance(settings, TelegramConfig)
        self.settings = settings
        # Case-insensitive: python-telegram-bot re-capitalises "Bad Request: …" texts.
        token = settings.token.reveal()
        self._token = re.compile(re.escape(token), re.IGNORECASE) if token else None
        self._request: HTTPXRequest | None = None
        self._bot: Bot | None = None

    async def start(self) -> None:
        # Connect and pool waits end well inside the dispatcher's per-attempt timeout,
        # so "never sent" is told apart from "no answer"; reads are left to that timeout.
        quick = min(5.0, self.config.timeout / 2)
        self._request = HTTPXRequest(
            connection_pool_size=self.config.max_in_flight + 2,
            connect_timeout=quick, pool_timeout=quick,
            read_timeout=self.config.timeout + 1, write_timeout=self.config.timeout + 1,
        )
        base = self.settings.api_base.rstrip("/")
        # The same request object for getUpdates (never called) keeps one client to close.
        self._bot = Bot(self.settings.token.reveal(), base_url=f"{base}/bot",
                        request=self._request, get_updates_request=self._request)

    async def close(self) -> None:
        if self._request is not None:
            await self._request.shutdown()
        self._bot = self._request = None

    def _started(self) -> Bot:
        if self._bot is None:
            raise RuntimeError(f"{self.name}: start() the channel first")
        return self._bot

    async def send(self, outgoing: Outgoing) -> Receipt:
        bot = self._started()
        reply = None
        original = outgoing.reply_to.remote_id if outgoing.reply_to is not None else None
        if original and original.isdigit():
            # Should the original be gone (deleted, older than Telegram keeps), post anyway.
            reply = ReplyParameters(message_id=int(original), allow_sending_without_reply=True)
        try:
            message = await bot.send_message(
                chat_id=_chat(self.settings.chat_id), text=outgoing.text,
                parse_mode=ParseMode.HTML, reply_parameters=reply,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except TelegramError as exc:
            raise self.classify(exc) from None
        return self._receipt(message.message_id, message.chat_id)

    async def edit(self, receipt: Receipt, outgoing: Outgoing) -> Receipt:
        bot = self._started()
        chat, message_id = self._address(receipt)
        try:
            await bot.edit_message_text(
                text=outgoing.text, chat_id=chat, message_id=message_id,
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except BadRequest as exc:
            if _NOT_MODIFIED not in str(exc).lower():  # the same text again is done
                raise self.classify(exc) from None
        except TelegramError as exc:
            raise self.classify(exc) from None
        return receipt

    async def retract(self, receipt: Receipt) -> None:
        bot = self._started()
        chat, message_id = self._address(receipt)
        try:
            await bot.delete_message(chat_id=chat, message_id=message_id)
        except TelegramError as exc:
            raise self.classify(exc) from None

    async def check_health(self) -> Health:
        bot = self._started()
        try:
            me = await bot.get_me()
        except (InvalidToken, Forbidden):
            return Health(up=False, message=self._token_rejected(), credentials_rejected=True)
        except RetryAfter as exc:
            return Health(up=True, message=f"token valid; Telegram asks to wait "
                                           f"{_seconds(exc):g} s (flood control)")
        except TelegramError as exc:
            verdict = self.classify(exc)
            if isinstance(verdict, Permanent):
                return Health(up=False, message=str(verdict),
                              credentials_rejected=isinstance(verdict, CredentialsRejected))
            detail = str(verdict).removeprefix(f"{self.name}: ")
            return Health(up=False, message=f"Telegram unreachable from channel "
                                            f"{self.name!r}: {detail}")
        return Health(up=True, message=f"bot @{me.username} accepted by Telegram")

    def _address(self, receipt: Receipt) -> tuple[int | str, int]:
        if not receipt.remote_id or not receipt.remote_id.isdigit():
            raise Permanent(f"{self.name}: the receipt has no Telegram message id")
        return _chat(receipt.extra.get("chat_id") or self.settings.chat_id), int(receipt.remote_id)

    def _receipt(self, message_id: int, chat_id: int) -> Receipt:
        configured = self.settings.chat_id
        url = (f"https://t.me/{configured[1:]}/{message_id}" if configured.startswith("@")
               else None)
        # The numeric id survives a rename of the channel's @name.
        return Receipt(remote_id=str(message_id), url=url, extra={"chat_id": str(chat_id)})

    def _token_rejected(self) -> str:
        return (f"Telegram rejected the bot token of channel {self.name!r} — renew `token` "
                f"({self.settings.token.source}) in channels.toml")

    def redact(self, text: str) -> str:
        """The text without the token, even where an error answer echoed the URL."""
        if self._token is not None:
            text = self._token.sub("***", text)
        return _PATH_TOKEN.sub("/bot***", text)

    def classify(self, exc: TelegramError) -> DeliveryError:
        """The verdict on one python-telegram-bot exception, free of the token."""
        name = self.name
        said = self.redact(str(exc))
        if isinstance(exc, RetryAfter):
            wait = _seconds(exc)
            return Retryable(f"{name}: Telegram flood control, retry in {wait:g} s",
                             retry_after=wait)
        if isinstance(exc, Forbidden):
            return CredentialsRejected(
                f"{name}: Telegram refused the bot ({said}) — make the bot an administrator "
                f"of {self.settings.chat_id} with the right to post, or unblock it",
            )
        if isinstance(exc, InvalidToken):
            return CredentialsRejected(f"{name}: {self._token_rejected()} (or check api_base)")
        if isinstance(exc, BadRequest):
            return Permanent(f"{name}: Telegram rejected the message ({said})")
        if isinstance(exc, TimedOut):
            cause = exc.__cause__
            if isinstance(cause, _NOT_SENT_TIMEOUTS):
                return Retryable(f"{name}: could not reach Telegram in time "
                                 f"({type(cause).__name__}); nothing was sent")
            what = type(cause).__name__ if cause is not None else "timeout"
            return OutcomeUnknown(f"{name}: no answer from Telegram after the request was "
                                  f"sent ({what}); it may have been posted")
        if isinstance(exc, NetworkError):
            cause = exc.__cause__
            if isinstance(cause, httpx.HTTPError):
                return connection_error(name, cause, request_sent=not isinstance(cause, _NOT_SENT))
            if cause is None or isinstance(cause, TelegramError):
                # Telegram (or a proxy) answered with an error status such as 5xx.
                return Retryable(f"{name}: Telegram answered with an error ({said})")
            return OutcomeUnknown(f"{name}: the HTTP client failed ({type(cause).__name__})")
        if isinstance(exc, ChatMigrated):
            return Permanent(f"{name}: the group became a supergroup — set chat_id = "
                             f'"{exc.new_chat_id}" in channels.toml')
        # A 2xx answer we could not read: Telegram probably acted on the request.
        return OutcomeUnknown(f"{name}: unreadable answer from Telegram ({said})")


KIND = ChannelKind(
    name="telegram",
    config_class=TelegramConfig,
    create=TelegramChannel,
    text_form=TextForm.LONG,
    markup=Markup.HTML,
    limit=lengths.TELEGRAM_LIMIT,
    count=lengths.telegram_length,
    on_unknown=UnknownPolicy.HOLD,
    rate=1.0,
    max_in_flight=1,
)
TelegramChannel.kind = KIND
