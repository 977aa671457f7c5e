"""Two nodes on one PostgreSQL ledger: as fast as one, and quick to take over.

    fan-out      100 webhooks, one node against two (any node may claim any delivery):
                 the ratio to the floor, and two nodes against one
    takeover     kill -9 of the node holding most leases during a fan-out to 50 slow
                 webhooks (1 s each): seconds until every delivery is final on the
                 other node, against lease_seconds (the default, 10)
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from bench.figures import Figure, fan_out, floor, paired, ratio_figure
from bench.stack import BenchStack
from tests.postgres import PostgresServer

LEASE_SECONDS = 10.0  # the default


async def bench_two_nodes(folder: Path, postgres: PostgresServer, runs: int,
                          latency_ms: int) -> list[Figure]:
    names = [f"w{i}" for i in range(100)]
    medians: dict[int, tuple[float, float]] = {}
    for nodes in (1, 2):
        medians[nodes] = await _fan_out_median(folder / f"nodes-{nodes}", postgres, runs,
                                               latency_ms, nodes, names)
    one, two = medians[1][0] / medians[1][1], medians[2][0] / medians[2][1]
    return [
        ratio_figure("[PostgreSQL] fan-out to 100 webhooks, two nodes", *medians[2], 1.25),
        Figure("[PostgreSQL] two nodes against one (ratio to floor)",
               f"{two:.3f}× vs {one:.3f}× = {two / one:.3f}", "≤ 1.05", two / one <= 1.05),
    ]


async def _fan_out_median(folder: Path, postgres: PostgresServer, runs: int,
                          latency_ms: int, nodes: int, names: list[str]
                          ) -> tuple[float, float]:
    stack = BenchStack(folder, webhooks=100, latency_ms=latency_ms, postgres=postgres,
                       platforms=False, nodes=nodes)
    async with stack, aiohttp.ClientSession() as session:
        await fan_out(stack, session, names)
        return await paired(runs, lambda: fan_out(stack, session, names),
                            lambda: floor(session, stack.endpoints(names)))


def _nodes(url: str, token: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(url + "/api/v1/nodes",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return list(json.loads(answer.read())["nodes"])


async def bench_takeover(folder: Path, postgres: PostgresServer) -> Figure:
    names = [f"w{i}" for i in range(50)]
    stack = BenchStack(folder / "takeover", webhooks=50, latency_ms=1000, postgres=postgres,
                       platforms=False, nodes=2, channel_extra="timeout = 30")
    async with stack, aiohttp.ClientSession() as session:
        alert = await stack.post_alert(session, names)
        deadline = time.monotonic() + 20
        while sum(n["attempts_under_way"] for n in _nodes(stack.url, stack.token)) < 50:
            if time.monotonic() > deadline:
                raise RuntimeError("the fan-out did not get under way")
            await asyncio.sleep(0.05)
        nodes = _nodes(stack.url, stack.token)
        victim = max(nodes, key=lambda n: n["attempts_under_way"])
        survivor = next(n for n in nodes if n["name"] != victim["name"])
        process = stack.node_processes[int(victim["name"].removeprefix("node"))]
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        survivor_url = f"http://{survivor['address']}"
        while True:
            async with session.get(f"{survivor_url}/api/v1/alerts/{alert['id']}", headers={
                    "Authorization": f"Bearer {stack.token}"}) as answer:
                found = await answer.json()
            if all(d["state"] in ("delivered", "failed", "unknown")
                   for d in found["deliveries"]):
                break
            if time.monotonic() - killed > 60:
                raise RuntimeError("the takeover did not finish in a minute")
            await asyncio.sleep(0.05)
        took = time.monotonic() - killed
    held = victim["attempts_under_way"]
    return Figure(f"[PostgreSQL] kill -9 of a node holding {held} of 50 attempts: all final",
                  f"{took:.1f} s after the kill (lease_seconds {LEASE_SECONDS:g})",
                  "≤ lease + 5 s", took <= LEASE_SECONDS + 5)


def run(folder: Path, postgres: PostgresServer, runs: int, latency_ms: int) -> list[Figure]:
    figures = asyncio.run(bench_two_nodes(folder, postgres, runs, latency_ms))
    figures.append(asyncio.run(bench_takeover(folder, postgres)))
    return figures
