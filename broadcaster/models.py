"""The domain: alerts, deliveries, their states and receipts. No I/O here.

Delivery states (one row per alert and channel)::

    queued ──► sending ──► delivered
      ▲  │        │──────► failed       (permanent error, or retries used up)
      │  │        │──────► unknown      (outcome unknown and the channel cannot dedupe)
      │  │        └──────► queued       (retry, with a not_before time)
      │  └──────────────► cancelled     (superseded by an all-clear/correction, or by hand)
      └── failed / unknown ──► queued   (an officer's retry)

An alert's state is derived from its deliveries (see ``derive_alert_state``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from ulid import ULID


class Severity(StrEnum):
    """CAP severity of a template."""

    EXTREME = "extreme"
    SEVERE = "severe"
    MODERATE = "moderate"
    MINOR = "minor"


class Mode(StrEnum):
    """Live alerts reach the public; exercise alerts go only to exercise channels."""

    LIVE = "live"
    EXERCISE = "exercise"


class AlertKind(StrEnum):
    """What an alert is: the first message, or a follow-up of an earlier one."""

    ALERT = "alert"
    UPDATE = "update"
    ALLCLEAR = "allclear"
    CORRECTION = "correction"

    @property
    def supersedes(self) -> bool:
        """An all-clear or correction makes the earlier messages' queued copies stale."""
        return self in (AlertKind.ALLCLEAR, AlertKind.CORRECTION)


class DeliveryState(StrEnum):
    """Where one delivery (one alert on one channel) stands."""

    QUEUED = "queued"  # waiting for its lane, possibly until not_before
    SENDING = "sending"  # an attempt is under way (written before the network call)
    DELIVERED = "delivered"  # the platform confirmed it; the receipt is stored
    FAILED = "failed"  # will not be tried again without an officer's retry
    UNKNOWN = "unknown"  # may or may not be posted; an officer decides
    CANCELLED = "cancelled"  # superseded before it was sent

    @property
    def is_final(self) -> bool:
        """No further attempt will happen without a person acting."""
        return self not in (DeliveryState.QUEUED, DeliveryState.SENDING)


class AlertState(StrEnum):
    """An alert's state, derived from its deliveries."""

    SCHEDULED = "scheduled"
    AWAITING_APPROVAL = "awaiting_approval"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


def derive_alert_state(states: Iterable[DeliveryState]) -> AlertState:
    """Summarise delivery states: still moving, all through, some through, or none."""
    seen = list(states)
    if not seen:
        return AlertState.DELIVERED
    if any(not state.is_final for state in seen):
        return AlertState.DELIVERING
    if all(state is DeliveryState.DELIVERED for state in seen):
        return AlertState.DELIVERED
    if all(state is DeliveryState.CANCELLED for state in seen):
        return AlertState.CANCELLED
    if any(state is DeliveryState.DELIVERED for state in seen):
        return AlertState.PARTIAL
    return AlertState.FAILED


@dataclass(frozen=True)
class Receipt:
    """What a platform gave back for a post: enough to edit, reply to or retract it."""

    remote_id: str | None
    url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One try of one delivery."""

    number: int
    started_at: datetime
    duration: float | None
    result: str  # delivered | retryable | permanent | unknown | interrupted
    error_class: str | None
    message: str | None


@dataclass(frozen=True)
class Delivery:
    """One alert on one channel: the exact text, where it stands, and its receipt."""

    id: str
    alert_id: str
    channel: str
    state: DeliveryState
    attempts: int
    headline: str
    text: str
    error: str | None
    receipt: Receipt | None
    queued_at: datetime
    not_before: datetime | None
    first_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class Alert:
    """One message the city sends, with its deliveries."""

    id: str
    template: str
    template_sha256: str
    variables: Mapping[str, str]
    mode: Mode
    kind: AlertKind
    severity: Severity
    references: str | None
    created_by: str
    created_at: datetime
    send_at: datetime | None
    hold: str | None  # why its deliveries wait: "scheduled" or "awaiting_approval"
    deliveries: tuple[Delivery, ...]
    fired_at: datetime | None = None  # a scheduled alert was released
    late_seconds: float | None = None  # … this much after its time (the daemon was down)
    repeat: Mapping[str, str] | None = None  # a reminder series: {"every", "until"}
    repeat_of: str | None = None  # this alert repeats that one
    expires_at: datetime | None = None
    expired_at: datetime | None = None  # it lapsed without an all-clear
    pruned_at: datetime | None = None  # retention removed its texts
    idempotency_key: str | None = None

    @property
    def state(self) -> AlertState:
        if self.hold is not None and any(d.state is DeliveryState.QUEUED for d in self.deliveries):
            return AlertState(self.hold)
        return derive_alert_state(d.state for d in self.deliveries)


@dataclass(frozen=True)
class Outgoing:
    """Everything a channel needs for one attempt of one delivery."""

    delivery_id: str
    alert_id: str
    attempt: int
    kind: AlertKind
    mode: Mode
    severity: Severity
    headline: str
    text: str
    references: str | None
    reply_to: Receipt | None
    created_at: datetime


def new_id() -> str:
    """A new ULID: sortable by creation time, unique without coordination."""
    return str(ULID())


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with milliseconds and a Z, as the API prints every timestamp."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
