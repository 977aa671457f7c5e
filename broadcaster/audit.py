"""The audit chain: each event's hash covers its content and the previous hash.

Pure functions; the ledger (``broadcaster/store/auditlog.py``) writes and reads the
rows. Changing or deleting any row breaks the chain at that row, which
``first_broken`` finds. Retention never deletes audit rows, so the chain stays
verifiable for the life of the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: str
    actor: str
    address: str | None
    action: str
    subject: str | None
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


def event_hash(
    prev_hash: str, seq: int, at: str, actor: str, address: str | None, action: str,
    subject: str | None, details_json: str,
) -> str:
    """sha256 over the previous hash and a canonical encoding of the event."""
    canonical = json.dumps(
        [prev_hash, seq, at, actor, address, action, subject, details_json],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def canonical_details(details: Mapping[str, Any]) -> str:
    return json.dumps(details, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Break:
    """Where the chain breaks and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"audit row {self.seq}: {self.reason}"


def first_broken(rows: Iterable[tuple[int, str, str, str | None, str, str | None, str, str, str]]
                 ) -> Break | None:
    """Walk (seq, at, actor, address, action, subject, details, prev_hash, hash) rows
    in order; the first row that does not follow from its predecessor, or None."""
    expected_prev = GENESIS
    expected_seq = 1
    for seq, at, actor, address, action, subject, details, prev_hash, stored in rows:
        if seq != expected_seq:
            return Break(expected_seq, f"missing (the next row is {seq}): a row was deleted")
        if prev_hash != expected_prev:
            return Break(seq, "does not follow the previous row: a row before it was changed")
        if event_hash(prev_hash, seq, at, actor, address, action, subject, details) != stored:
            return Break(seq, "its content does not match its hash: the row was changed")
        expected_prev = stored
        expected_seq += 1
    return None
