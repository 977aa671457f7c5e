"""One benchmark result: a name, what was measured, the target, and whether it was met."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
