"""Filtered, hybrid and MMR searches over HTTP against brute force computed in numpy on the
very vectors stored in the database (read back directly, bypassing our code)."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from embedsearch.embedders.local import LocalEmbedder
from tests.servers import rows

TOPICS = ["rivers flood", "glaciers melt", "compilers optimize", "bread rises", "owls hunt"]
CHUNKS = {
    f"c{i}": f"Note {i}: {TOPICS[i % 5]} {['slowly', 'at night', 'in spring'][i % 3]}."
    for i in range(60)
}
QUERY = "why do rivers flood in spring"


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    items = [
        {"chunkId": cid, "text": text, "metadata": {"group": i % 4, "year": 2000 + i}}
        for i, (cid, text) in enumerate(CHUNKS.items())
    ]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    return client


def stored(database_url: str) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    found = rows(database_url, "SELECT chunk_id, embedding, metadata FROM chunk_embeddings")
    matrix = np.stack([r[1].to_numpy().astype(np.float64) for r in found])
    return [r[0] for r in found], matrix, [r[2] for r in found]


def search(client: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/search", json={"query": QUERY} | body)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


@pytest.mark.parametrize("exact", [False, True])
def test_filtered_search_is_brute_force(
    seeded: httpx.Client, database_url: str, local_embedder: LocalEmbedder, exact: bool
) -> None:
    ids, matrix, metadata = stored(database_url)
    query = local_embedder.embed([QUERY]).vectors[0].astype(np.float64)
    keep = np.array([m["group"] in (1, 2) and m["year"] >= 2010 for m in metadata])
    distances = np.where(keep, 1 - matrix @ query, np.inf)
    order = np.argsort(distances, kind="stable")[: min(12, int(keep.sum()))]
    filter_ = {"group": {"$in": [1, 2]}, "year": {"$gte": 2010}}
    found = search(seeded, limit=12, filter=filter_, exact=exact)
    assert [r["chunkId"] for r in found] == [ids[i] for i in order]
    np.testing.assert_allclose([r["score"] for r in found], distances[order], atol=1e-5)


def test_hybrid_is_rrf_of_numpy_dense_ranks_and_the_lexical_list(
    seeded: httpx.Client, database_url: str, local_embedder: LocalEmbedder
) -> None:
    """Hybrid = Reciprocal Rank Fusion of the dense ranking (here: numpy over every stored
    vector; the table is smaller than the candidate list) and the lexical ranking."""
    ids, matrix, _ = stored(database_url)
    query = local_embedder.embed([QUERY]).vectors[0].astype(np.float64)
    dense_order = [ids[i] for i in np.argsort(1 - matrix @ query, kind="stable")]
    lexical = [r["chunkId"] for r in search(seeded, mode="lexical", limit=100)]
    assert lexical  # the words of the query do occur
    rrf_k = 10
    fused: dict[str, float] = {}
    for ranking in (dense_order, lexical):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1 / (rrf_k + rank)
    # Different rank pairs can tie exactly (1/11 + 1/20 = 1/12 + 1/15 ...); compare ties as sets.
    expected = sorted(fused.items(), key=lambda item: (-round(item[1], 12), item[0]))[:15]
    found = search(seeded, mode="hybrid", limit=15, rrfK=rrf_k)

    def by_score(pairs: list[tuple[str, float]]) -> list[tuple[float, frozenset[str]]]:
        groups: dict[float, set[str]] = {}
        for chunk_id, score in pairs:
            groups.setdefault(round(score, 12), set()).add(chunk_id)
        return [(score, frozenset(members)) for score, members in groups.items()]

    found_pairs = [(r["chunkId"], r["score"]) for r in found]
    assert by_score(found_pairs)[:-1] == by_score(expected)[:-1]  # the last group may be cut
    assert len(found) == len(expected)


def brute_force_mmr(
    query: np.ndarray, vectors: np.ndarray, limit: int, lambda_: float
) -> list[int]:
    """MMR written out plainly: each step takes the candidate maximizing
    lambda * sim(query) - (1 - lambda) * max sim(already chosen)."""
    chosen: list[int] = []
    while len(chosen) < min(limit, len(vectors)):
        best, best_score = -1, -np.inf
        for i in range(len(vectors)):
            if i in chosen:
                continue
            redundancy = max((float(vectors[i] @ vectors[j]) for j in chosen), default=0.0)
            score = lambda_ * float(vectors[i] @ query) - (1 - lambda_) * redundancy
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 0.7, 1.0])
def test_mmr_is_brute_force(
    seeded: httpx.Client, database_url: str, local_embedder: LocalEmbedder, lambda_: float
) -> None:
    ids, matrix, _ = stored(database_url)
    query = local_embedder.embed([QUERY]).vectors[0].astype(np.float64)
    top = np.argsort(1 - matrix @ query, kind="stable")[:20]
    expected = [ids[top[i]] for i in brute_force_mmr(query, matrix[top], 6, lambda_)]
    found = search(seeded, limit=6, mmr={"lambda": lambda_, "fetchK": 20})
    assert [r["chunkId"] for r in found] == expected
