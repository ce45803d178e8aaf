"""Metadata filters: each operator against the real database, bad filters are 422, and a
selective filter still returns `limit` rows from a 20k-chunk HNSW-indexed collection."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from embedsearch.core.distance import Distance
from embedsearch.store import ChunkRows
from tests.servers import handle, open_store

CHUNKS = [
    ("a", {"lang": "en", "year": 2019, "tags": "ml", "src": {"kind": "pdf"}}),
    ("b", {"lang": "en", "year": 2021, "tags": "db"}),
    ("c", {"lang": "fr", "year": 2023, "src": {"kind": "html"}}),
    ("d", {"lang": "de", "year": "unknown"}),
    ("e", {"lang": "en", "year": 2024.5, "draft": True}),
]


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    items = [
        {"chunkId": cid, "text": f"note {cid} about search", "metadata": meta}
        for cid, meta in CHUNKS
    ]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    return client


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"lang": "en"}, "abe"),
        ({"lang": {"$eq": "fr"}}, "c"),
        ({"lang": {"$ne": "en"}}, "cd"),
        ({"lang": {"$in": ["fr", "de"]}}, "cd"),
        ({"lang": {"$nin": ["fr", "de"]}}, "abe"),
        ({"year": {"$gte": 2021}}, "bce"),
        ({"year": {"$gt": 2019, "$lt": 2024}}, "bc"),
        ({"year": {"$lte": 2019}}, "a"),
        ({"draft": {"$exists": True}}, "e"),
        ({"draft": {"$exists": False}, "lang": "en"}, "ab"),
        ({"draft": True}, "e"),
        ({"src.kind": "pdf"}, "a"),
        ({"$or": [{"lang": "fr"}, {"year": {"$lt": 2020}}]}, "ac"),
        ({"$and": [{"lang": "en"}, {"tags": "db"}]}, "b"),
        ({"lang": "it"}, ""),
    ],
)
def test_filter_operators(seeded: httpx.Client, filter_: dict[str, Any], expected: str) -> None:
    response = seeded.post(
        "/search/pgvector", json={"query": "search", "limit": 10, "filter": filter_}
    )
    assert response.status_code == 200, response.text
    assert sorted(r["chunkId"] for r in response.json()["results"]) == list(expected)


@pytest.mark.parametrize(
    "filter_",
    [
        {"lang": {"$regex": "e.*"}},
        {"bad field": "x"},
        {"'; DROP TABLE chunk_embeddings; --": 1},
        {"year": {"$gt": "2020"}},
        {"lang": {"$in": "en"}},
        {"lang": {"$in": []}},
        {"lang": {"$exists": "yes"}},
        {"lang": ["en"]},
        {"lang": {}},
        {"$or": {}},
        {"$or": [1]},
        {},
        {"lang": "e\x00n"},
    ],
)
def test_malformed_filters_are_422(seeded: httpx.Client, filter_: dict[str, Any]) -> None:
    response = seeded.post("/search/pgvector", json={"query": "search", "filter": filter_})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith("filter")
    assert (
        len(seeded.post("/search/pgvector", json={"query": "x", "limit": 10}).json()["results"])
        == 5
    )


def test_selective_filter_on_20k_chunks_returns_limit_rows(database_url: str) -> None:
    """1% of 20,000 chunks match; HNSW alone would find ~ef_search * 1% of them. Iterative
    scans keep going until `limit` rows pass the filter. Checked against exact search."""
    n, dims, limit = 20_000, 384, 50
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = np.arange(n) % 100
    query = vectors[123] + 0.5 * rng.standard_normal(dims).astype(np.float32)
    query /= np.linalg.norm(query)

    async def run() -> list[str]:
        async with open_store(database_url, model="synthetic", dimensions=dims) as store:
            chunks = await handle(store)
            ids = [f"v{i}" for i in range(n)]
            await chunks.upsert(
                ChunkRows(
                    ids,
                    vectors,
                    "synthetic",
                    [""] * n,
                    [""] * n,
                    [{"group": int(g)} for g in groups],
                )
            )
            hits = await chunks.search(
                query, limit=limit, distance=Distance.COSINE, filter_={"group": 23}
            )
            return [hit.chunk_id for hit in hits]

    found = asyncio.run(run())
    assert len(found) == limit
    assert all(int(cid[1:]) % 100 == 23 for cid in found)
    members = np.flatnonzero(groups == 23)
    exact = members[np.argsort(-(vectors[members] @ query))[:limit]]
    recall = len({f"v{i}" for i in exact} & set(found)) / limit
    assert recall >= 0.9, recall
