"""Sources: a table in a separate PostgreSQL (tcp_pg) kept in sync as documents, through the
real server over real HTTP. The issue's bar runs at EMBEDSEARCH_TEST_SOURCE_ROWS rows (1,000
by default, to keep the suite fast on 2 shared cores; benchmarks/sources.py measures 5,000)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from tests.servers import LiveServer, TcpPostgres, create_database, live_server, rows
from tests.sources_helpers import (
    ARTICLES,
    capture_objects,
    expected_documents,
    fill,
    source_body,
    source_rows,
    source_status,
    stored_documents,
    wait_until,
)

ROWS = int(os.environ.get("EMBEDSEARCH_TEST_SOURCE_ROWS", "1000"))
CHANGES = 200  # of each kind, as the bar says
ARRIVAL_S = 10.0  # changes must reach the collection within this long of their commit


@pytest.fixture
def source_url(tcp_pg: TcpPostgres) -> str:
    """A fresh database on the separate PostgreSQL, holding an empty `articles` table."""
    url = create_database(tcp_pg.url(), prefix="src")
    with psycopg.connect(url) as conn:
        conn.execute(ARTICLES)
    return url


def sync_settings(database_url: str, data_dir: Path, **extra: Any) -> Settings:
    return Settings(database_url=database_url, data_dir=data_dir, source_poll_s=0.1, **extra)


@pytest.fixture
def sync_server(
    database_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> Iterator[LiveServer]:
    app = create_app(sync_settings(database_url, tmp_path / "data"), embedder=local_embedder)
    with live_server(app) as live:
        yield live


@pytest.fixture
def http(sync_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sync_server.url, timeout=60) as client:
        yield client


def embedded(http: httpx.Client) -> int:
    return int(source_status(http)["counters"]["chunksEmbedded"])


def wait_live(http: httpx.Client, timeout_s: float = 600) -> list[int]:
    """Waits for the backfill to finish; returns the progress seen on the way."""
    seen: list[int] = []

    def live() -> bool:
        status = source_status(http)
        assert status["lastError"] is None, status
        seen.append(status["backfill"]["done"])
        return bool(status["state"] == "live")

    wait_until(live, timeout_s, "the backfill to finish")
    return seen


def synced(http: httpx.Client, service_url: str, source_url: str, ids: list[str]) -> bool:
    """The collection holds exactly what the table holds for `ids`, nothing is pending."""
    stored, expected = stored_documents(service_url), expected_documents(source_url)
    same = all(stored.get(i) == expected.get(i) for i in ids)
    return same and source_status(http)["pending"] == 0


def change(source_url: str, statement: str, params: Any = None) -> float:
    """Run and commit one statement in the source; returns the commit's time."""
    with psycopg.connect(source_url) as conn:
        conn.execute(statement, params)
    return time.monotonic()


def test_a_table_is_backfilled_then_follows_inserts_updates_and_deletes(
    http: httpx.Client, database_url: str, source_url: str, local_embedder: LocalEmbedder
) -> None:
    fill(source_url, range(ROWS))
    created = http.post("/sources", json=source_body(source_url))
    assert created.status_code == 201, created.text
    assert "s3cret-Pa55" not in created.text and "password=***" in created.json()["url"]
    started = time.monotonic()
    progress = wait_live(http)
    backfill_s = time.monotonic() - started
    status = source_status(http)
    assert status["backfill"] == {"done": ROWS, "total": ROWS, "finished": True}
    assert status["counters"]["chunksEmbedded"] == ROWS  # one chunk a row
    assert any(0 < done < ROWS for done in progress) or backfill_s < 2, progress
    assert stored_documents(database_url) == expected_documents(source_url)

    kinds: list[tuple[str, str, Any, list[int], int]] = [
        (
            "inserts",
            "INSERT INTO articles (id, title, body, lang, year) SELECT i, 'New article ' || i,"
            " 'Fresh text about tidal power number ' || i, 'en', 2026"
            " FROM generate_series(%s::int, %s::int) AS i",
            (ROWS, ROWS + CHANGES - 1),
            list(range(ROWS, ROWS + CHANGES)),
            CHANGES,
        ),
        (
            "text updates",
            "UPDATE articles SET body = 'Rewritten: ' || body WHERE id < %s",
            (CHANGES,),
            list(range(CHANGES)),
            CHANGES,
        ),
        (
            "metadata-only updates",
            "UPDATE articles SET lang = 'fr', year = year + 1 WHERE id >= %s AND id < %s",
            (CHANGES, 2 * CHANGES),
            list(range(CHANGES, 2 * CHANGES)),
            0,
        ),
        (
            "deletes",
            "DELETE FROM articles WHERE id >= %s AND id < %s",
            (2 * CHANGES, 3 * CHANGES),
            list(range(2 * CHANGES, 3 * CHANGES)),
            0,
        ),
    ]
    for kind, statement, params, ids, embeds in kinds:
        before = embedded(http)
        committed = change(source_url, statement, params)
        wanted = [str(i) for i in ids]
        wait_until(lambda: synced(http, database_url, source_url, wanted), ARRIVAL_S, kind)
        arrived = time.monotonic() - committed
        assert arrived < ARRIVAL_S, (kind, arrived)
        assert embedded(http) - before == embeds, kind  # metadata-only: nothing embedded
        print(f"{kind}: {len(ids)} arrived {arrived:.2f} s after the commit")
    print(f"backfill of {ROWS} rows: {backfill_s:.1f} s")

    # The final collection equals a fresh backfill of the final table: ids, texts, metadata...
    final = expected_documents(source_url)
    assert len(final) == ROWS and stored_documents(database_url) == final
    # ... and vectors: a sample re-embedded here, from the table's text, by the same model.
    sample = random.Random(18).sample(sorted(final), 20)
    vectors = dict(
        rows(
            database_url,
            "SELECT document_id, embedding FROM c_articles WHERE document_id = ANY(%s)",
            (sample,),
        )
    )
    fresh = local_embedder.embed([final[i][0] for i in sample]).vectors
    for document_id, vector in zip(sample, fresh, strict=True):
        unit = vector / np.linalg.norm(vector)
        assert float(np.dot(vectors[document_id].to_numpy(), unit)) > 0.9999, document_id
    metrics = http.get("/metrics").text
    assert 'embedsearch_source_pending{source="articles"} 0.0' in metrics
    assert f'embedsearch_source_chunks_embedded_total{{source="articles"}} {embedded(http)}.0' in metrics
