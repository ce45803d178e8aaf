"""POST /embed/batch: many chunks, one transaction, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows
from tests.servers import handle, live_server, open_store, rows

SNAPSHOT = "SELECT chunk_id, content, metadata, updated_at FROM chunk_embeddings ORDER BY chunk_id"


def items(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    return [
        {"chunkId": f"{prefix}{i}", "text": f"document {i} about subject {i % 5}"} for i in range(n)
    ]


@pytest.fixture
def small_cap_client(
    database_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> Iterator[httpx.Client]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, max_batch_items=20)
    with (
        live_server(create_app(settings, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        yield http


def test_batch_stores_every_item(
    client: httpx.Client, database_url: str, local_embedder: LocalEmbedder
) -> None:
    payload = items(50)
    payload[3]["metadata"] = {"source": "a.md", "page": 2}
    payload[7]["text"] = " ".join(["long"] * 400)
    response = client.post("/embed/batch", json={"items": payload})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 50 and body["created"] == 50
    assert body["dimensions"] == 384 and body["model"] == "all-MiniLM-L6-v2"
    assert body["chunkIds"] == [item["chunkId"] for item in payload]
    assert body["truncated"] == ["c7"]
    stored = {
        r[0]: r
        for r in rows(
            database_url, "SELECT chunk_id, content, metadata, embedding FROM chunk_embeddings"
        )
    }
    assert len(stored) == 50
    assert stored["c3"][2] == {"source": "a.md", "page": 2}
    # Each row holds the vector of its own text (length-sorted batching must not mix them up).
    expected = local_embedder.embed([item["text"] for item in payload]).vectors
    got = np.stack([stored[item["chunkId"]][3].to_numpy() for item in payload])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_batch_upserts_and_counts_new_chunks(client: httpx.Client, database_url: str) -> None:
    client.post("/embed/batch", json={"items": items(10)})
    changed = items(15)
    changed[0]["text"] = "replaced text"
    body = client.post("/embed/batch", json={"items": changed}).json()
    assert body["count"] == 15 and body["created"] == 5
    assert rows(database_url, "SELECT content FROM chunk_embeddings WHERE chunk_id = 'c0'") == [
        ("replaced text",)
    ]
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(15,)]


@pytest.mark.parametrize(
    ("index", "change", "field"),
    [
        (3, {"text": ""}, "items[3].text"),
        (4, {"text": "  "}, "items[4].text"),
        (5, {"text": "a\x00b"}, "items[5].text"),
        (6, {"chunkId": "x" * 256}, "items[6].chunkId"),
        (7, {"chunkId": "c0"}, "items[7].chunkId"),
        (8, {"metadata": "not an object"}, "items[8].metadata"),
        (9, {"text": None}, "items[9].text"),
    ],
)
def test_an_invalid_item_fails_the_request_naming_it_and_stores_nothing(
    client: httpx.Client, database_url: str, index: int, change: dict[str, Any], field: str
) -> None:
    client.post("/embed/batch", json={"items": items(3, prefix="keep")})
    before = rows(database_url, SNAPSHOT)
    payload = items(10)
    payload[index] |= change
    response = client.post("/embed/batch", json={"items": payload})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert rows(database_url, SNAPSHOT) == before


@pytest.mark.parametrize("payload", [{}, {"items": []}, {"items": "x"}, {"items": [1, 2]}])
def test_malformed_batches(client: httpx.Client, payload: dict[str, Any]) -> None:
    response = client.post("/embed/batch", json=payload)
    assert response.status_code == 422 and response.json()["error"]["field"].startswith("items")


def test_oversized_batch_is_413_and_stores_nothing(
    small_cap_client: httpx.Client, database_url: str
) -> None:
    response = small_cap_client.post("/embed/batch", json={"items": items(21)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]
    assert small_cap_client.post("/embed/batch", json={"items": items(20)}).json()["count"] == 20


def test_a_database_failure_mid_batch_rolls_back_every_row(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    """The store writes all rows in one transaction: a row the database rejects (here through a
    CHECK constraint on one chunk id) leaves none of the batch behind."""

    async def attempt() -> None:
        async with open_store(
            database_url, model=local_embedder.name, dimensions=local_embedder.dimensions
        ) as store:
            chunks = await handle(store)
            texts = [f"text {i}" for i in range(40)]
            ids = [f"c{i}" for i in range(40)]
            vectors = local_embedder.embed(texts).vectors
            await chunks.upsert(
                ChunkRows(ids[:5], vectors[:5], "all-MiniLM-L6-v2", texts[:5], ["h"] * 5, [])
            )
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "ALTER TABLE chunk_embeddings ADD CONSTRAINT no_c33 CHECK (chunk_id <> 'c33')"
                )
            with pytest.raises(psycopg.errors.CheckViolation):
                await chunks.upsert(
                    ChunkRows(ids, vectors, "all-MiniLM-L6-v2", texts, ["h"] * 40, [])
                )

    asyncio.run(attempt())
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(5,)]


def test_concurrent_single_embeds_each_store_their_own_vector(
    client: httpx.Client, database_url: str, local_embedder: LocalEmbedder
) -> None:
    """Concurrent /embed calls share model calls in the worker; no row may get another's vector."""
    texts = {f"p{i}": f"paragraph {i}: " + " ".join(["word"] * (i * 7 % 90)) for i in range(32)}
    with ThreadPoolExecutor(32) as pool:
        responses = list(
            pool.map(
                lambda item: client.post("/embed", json={"chunkId": item[0], "text": item[1]}),
                texts.items(),
            )
        )
    assert all(r.status_code == 200 for r in responses)
    stored = dict(rows(database_url, "SELECT chunk_id, embedding FROM chunk_embeddings"))
    expected = local_embedder.embed(list(texts.values())).vectors
    got = np.stack([stored[chunk_id].to_numpy() for chunk_id in texts])
    np.testing.assert_allclose(got, expected, atol=1e-4)
