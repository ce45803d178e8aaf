"""Maximal Marginal Relevance: the function, and POST /search with `mmr`."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from embedsearch.core.mmr import mmr


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_mmr_trades_relevance_for_novelty() -> None:
    query = unit(1, 0, 0)
    candidates = np.stack([unit(1, 0.10, 0), unit(1, 0.11, 0), unit(1, 0, 0.6)])
    assert mmr(query, candidates, limit=3, lambda_=1.0) == [0, 1, 2]  # relevance only
    # Candidate 1 is a near copy of 0: with novelty weighed in, 2 comes before it.
    assert mmr(query, candidates, limit=2, lambda_=0.5) == [0, 2]
    assert mmr(query, candidates[:0], limit=2, lambda_=0.5) == []
    assert mmr(query, candidates, limit=10, lambda_=0.3) == [0, 2, 1]


DUPLICATES = {
    "gc1": "Garbage collection in Java frees memory held by unreachable objects.",
    "gc2": "In Java, garbage collection frees the memory of objects that are unreachable.",
    "gc3": "Java's garbage collector reclaims memory from objects no longer reachable.",
    "rc": "Reference counting frees an object when its last reference disappears.",
    "arena": "Arena allocators free all their objects at once when the arena is dropped.",
}


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    items = [{"chunkId": cid, "text": text} for cid, text in DUPLICATES.items()]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    return client


def ids(client: httpx.Client, **body: Any) -> list[str]:
    response = client.post(
        "/search", json={"query": "how does Java free memory?", "limit": 3} | body
    )
    assert response.status_code == 200, response.text
    return [r["chunkId"] for r in response.json()["results"]]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_mmr_diversifies_the_results(seeded: httpx.Client, mode: str) -> None:
    plain = ids(seeded, mode=mode)
    assert set(plain) == {"gc1", "gc2", "gc3"}  # three paraphrases of one answer
    diverse = ids(seeded, mode=mode, mmr={"lambda": 0.3, "fetchK": 5})
    assert diverse[0] in {"gc1", "gc2", "gc3"} and len(set(diverse) & {"rc", "arena"}) >= 1
    relevance_only = ids(seeded, mode=mode, mmr={"lambda": 1.0, "fetchK": 5})
    # MMR's relevance is cosine similarity to the query: the dense order (hybrid's RRF order
    # may differ among the same chunks).
    assert relevance_only == ids(seeded, mode="dense")


@pytest.mark.parametrize(
    ("mmr_", "field"),
    [
        ({"lambda": 1.5}, "mmr.lambda"),
        ({"lambda": -0.1}, "mmr.lambda"),
        ({"fetchK": 2}, "mmr.fetchK"),  # fewer candidates than limit (3)
        ({"fetchK": 5000}, "mmr.fetchK"),
        ("yes", "mmr"),
    ],
)
def test_bad_mmr_options(seeded: httpx.Client, mmr_: Any, field: str) -> None:
    response = seeded.post("/search", json={"query": "memory", "limit": 3, "mmr": mmr_})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
