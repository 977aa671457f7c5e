"""Retry policy, pure: how long to wait before attempt n+1, and when to give up.

Exponential backoff with full jitter (a random wait between zero and the
exponential ceiling), so that many deliveries failing together do not come back
together; a platform's own wait (Retry-After, retry_after, a rate-limit reset) is a
floor. Only the dispatcher uses this; channels never wait.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 1.0  # ceiling of the first wait, seconds
    cap: float = 300.0  # no wait is longer than this, unless the platform asks for more

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        jittered = rng.uniform(0, ceiling)
        if retry_after is not None:
            return max(retry_after, jittered)
        return jittered


def next_try(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None,
    now: datetime,
    queued_at: datetime,
    give_up_after: float,
    rng: random.Random,
) -> datetime | None:
    """When to try again, or None when that would be past the channel's give-up time."""
    when = now + timedelta(seconds=policy.delay(attempt, retry_after, rng))
    if (when - queued_at).total_seconds() > give_up_after:
        return None
    return when
