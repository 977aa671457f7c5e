"""Every Prometheus metric broadcaster exports, pre-initialised per channel.

Dashboards see zeros, not gaps: each labelled series exists from start. One
registry per application (no module globals). ``broadcaster_deliveries`` (a gauge
by channel and state) is counted from the ledger (``StateCounts``), so it can never
drift from the truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broadcaster.models import AlertKind, DeliveryState, Mode

if TYPE_CHECKING:
    from broadcaster.store import Database

OUTCOMES = ("delivered", "failed", "unknown", "cancelled")
ATTEMPT_RESULTS = ("delivered", "retryable", "permanent", "unknown")
# Deliveries take from tens of milliseconds to a minute and more (retries).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DeliveryStates(Collector):
    def __init__(self, channels: Iterable[str]) -> None:
        self.channels = list(channels)
        self.counts: Mapping[tuple[str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "broadcaster_deliveries", "Deliveries in the ledger by channel and state",
            labels=["channel", "state"],
        )
        channels = sorted(set(self.channels) | {channel for channel, _ in self.counts})
        for channel in channels:
            for state in DeliveryState:
                count = self.counts.get((channel, state.value), 0)
                family.add_metric([channel, state.value], count)
        yield family


class StateCounts:
    """The numbers behind ``broadcaster_deliveries{channel,state}``.

    The states that need attention (queued, sending, unknown) are counted at every
    scrape, from their own index. The final ones (delivered, failed, cancelled) only
    grow with the ledger's history and need a count of the whole table (a third of a
    second at a million deliveries), so they are recounted at most once a minute.
    """

    FINAL_MAX_AGE = 60.0

    def __init__(self) -> None:
        self._final: dict[tuple[str, str], int] = {}
        self._counted_at = -self.FINAL_MAX_AGE

    async def current(self, database: Database) -> dict[tuple[str, str], int]:
        if time.monotonic() - self._counted_at >= self.FINAL_MAX_AGE:
            everything = await database.read(database.store.delivery_counts)
            self._final = {key: n for key, n in everything.items() if key[1] not in ACTIVE}
            self._counted_at = time.monotonic()
            return everything
        return {**self._final, **await database.read(database.store.delivery_counts, True)}


ACTIVE = frozenset({"queued", "sending", "unknown"})


class Metrics:
    """The application's metrics; the dispatcher and API report into it."""

    def __init__(self, channels: Iterable[str], version: str) -> None:
        self.channels = list(channels)
        # auto_describe=False: the state gauge shares its stem with deliveries_total.
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.alerts = Counter("broadcaster_alerts", "Alerts accepted", ["mode", "kind"],
                              registry=r)
        self.deliveries = Counter("broadcaster_deliveries", "Deliveries that reached a final "
                                  "state", ["channel", "outcome"], registry=r)
        self.attempts = Counter("broadcaster_delivery_attempts", "Delivery attempts by result",
                                ["channel", "result"], registry=r)
        self.latency = Histogram("broadcaster_delivery_latency_seconds", "From accepted to "
                                 "delivered", ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.channel_up = Gauge("broadcaster_channel_up", "1 when the channel's last health "
                                "check or delivery succeeded", ["channel"], registry=r)
        self.credentials_ok = Gauge("broadcaster_channel_credentials_ok", "0 when the "
                                    "channel's last health check or delivery was refused for "
                                    "its credentials", ["channel"], registry=r)
        self.last_success = Gauge("broadcaster_channel_last_success_timestamp_seconds",
                                  "Unix time of the channel's last delivery", ["channel"],
                                  registry=r)
        self.expired = Counter("broadcaster_alerts_expired_without_allclear", "Alerts that "
                               "expired without an all-clear", registry=r)
        self.database_up = Gauge("broadcaster_database_up", "1 while the ledger answers "
                                 "(SQLite file or PostgreSQL server), 0 while it does not",
                                 registry=r)
        self.database_up.set(1)
        self.claims = Counter("broadcaster_claims", "Deliveries this node claimed (took a "
                              "lease on) to attempt", ["channel"], registry=r)
        self.taken_over = Counter("broadcaster_leases_taken_over", "Deliveries this node "
                                  "took over after their node stopped renewing its lease",
                                  ["channel"], registry=r)
        self.late_results = Counter("broadcaster_late_results_discarded", "Attempt results "
                                    "this node did not write: its lease had been taken over",
                                    ["channel"], registry=r)
        self.health_checks = Counter("broadcaster_health_checks", "Health checks this node "
                                     "ran (once per interval in the whole cluster)",
                                     ["channel"], registry=r)
        self.node_info = Gauge("broadcaster_node_info", "This node's name and version",
                               ["node", "version"], registry=r)
        self.nodes_live = Gauge("broadcaster_nodes_live", "Nodes whose heartbeat is fresh "
                                "(from the ledger: the same on every node)", registry=r)
        self.nodes_expected = Gauge("broadcaster_nodes_expected", "Nodes the configuration "
                                    "expects ([service] expected_nodes)", registry=r)
        self.build_info = Gauge("broadcaster_build_info", "Version of broadcaster", ["version"],
                                registry=r)
        self.build_info.labels(version).set(1)
        self.states = _DeliveryStates(self.channels)
        self.state_counts = StateCounts()
        r.register(self.states)
        for mode in Mode:
            for kind in AlertKind:
                self.alerts.labels(mode.value, kind.value)
        for channel in self.channels:
            for outcome in OUTCOMES:
                self.deliveries.labels(channel, outcome)
            for result in ATTEMPT_RESULTS:
                self.attempts.labels(channel, result)
            self.latency.labels(channel)
            self.claims.labels(channel)
            self.taken_over.labels(channel)
            self.late_results.labels(channel)
            self.health_checks.labels(channel)
            self.channel_up.labels(channel).set(1)
            self.credentials_ok.labels(channel).set(1)
            self.last_success.labels(channel)

    def joined(self, node: str, version: str, expected_nodes: int) -> None:
        self.node_info.labels(node, version).set(1)
        self.nodes_expected.set(expected_nodes)
        self.nodes_live.set(1)

    def exposition(self, delivery_counts: Mapping[tuple[str, str], int]) -> bytes:
        """The text format, with the state gauge taken from ``delivery_counts``."""
        self.states.counts = delivery_counts
        return generate_latest(self.registry)
