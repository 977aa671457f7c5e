"""What the daemon knows about each channel's health, for /api/v1/channels, the
console and ``broadcaster_channel_up``.

Fed by deliveries (a delivered message proves the channel works) and by the
periodic health checks (a rejected token proves it does not, before the night it
is needed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from broadcaster.channels.base import Health
from broadcaster.metrics import Metrics


@dataclass(frozen=True)
class ChannelHealth:
    up: bool
    message: str
    checked_at: datetime | None = None  # last health check
    last_success_at: datetime | None = None  # last delivered message


class HealthBoard:
    def __init__(self, channels: Iterable[str], metrics: Metrics) -> None:
        self.metrics = metrics
        self._health = {name: ChannelHealth(True, "not checked yet") for name in channels}

    def get(self, channel: str) -> ChannelHealth:
        return self._health.get(channel, ChannelHealth(False, "not configured"))

    def delivered(self, channel: str, at: datetime) -> None:
        current = self.get(channel)
        self._set(channel, replace(current, up=True, last_success_at=at,
                                   message=current.message if current.up else "delivering"))
        self.metrics.last_success.labels(channel).set(at.timestamp())
        self.metrics.credentials_ok.labels(channel).set(1)

    def credentials_refused(self, channel: str, message: str) -> None:
        """A delivery was refused for the channel's credentials: it is down until renewed."""
        self._set(channel, replace(self.get(channel), up=False, message=message))
        self.metrics.credentials_ok.labels(channel).set(0)

    def checked(self, channel: str, result: Health, at: datetime) -> None:
        self._set(channel, replace(self.get(channel), up=result.up, message=result.message,
                                   checked_at=at))
        if result.up or result.credentials_rejected:
            self.metrics.credentials_ok.labels(channel).set(0 if result.credentials_rejected
                                                            else 1)

    def _set(self, channel: str, health: ChannelHealth) -> None:
        self._health[channel] = health
        self.metrics.channel_up.labels(channel).set(1 if health.up else 0)
