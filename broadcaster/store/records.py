"""The ledger's records: what goes in and comes out of every backend, and times as stored.

Plain frozen dataclasses without I/O. Times are stored as UTC ISO 8601 text with
microseconds and a Z (``ts``); both backends hand them back in that form, so they
sort as text and the audit chain hashes the same bytes everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broadcaster.models import (
    Alert,
    AlertKind,
    Delivery,
    DeliveryState,
    Mode,
    Receipt,
    Severity,
)

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    """A timestamp as stored: UTC, microseconds, sortable as text."""
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text)  # C-fast, unlike strptime; reads the Z as UTC


def from_ts(text: str) -> datetime:
    moment = parse_ts(text)
    assert moment is not None
    return moment


@dataclass(frozen=True)
class NewDelivery:
    id: str
    channel: str
    headline: str
    text: str


@dataclass(frozen=True)
class NewAlert:
    """An alert ready to be accepted: validated and rendered, with its deliveries."""

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
    deliveries: tuple[NewDelivery, ...]
    send_at: datetime | None = None
    hold: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    repeat: Mapping[str, str] | None = None
    repeat_of: str | None = None
    expires_at: datetime | None = None

    def as_accepted(self) -> Alert:
        """The alert as the ledger holds it right after accepting it (every delivery
        queued), without reading it back."""
        return Alert(
            id=self.id, template=self.template, template_sha256=self.template_sha256,
            variables=self.variables, mode=self.mode, kind=self.kind, severity=self.severity,
            references=self.references, created_by=self.created_by,
            created_at=self.created_at, send_at=self.send_at, hold=self.hold,
            deliveries=tuple(
                Delivery(id=d.id, alert_id=self.id, channel=d.channel,
                         state=DeliveryState.QUEUED, attempts=0, headline=d.headline,
                         text=d.text, error=None, receipt=None, queued_at=self.created_at,
                         not_before=self.send_at, first_attempt_at=None, delivered_at=None)
                for d in sorted(self.deliveries, key=lambda d: d.channel)),
            repeat=self.repeat, repeat_of=self.repeat_of, expires_at=self.expires_at,
            idempotency_key=self.idempotency_key,
        )


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    subject: str | None = None
    address: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DueDelivery:
    """A queued delivery whose turn has come, with what its channel needs."""

    id: str
    alert_id: str
    channel: str
    attempts: int
    headline: str
    text: str
    kind: AlertKind
    mode: Mode
    severity: Severity
    references: str | None
    alert_created_at: datetime
    queued_at: datetime
    reply_to: Receipt | None


@dataclass(frozen=True)
class ClaimRequest:
    """What one lane asks for: up to ``limit`` deliveries (its free slots), within the
    channel's limits for the whole cluster (None: no such limit)."""

    channel: str
    limit: int
    max_in_flight: int | None = None  # attempts under way on every node together
    rate: float | None = None  # messages per second, every node together
    burst: float = 1.0


@dataclass(frozen=True)
class Finished:
    """How writing an attempt's end went."""

    written: bool  # False: stale (the attempt was resolved elsewhere)
    unblocks: bool  # a follow-up on the same channel waited for this one to finish


@dataclass(frozen=True)
class Lease:
    """Who claims, and until when the claim holds unless renewed."""

    node: str
    until: datetime


@dataclass(frozen=True)
class Claim:
    """What a lane took from its queue, and what remains."""

    deliveries: list[DueDelivery]
    more_due: bool  # more deliveries are due right now than were taken
    next_due: datetime | None  # when the next delivery waiting for a time falls due
    # Why not more were taken although due: "rate" (the budget refills at
    # ``budget_at``) or "slots" (the cluster's in-flight limit); None: the lane's own
    # slots, or nothing more was due.
    held_by: str | None = None
    budget_at: datetime | None = None


@dataclass(frozen=True)
class NodeRecord:
    """A node as the registry knows it."""

    name: str
    version: str
    address: str | None
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    leases: int  # attempts it has under way


@dataclass(frozen=True)
class HealthRecord:
    """A channel's last health check, shared by every node."""

    channel: str
    up: bool
    credentials_ok: bool
    message: str
    checked_at: datetime
    node: str


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended and where the delivery goes next."""

    result: str  # delivered | retryable | permanent | unknown
    state: DeliveryState
    duration: float
    error_class: str | None = None
    message: str | None = None
    receipt: Receipt | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class Recovered:
    delivery_id: str
    channel: str
    attempt: int
    state: DeliveryState
    alert_id: str
    node: str | None = None  # whose lease it was


@dataclass(frozen=True)
class BackupReport:
    """What a backup wrote (``backups.py``) and how the copy was checked."""

    path: Path
    size: int
    schema_version: int
    alerts: int
    deliveries: int
    users: int
    audit_events: int
    checked: str = "integrity ok"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str
    token_hash: str | None
    password_hash: str | None
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class ConsoleSession:
    """A web console login; the cookie holds the id, the ledger only its sha256."""

    id_hash: str
    user: User
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


SCHEDULED = "scheduled"
"""The hold of an alert waiting for its send time."""
IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long an Idempotency-Key is remembered per user."""
