"""Benchmark results (a name, what was measured, the target, whether it was met) and
the measurements several benchmarks share: a fan-out against its floor."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from bench.stack import BenchStack, Endpoint


@dataclass
class Figure:
    name: str
    value: str
    target: str
    ok: bool


def ratio_figure(name: str, ours: float, bare: float, limit: float) -> Figure:
    ratio = ours / bare
    return Figure(name, f"{ours * 1000:.0f} ms vs floor {bare * 1000:.0f} ms = {ratio:.3f}×",
                  f"≤ {limit:.2f}×", ratio <= limit)


def percentile(samples: Sequence[float], share: float) -> float:
    """The sample below which ``share`` of them lie (p99 of 200: the second largest)."""
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * share) - 1)]


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _delivered_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def fan_out(stack: BenchStack, session: aiohttp.ClientSession, channels: list[str],
                  expect: list[str] | None = None) -> float:
    """Seconds from POST to the last of ``expect`` (default: all) recorded delivered."""
    expect = expect or channels
    started = time.time()
    alert = await stack.post_alert(session, channels)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await stack.get_alert(session, alert["id"])
        done = [d for d in found["deliveries"] if d["channel"] in expect]
        if all(d["state"] == "delivered" for d in done):
            return max(_delivered_at(d["delivered_at"]) for d in done) - started
        # The time is the ledger's delivered_at, so polling slowly loses no precision —
        # and keeps the benchmark from loading the daemon it measures.
        await asyncio.sleep(0.05)
    raise RuntimeError(f"alert {alert['id']} not delivered in time")


async def floor(session: aiohttp.ClientSession, endpoints: list[Endpoint]) -> float:
    """The bare minimum: the same POSTs, all at once, nothing recorded."""
    started = time.time()
    await asyncio.gather(*(endpoint.post(session) for endpoint in endpoints))
    return time.time() - started


async def paired(runs: int, ours: Callable[[], Awaitable[float]],
                 bare: Callable[[], Awaitable[float]], pace: float = 0.0) -> tuple[float, float]:
    """Alternate floor and measurement, so drift hits both alike; medians. ``pace``
    spaces the runs, for channels whose rate limit (Telegram: about one message a
    second per chat) would otherwise be what is measured."""
    ours_samples, floor_samples = [], []
    for _ in range(runs):
        floor_samples.append(await bare())
        await asyncio.sleep(pace)
        ours_samples.append(await ours())
        await asyncio.sleep(pace)
    return _median(ours_samples), _median(floor_samples)
