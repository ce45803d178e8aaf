"""A PostgreSQL restart while clients search: a separate PostgreSQL over TCP (what a managed
database looks like to us) is stopped (fast shutdown: connections in use are cut) and started
again under a few clients searching in a loop (/search/pgvector and hybrid /search).

Proves: the clients only ever see 200 or 503 `database_unavailable` (no 500, no hang), and the
server recovers by itself: within RECOVERY_S of PostgreSQL being back, every search succeeds,
with no manual action (the pool drops the dead connections and opens new ones).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from tests.servers import TcpPostgres, create_database, live_server

SEARCHERS = 4
RECOVERY_S = 10.0  # every search succeeds again this soon after PostgreSQL is back
STEADY_SEARCHES = 15  # consecutive successes per client that count as recovered
PHASE_TIMEOUT_S = 60.0  # bound on each wait below
DB_TIMEOUT_S = 2  # EMBEDSEARCH_DB_TIMEOUT_S: how long a request waits for a connection


@dataclass
class Searcher:
    results: list[tuple[float, int, str | None]] = field(default_factory=list)  # time, status, code

    def streak(self) -> int:
        """Successes since the last failure."""
        count = 0
        for _, status, _ in reversed(self.results):
            if status != 200:
                break
            count += 1
        return count

    def failed_since(self, moment: float) -> bool:
        return any(at >= moment and status != 200 for at, status, _ in self.results)


async def _search(
    http: httpx.AsyncClient, searcher: Searcher, index: int, stop: asyncio.Event
) -> None:
    queries = ["bread and baking", "deep learning models", "mountain glaciers", "football"]
    n = 0
    while not stop.is_set():
        n += 1
        query = queries[(index + n) % len(queries)]
        if n % 2:
            response = await http.post("/search/pgvector", json={"query": query, "limit": 3})
        else:
            response = await http.post("/search", json={"query": query, "mode": "hybrid"})
        code = response.json()["error"]["code"] if response.status_code != 200 else None
        searcher.results.append((time.monotonic(), response.status_code, code))


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _restart_under_searches(url: str, pg: TcpPostgres) -> tuple[list[Searcher], float, float]:
    """Returns the searchers' results, when PostgreSQL was back, and when all had recovered."""
    searchers = [Searcher() for _ in range(SEARCHERS)]
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        tasks = [asyncio.create_task(_search(http, s, i, stop)) for i, s in enumerate(searchers)]
        try:
            await _until(lambda: all(s.streak() >= 3 for s in searchers), "searches to run")
            stopped = time.monotonic()
            await asyncio.to_thread(pg.stop)
            # Down until every client has met the outage.
            await _until(
                lambda: all(s.failed_since(stopped) for s in searchers), "every client to fail"
            )
            await asyncio.to_thread(pg.start)
            back = time.monotonic()
            await _until(
                lambda: all(s.streak() >= STEADY_SEARCHES for s in searchers),
                "every client to succeed again",
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    # Recovered: the latest of the clients' first successes after their last failure.
    recovered = max(s.results[len(s.results) - s.streak()][0] for s in searchers)
    return searchers, back, recovered


def test_a_postgres_restart_is_503_then_recovers_by_itself(
    tcp_pg: TcpPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    url = create_database(tcp_pg.url())
    settings = Settings(
        database_url=SecretStr(url), data_dir=tmp_path / "data", db_timeout_s=DB_TIMEOUT_S
    )
    with live_server(create_app(settings, embedder=local_embedder)) as server:
        items = [
            {"chunkId": f"c{i}", "text": text}
            for i, text in enumerate(
                [
                    "Baking bread at home",
                    "Neural networks learn",
                    "Glaciers carve valleys",
                    "A goal",
                ]
            )
        ]
        stored = httpx.post(f"{server.url}/embed/batch", json={"items": items}, timeout=60)
        assert stored.status_code == 200, stored.text
        searchers, back, recovered = asyncio.run(_restart_under_searches(server.url, tcp_pg))

    seen = {(status, code) for s in searchers for _, status, code in s.results}
    assert seen == {(200, None), (503, "database_unavailable")}, seen
    assert recovered - back < RECOVERY_S, (recovered - back, seen)
