"""What every channel is: the Channel base class, the ChannelKind record a module
registers, and the shared HTTP verdict (``classify_http``).

A channel renders nothing and retries nothing. ``send`` makes one call and either
returns a Receipt or raises one of Retryable / Permanent / OutcomeUnknown
(errors.py); the dispatcher decides what happens next.
"""

from __future__ import annotations

import abc
import email.utils
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from broadcaster.errors import (
    CredentialsRejected,
    DeliveryError,
    OutcomeUnknown,
    Permanent,
    Retryable,
)
from broadcaster.models import Outgoing, Receipt

if TYPE_CHECKING:
    from broadcaster.config import ChannelConfig


class TextForm(StrEnum):
    """Which text of a template a channel posts."""

    SHORT = "short"  # the template's `short` text (X, Mastodon)
    LONG = "long"  # headline and body (Telegram, Facebook, e-mail, webhooks)


class Markup(StrEnum):
    """How the posted text is marked up."""

    PLAIN = "plain"
    HTML = "html"  # Telegram's parse_mode=HTML: <, > and & escaped


class UnknownPolicy(StrEnum):
    """What to do when an attempt's outcome is unknown."""

    RETRY = "retry"  # the platform deduplicates (idempotency key, duplicate check)
    HOLD = "hold"  # it cannot: mark the delivery unknown, an officer decides


class NotSupported(Exception):
    """The channel cannot do this (edit, retract) on its platform."""


@dataclass(frozen=True)
class RenderedText:
    """One language's rendered texts, plain (not yet escaped for any target)."""

    language: str
    headline: str
    short: str
    body: str


@dataclass(frozen=True)
class Composed:
    """The exact text a channel will post, and how long the platform counts it."""

    headline: str
    text: str
    length: int
    limit: int | None

    @property
    def too_long(self) -> bool:
        return self.limit is not None and self.length > self.limit


@dataclass(frozen=True)
class Health:
    """The result of a cheap check that the channel can post (token valid, host up)."""

    up: bool
    message: str
    credentials_rejected: bool = False  # a person must renew a token, key or password


# Between languages in one long-form post (a bilingual Facebook post, say).
LANGUAGE_SEPARATOR = "\n\n———\n\n"


@dataclass(frozen=True)
class ChannelKind:
    """Everything broadcaster knows about one kind of channel; one per module."""

    name: str
    config_class: type[Any]
    create: Callable[[ChannelConfig], Channel]
    text_form: TextForm
    markup: Markup
    limit: int | None
    count: Callable[[str], int]
    on_unknown: UnknownPolicy
    rate: float  # messages per second
    max_in_flight: int

    def secret_keys(self) -> tuple[str, ...]:
        """The kind's keys that hold secrets (typed Secret in its config class)."""
        return tuple(f.name for f in fields(self.config_class) if "Secret" in str(f.type))

    def compose(self, texts: Sequence[RenderedText], limit: int | None = None) -> Composed:
        """Build the exact post from rendered texts, in the channel's languages."""
        limit = self.limit if limit is None else limit
        if self.text_form is TextForm.SHORT:
            first = texts[0]
            headline, text = first.headline, first.short
            if self.markup is Markup.HTML:
                headline, text = html.escape(headline, quote=False), html.escape(text, quote=False)
        else:
            parts = []
            for rendered in texts:
                if self.markup is Markup.HTML:
                    head = html.escape(rendered.headline, quote=False)
                    body = html.escape(rendered.body, quote=False)
                    parts.append(f"<b>{head}</b>\n\n{body}")
                else:
                    parts.append(f"{rendered.headline}\n\n{rendered.body}")
            headline = texts[0].headline
            text = LANGUAGE_SEPARATOR.join(parts)
        return Composed(headline=headline, text=text, length=self.count(text), limit=limit)


class Channel(abc.ABC):
    """One configured channel. Subclasses make one call per method and classify.

    Each module sets ``kind`` on its class right after defining its KIND.
    """

    kind: ChannelKind

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.name = config.name

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open sessions. Must not fail when the platform is unreachable."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions."""

    @abc.abstractmethod
    async def send(self, outgoing: Outgoing) -> Receipt:
        """Post once; return the receipt or raise Retryable/Permanent/OutcomeUnknown.

        ``outgoing.reply_to`` is the receipt of the message this one follows up on
        this channel, when there is one: thread to it.
        """

    async def edit(self, receipt: Receipt, outgoing: Outgoing) -> Receipt:
        """Replace the text of an earlier post."""
        raise NotSupported(f"{self.name}: this channel cannot edit posts")

    async def retract(self, receipt: Receipt) -> None:
        """Delete an earlier post."""
        raise NotSupported(f"{self.name}: this channel cannot delete posts")

    async def check_health(self) -> Health:
        """A cheap check that posting would work; default: nothing to check."""
        return Health(up=True, message="no check for this kind")

    def length_limit(self) -> int | None:
        """The limit that applies now (an instance may announce its own)."""
        return self.kind.limit

    def secrets(self) -> list[str]:
        """Every secret value of this channel, so errors and logs can be scrubbed."""
        from broadcaster.config import Secret

        values = (getattr(self.config.settings, f.name) for f in fields(self.config.settings))
        return [value.reveal() for value in values if isinstance(value, Secret)]


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Retry-After as seconds, from either delta-seconds or an HTTP date."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    channel: str,
    auth_hint: str = "check the credentials in channels.toml",
    extra_retryable: frozenset[int] = frozenset(),
) -> DeliveryError | None:
    """The shared verdict on an HTTP answer: None for success, else the error to raise.

    2xx delivered; 408, 425, 429 and 5xx retryable (honouring Retry-After);
    401/403 permanent with ``auth_hint``; other 4xx permanent.
    """
    if 200 <= status < 300:
        return None
    excerpt = " ".join(body.split())[:200]
    detail = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if status in RETRYABLE_STATUSES or status in extra_retryable or status >= 500:
        return Retryable(f"{channel}: {detail}", retry_after=retry_after_seconds(headers))
    if status in (401, 403):
        return CredentialsRejected(f"{channel}: credentials rejected ({detail}) — {auth_hint}")
    return Permanent(f"{channel}: request rejected ({detail})")


def connection_error(channel: str, exc: BaseException, *, request_sent: bool) -> DeliveryError:
    """Classify a transport failure: before the request went out it is retryable,
    after it the outcome is unknown."""
    what = type(exc).__name__
    if request_sent:
        return OutcomeUnknown(f"{channel}: connection lost after the request was sent ({what})")
    return Retryable(f"{channel}: could not reach the platform ({what})")
