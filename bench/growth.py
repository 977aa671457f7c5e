"""Does the daemon stay as quick on a full ledger, and while a backlog drains?

    growth    the same requests on a ledger holding a page of recent alerts and on one
              that also holds 100,000 alerts of two years (a million deliveries):
              accept p99, one alert's status, the first page of the list, the console's
              board, each within 1.5 × of the small ledger; then, while the daemon's
              retention pass prunes the older year in batches, no accept waits more
              than 100 ms.
    backlog   20,000 deliveries queued for two rate-limited webhooks (20 a second
              each) draining while an officer sends: accept p99 and one alert's
              status ≤ 25 ms.

Both ledgers start with the same page of recent alerts (the list and the board show
a full page either way), so what differs is the history behind them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.figures import Figure, percentile
from bench.ledgers import fabricate
from bench.stack import BenchStack
from broadcaster.store.postgres import Connection, PostgresLedger
from broadcaster.store.sqlite import SqliteLedger
from broadcaster.store.transfer import copy_ledger
from tests.postgres import ROLE_PASSWORD, PostgresServer

HISTORY = 100_000
CHANNELS = [f"w{i}" for i in range(10)]
PAGE = 200  # recent alerts in both ledgers: a full first page and board
SAMPLES = 200
BACKLOG_ALERTS = 10_000  # × 2 channels = 20,000 queued deliveries


async def _timed(samples: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        timings.append(time.perf_counter() - started)
    return timings


def _ms(timings: list[float]) -> str:
    return (f"p50 {percentile(timings, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(timings, 0.99) * 1000:.1f} ms")


class Requests:
    """What an officer's and a dashboard's requests cost against one running daemon."""

    def __init__(self, stack: BenchStack, session: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.session = session
        self.auth = {"Authorization": f"Bearer {stack.token}"}

    async def accept(self, channels: list[str]) -> None:
        await self.stack.post_alert(self.session, channels)

    async def status(self, alert_id: str) -> None:
        await self._get(f"/api/v1/alerts/{alert_id}", self.auth)

    async def first_page(self) -> None:
        await self._get("/api/v1/alerts", self.auth)

    async def board(self) -> None:
        await self._get("/console/", {})

    async def _get(self, path: str, headers: dict[str, str]) -> None:
        async with self.session.get(self.stack.url + path, headers=headers,
                                    allow_redirects=False) as response:
            await response.read()
            assert response.status == 200, (path, response.status)

    async def sign_in(self) -> None:
        """A console session for the board (the API token signs in too)."""
        async with self.session.get(self.stack.url + "/console/login") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert csrf is not None
        async with self.session.post(self.stack.url + "/console/login", data={
                "csrf": csrf.group(1), "next": "/console/", "username": "",
                "secret": self.stack.token}, allow_redirects=False) as answer:
            assert answer.status == 303, answer.status

    async def newest_id(self) -> str:
        async with self.session.get(self.stack.url + "/api/v1/alerts?limit=1",
                                    headers=self.auth) as response:
            return str((await response.json())["alerts"][0]["id"])


def _ledger(folder: Path, name: str, postgres: PostgresServer | None, **shape: object) -> str:
    """Fabricate a ledger (SQLite; copied into PostgreSQL when asked) and return the
    [service] lines that point at it."""
    path = folder / f"{name}.db"
    fabricate(path, channels=CHANNELS, **shape)  # type: ignore[arg-type]
    if postgres is None:
        return f'database = "{path}"'
    database = postgres.create_database()
    uri = postgres.uri(database)
    source, target = SqliteLedger(path), PostgresLedger(Connection(uri, ROLE_PASSWORD))
    try:
        copy_ledger(source, target)
    finally:
        source.close()
        target.close()
    postgres.sql("VACUUM ANALYZE", database)  # as autovacuum would after a bulk load
    path.unlink()
    return f'database = "{uri}"\ndatabase_password = {{ env = "LEDGER_PASSWORD" }}'


async def _measure(folder: Path, ledger: str, postgres: PostgresServer | None,
                   retention: bool) -> tuple[dict[str, list[float]], list[float]]:
    """Per request kind, the timings; with ``retention``, also every accept's time
    from shortly before the daemon's retention pass (a minute after start) to its end."""
    service = "retention_days = 365" if retention else ""
    stack = BenchStack(folder, webhooks=10, latency_ms=0, postgres=postgres, service=service,
                       ledger=ledger, platforms=False)
    # unsafe=True: keep cookies from 127.0.0.1 (the console session), as a browser does.
    async with stack, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) \
            as session:
        requests = Requests(stack, session)
        await requests.sign_in()
        recent = await requests.newest_id()
        for _ in range(20):  # warm caches and connections, as in daily use
            await requests.status(recent)
            await requests.board()
        timings = {
            "accept": await _timed(SAMPLES, lambda: requests.accept(["w0"])),
            "status": await _timed(SAMPLES, lambda: requests.status(recent)),
            "first page": await _timed(SAMPLES // 2, requests.first_page),
            "board": await _timed(SAMPLES // 2, requests.board),
        }
        during: list[float] = []
        if retention:
            log = stack.directory / "serve.log"
            deadline = time.monotonic() + 600
            while "housekeeping.retention" not in log.read_text(errors="replace"):
                during += await _timed(1, lambda: requests.accept(["w0"]))
                if time.monotonic() > deadline:
                    raise RuntimeError("the retention pass did not finish in 10 minutes")
    return timings, during


async def bench_growth(folder: Path, postgres: PostgresServer | None) -> list[Figure]:
    label = "PostgreSQL" if postgres is not None else "SQLite"
    small = _ledger(folder, "small", postgres, history=0, recent=PAGE)
    large = _ledger(folder, "large", postgres, history=HISTORY, recent=PAGE)
    before, _ = await _measure(folder / "small", small, postgres, retention=False)
    after, during = await _measure(folder / "large", large, postgres, retention=True)
    figures = []
    for kind in before:
        ratio = percentile(after[kind], 0.99) / percentile(before[kind], 0.99)
        figures.append(Figure(
            f"[{label}] {kind}: {HISTORY:,} past alerts vs a page",
            f"{_ms(after[kind])} vs {_ms(before[kind])} = {ratio:.2f}× at p99", "≤ 1.5×",
            ratio <= 1.5))
    worst = max(during) if during else float("nan")
    figures.append(Figure(
        f"[{label}] accept while retention prunes {HISTORY // 2:,} alerts",
        f"worst {worst * 1000:.1f} ms over {len(during)} accepts, {_ms(during)}",
        "≤ 100 ms", bool(during) and worst <= 0.100))
    return figures


async def bench_backlog(folder: Path, postgres: PostgresServer | None) -> list[Figure]:
    label = "PostgreSQL" if postgres is not None else "SQLite"
    queued = _ledger(folder, "backlog", postgres, history=0, recent=PAGE,
                     backlog=BACKLOG_ALERTS, backlog_channels=["w0", "w1"])
    stack = BenchStack(folder / "backlog", webhooks=2, latency_ms=0, postgres=postgres,
                       ledger=queued, platforms=False,
                       channel_extra="rate = 20\nmax_in_flight = 20")
    async with stack, aiohttp.ClientSession() as session:
        requests = Requests(stack, session)
        backlogged = await requests.newest_id()
        accept = await _timed(SAMPLES, lambda: requests.accept(["w0", "w1"]))
        status = await _timed(SAMPLES, lambda: requests.status(backlogged))
        drained = stack.sandbox_posts()
    return [
        Figure(f"[{label}] accept while {2 * BACKLOG_ALERTS:,} queued deliveries drain",
               _ms(accept), "p99 ≤ 25 ms", percentile(accept, 0.99) <= 0.025),
        Figure(f"[{label}] one alert's status while they drain ({drained} sent meanwhile)",
               _ms(status), "p99 ≤ 25 ms", percentile(status, 0.99) <= 0.025),
    ]


def run(folder: Path, postgres: PostgresServer | None) -> list[Figure]:
    figures = asyncio.run(bench_growth(folder, postgres))
    figures += asyncio.run(bench_backlog(folder, postgres))
    shutil.rmtree(folder, ignore_errors=True)
    return figures
