"""`make bench`: broadcaster against a floor measured in the same run.

The machine has two shared cores and absolute times drift, so every figure is
reported next to a floor taken moments before on the same endpoints: a bare
``asyncio.gather`` of the same POSTs with aiohttp. Sandbox and daemon run as
separate processes, as in production.

    fan-out 10 / 100   POST → every delivery recorded delivered, vs. the floor
    hanging channel    one of ten hangs: the other nine, vs. the floor of nine
    platforms          the five platform channels + webhooks, vs. the floor
    accept p99         POST /api/v1/alerts answer time over 200 sequential alerts
    start-up           process start → /readyz 200; idle resident memory
    growth, backlog    a ledger with two years of history, a draining backlog (growth.py)
    two nodes          one PostgreSQL ledger, two nodes: fan-out and takeover (cluster.py)

Each set runs on SQLite and on PostgreSQL (a local server started here, fsync on,
as a production server runs), side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import cluster as cluster_bench
from bench import growth as growth_bench
from bench.figures import Figure, fan_out, floor, paired, percentile, ratio_figure
from bench.stack import BenchStack
from tests.postgres import PostgresServer

RUNS = 15
LATENCY_MS = 100


async def bench_fan_out(stack: BenchStack, width: int, limit: float, runs: int) -> Figure:
    names = [f"w{i}" for i in range(width)]
    async with aiohttp.ClientSession() as session:
        await fan_out(stack, session, names)  # warm connections and lanes
        ours, bare = await paired(runs, lambda: fan_out(stack, session, names),
                                  lambda: floor(session, stack.endpoints(names)))
    return ratio_figure(f"fan-out to {width} webhooks ({LATENCY_MS} ms each)", ours, bare, limit)


async def bench_hanging(stack: BenchStack, runs: int) -> Figure:
    names = [f"w{i}" for i in range(10)]
    healthy = names[1:]
    stack.fault({"platform": "webhook", "target": names[0], "kind": "hang"})
    try:
        async with aiohttp.ClientSession() as session:
            ours, bare = await paired(
                runs, lambda: fan_out(stack, session, names, expect=healthy),
                lambda: floor(session, stack.endpoints(healthy)))
    finally:
        stack.clear_faults(latency_ms=LATENCY_MS)
    return ratio_figure("one of 10 hangs: the other nine", ours, bare, 1.10)


async def bench_platforms(stack: BenchStack, runs: int) -> Figure | None:
    names = stack.platform_channels()
    if len(names) < 6:
        return None
    async with aiohttp.ClientSession() as session:
        await fan_out(stack, session, names)
        ours, bare = await paired(runs, lambda: fan_out(stack, session, names),
                                  lambda: floor(session, stack.endpoints(names)), pace=1.1)
    return ratio_figure(f"5 platforms + a webhook ({', '.join(names)})", ours, bare, 1.15)


async def bench_accept(stack: BenchStack, count: int = 200) -> Figure:
    stack.clear_faults(latency_ms=0)
    timings = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            await stack.post_alert(session, ["w0"])
            timings.append(time.perf_counter() - started)
    stack.clear_faults(latency_ms=LATENCY_MS)
    p99, p50 = percentile(timings, 0.99), percentile(timings, 0.5)
    return Figure(f"POST /api/v1/alerts over {count} sequential alerts",
                  f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms", "p99 ≤ 25 ms",
                  p99 <= 0.025)


def bench_start(config: Path, env: dict[str, str], url: str, label: str,
                targets: bool) -> list[Figure]:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "broadcaster", "serve", "--config",
                                str(config)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        ready_after = None
        while time.monotonic() - started < 20:
            try:
                with urllib_open(url + "/readyz") as status:
                    if status == 200:
                        ready_after = time.monotonic() - started
                        break
            except OSError:
                pass
            time.sleep(0.01)
        time.sleep(3)  # idle, as between alerts
        rss_kb = _rss_kb(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    ready = ready_after if ready_after is not None else float("inf")
    if not targets:
        return [Figure(f"start → /readyz 200, {label}", f"{ready:.2f} s", "for information",
                       True),
                Figure(f"idle resident memory, {label}", f"{rss_kb / 1024:.1f} MB",
                       "for information", True)]
    return [
        Figure(f"start → /readyz 200, {label}", f"{ready:.2f} s", "≤ 1.5 s", ready <= 1.5),
        Figure(f"idle resident memory, {label}", f"{rss_kb / 1024:.1f} MB", "≤ 80 MB",
               rss_kb / 1024 <= 80),
    ]


class urllib_open:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> int:
        import urllib.request

        self.response = urllib.request.urlopen(self.url, timeout=1)
        return int(self.response.status)

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fan_out_set(folder: Path, runs: int, wide: bool,
                      postgres: PostgresServer | None) -> list[Figure]:
    figures: list[Figure] = []
    async with BenchStack(folder, webhooks=100 if wide else 10, latency_ms=LATENCY_MS,
                          postgres=postgres) as stack:
        label = f"[{stack.backend}] "
        figures.append(await bench_fan_out(stack, 10, 1.10, runs))
        if wide:
            figures.append(await bench_fan_out(stack, 100, 1.25, runs))
        figures.append(await bench_hanging(stack, runs))
        platforms = await bench_platforms(stack, runs)
        if platforms is not None:
            figures.append(platforms)
        figures.append(await bench_accept(stack))
        for figure in figures:
            figure.name = label + figure.name
        engine = stack.start_config(webhooks=10, platforms=False)
        everything = stack.start_config(webhooks=10, platforms=True)
    figures += bench_start(*engine, label=f"{stack.backend}, 10 webhooks",
                           targets=postgres is None)
    if postgres is None:
        figures += bench_start(*everything, label="all 5 platforms + 10 webhooks",
                               targets=False)
    return figures


async def main(runs: int, wide: bool, backends: list[str], growth: bool) -> list[Figure]:
    figures: list[Figure] = []
    server = PostgresServer(fsync=True).start() if "postgresql" in backends else None
    try:
        with tempfile.TemporaryDirectory(prefix="broadcaster-bench-") as folder:
            for backend in backends:
                postgres = server if backend == "postgresql" else None
                figures += await fan_out_set(Path(folder) / backend, runs, wide, postgres)
                print(report(figures), file=sys.stderr, flush=True)  # so far
                if postgres is not None and wide:
                    figures += await asyncio.to_thread(
                        cluster_bench.run, Path(folder) / "cluster", postgres, runs, LATENCY_MS)
                    print(report(figures), file=sys.stderr, flush=True)
                if growth:
                    figures += await asyncio.to_thread(
                        growth_bench.run, Path(folder) / f"growth-{backend}", postgres)
                    print(report(figures), file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.kill()
    return figures


def report(figures: list[Figure]) -> str:
    width = max(len(f.name) for f in figures)
    lines = [f"{'benchmark'.ljust(width)}  result  (target)"]
    for figure in figures:
        mark = "ok" if figure.ok else "MISSED"
        lines.append(f"{figure.name.ljust(width)}  {figure.value}  ({figure.target}, {mark})")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--no-wide", action="store_true", help="skip the 100-channel run")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both",
                        help="the ledger(s) to measure (PostgreSQL: a server started here, "
                        "fsync on)")
    parser.add_argument("--no-growth", action="store_true",
                        help="skip the ledger-growth and backlog runs (minutes each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    chosen = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = asyncio.run(main(args.runs, not args.no_wide, chosen, not args.no_growth))
    print(json.dumps([f.__dict__ for f in results], indent=2) if args.json else report(results))
    sys.exit(0 if all(f.ok for f in results) else 1)



