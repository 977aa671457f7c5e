"""Platform channels for the benchmarks: a [[channel]] block each for the sandbox, and
the raw request that channel makes, for the floor. Filled in per platform kind;
kinds that are not registered are left out."""

from __future__ import annotations

from pathlib import Path

from bench.stack import Endpoint

# channel name → sandbox platform (for latency faults)
PLATFORM_OF: dict[str, str] = {}


def platform_channels(sandbox: str, smtp_port: int, directory: Path
                      ) -> tuple[dict[str, str], dict[str, Endpoint], dict[str, str]]:
    """(config blocks, floor endpoints, extra environment) per platform channel."""
    return {}, {}, {}
