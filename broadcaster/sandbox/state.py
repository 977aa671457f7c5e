"""The sandbox's memory: every post received, and the faults injected.

Each platform stand-in records what it received as a Post and, before answering,
asks ``apply_faults`` whether an injected fault applies to it (by platform and
target: a chat, page, account or webhook name).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from aiohttp import web

from broadcaster.models import iso_utc, utcnow


class FaultKind(StrEnum):
    LATENCY = "latency"  # value: milliseconds before the normal answer
    ERROR = "error"  # value: HTTP status (SMTP: reply code), in the platform's own shape
    RATELIMIT = "ratelimit"  # value: seconds the platform asks to wait
    HANG = "hang"  # never answer; the client has to time out
    DROP_AFTER_RECEIVE = "drop_after_receive"  # read the request, close without answering


@dataclass
class Fault:
    platform: str
    kind: FaultKind
    target: str | None = None
    value: float | None = None
    count: int | None = None  # how many requests it still affects; None: until cleared

    def matches(self, platform: str, target: str | None) -> bool:
        return self.platform == platform and (self.target is None or self.target == target)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "target": self.target, "kind": self.kind.value,
                "value": self.value, "count": self.count}


@dataclass
class Post:
    platform: str
    target: str
    id: str
    text: str
    reply_to: str | None = None
    idempotency_key: str | None = None
    received_at: datetime = field(default_factory=utcnow)
    edited: bool = False
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform, "target": self.target, "id": self.id, "text": self.text,
            "reply_to": self.reply_to, "idempotency_key": self.idempotency_key,
            "received_at": iso_utc(self.received_at), "edited": self.edited,
            "deleted": self.deleted, "extra": self.extra,
        }


class StandIn(Protocol):
    """A platform's stand-in: its routes and how its platform answers errors.

    Error answers echo the request path, as several platforms do, so tests can
    prove that no secret (Telegram's token is in the path) leaks from them.
    """

    platform: str

    def routes(self) -> list[web.RouteDef]: ...

    def error_response(self, request: web.Request, status: int) -> web.Response: ...

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response: ...


class SandboxState:
    """Posts and faults, shared by every stand-in of one sandbox."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.faults: list[Fault] = []
        self._ids = itertools.count(1000)
        self.changed = asyncio.Event()

    def next_id(self) -> int:
        return next(self._ids)

    def record(self, post: Post) -> Post:
        self.posts.append(post)
        self._notify()
        return post

    def find(self, platform: str, post_id: str) -> Post | None:
        return next((p for p in self.posts if p.platform == platform and p.id == post_id), None)

    def find_by_key(self, platform: str, target: str, key: str) -> Post | None:
        return next(
            (p for p in self.posts if p.platform == platform and p.target == target
             and p.idempotency_key == key), None,
        )

    def updated(self) -> None:
        """Call after editing or deleting a post in place."""
        self._notify()

    def clear_posts(self) -> None:
        self.posts.clear()
        self._notify()

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, platform: str, target: str | None) -> Fault | None:
        """The first fault that applies to this request, counting it down."""
        for fault in self.faults:
            if fault.matches(platform, target):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def parse_fault(document: Mapping[str, Any], platforms: set[str]) -> Fault:
    """A fault from the JSON of POST /_sandbox/faults; ValueError says what is wrong."""
    platform = document.get("platform")
    if platform not in platforms:
        raise ValueError(f"platform must be one of {', '.join(sorted(platforms))}")
    try:
        kind = FaultKind(str(document.get("kind")))
    except ValueError:
        raise ValueError(f"kind must be one of {', '.join(k.value for k in FaultKind)}") from None
    target = document.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError("target must be a string (a chat, page, account or webhook name)")
    value = document.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("value must be a number")
    if kind in (FaultKind.ERROR, FaultKind.RATELIMIT, FaultKind.LATENCY) and value is None:
        raise ValueError(f"a {kind.value} fault needs a value")
    count = document.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive whole number")
    return Fault(platform=platform, kind=kind, target=target,
                 value=float(value) if value is not None else None, count=count)


async def apply_faults(
    request: web.Request, state: SandboxState, stand_in: StandIn, target: str | None
) -> web.StreamResponse | None:
    """Act out an injected fault for this request, or return None to answer normally.

    Call after the request body has been read (drop_after_receive means the
    platform got the request).
    """
    fault = state.take_fault(stand_in.platform, target)
    if fault is None:
        return None
    if fault.kind is FaultKind.LATENCY:
        await asyncio.sleep((fault.value or 0) / 1000)
        return None
    if fault.kind is FaultKind.ERROR:
        return stand_in.error_response(request, int(fault.value or 500))
    if fault.kind is FaultKind.RATELIMIT:
        return stand_in.ratelimit_response(request, fault.value or 1)
    if fault.kind is FaultKind.HANG:
        # The server runs with handler cancellation: this ends when the client gives up.
        await asyncio.Event().wait()
    # drop_after_receive: the request was read; close without a word.
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError
