"""POST /search: lexical (BM25 over PostgreSQL's text search lexemes) and hybrid (a fusion of
the dense and lexical lists: convex by default, or RRF) modes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

CHUNKS = {
    "ids": "The error code XJ-42 means the disk quota was exceeded.",
    "quota": "Storage quotas limit how much disk space each user may fill.",
    "cats": "Cats sleep for most of the day and hunt at dawn.",
    "dogs": "Dogs were domesticated from wolves thousands of years ago.",
    "pasta": "Boil the pasta in salted water until it is al dente.",
}


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    items = [
        {"chunkId": cid, "text": text, "metadata": {"pets": cid in ("cats", "dogs")}}
        for cid, text in CHUNKS.items()
    ]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    return client


def search(client: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/search", json={"limit": 5} | body)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_lexical_finds_exact_terms_ranked_by_bm25(seeded: httpx.Client) -> None:
    results = search(seeded, query="XJ-42", mode="lexical")
    assert [r["chunkId"] for r in results] == ["ids"]
    quota = search(seeded, query="disk quota", mode="lexical")
    assert {r["chunkId"] for r in quota} == {"ids", "quota"}  # stemmed: quota/quotas
    assert [r["score"] for r in quota] == sorted((r["score"] for r in quota), reverse=True)
    assert search(seeded, query="quantum chromodynamics", mode="lexical") == []


def test_lexical_websearch_syntax_and_hostile_queries(seeded: httpx.Client) -> None:
    assert [r["chunkId"] for r in search(seeded, query="disk -quotas", mode="lexical")] == []
    assert [r["chunkId"] for r in search(seeded, query='"disk quota"', mode="lexical")] == ["ids"]
    for hostile in ['"', "&|!():*", "'; DROP TABLE chunk_embeddings; --", "\\"]:
        assert search(seeded, query=hostile, mode="lexical") == []
    assert len(search(seeded, query="cats", mode="dense")) == 5  # the table is intact


def test_hybrid_fuses_both_lists(seeded: httpx.Client) -> None:
    query = "XJ-42 disk quota error"
    results = search(seeded, query=query, mode="hybrid", fusion={"method": "rrf"})
    ids = [r["chunkId"] for r in results]
    assert ids[0] == "ids"  # first in both lists
    assert set(ids) == set(CHUNKS)  # dense contributes the rest
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    top = results[0]["score"]
    assert top == pytest.approx(1 / 61 + 1 / 61)  # rank 1 in both lists, k = 60
    smaller_k = search(seeded, query=query, mode="hybrid", rrfK=1)
    assert smaller_k[0]["score"] == pytest.approx(1.0)
    # Convex (the default): best in both lists after min-max scaling scores 1.
    convex = search(seeded, query=query, mode="hybrid")
    assert convex[0]["chunkId"] == "ids" and convex[0]["score"] == pytest.approx(1.0)
    dense_only = search(seeded, query=query, mode="hybrid", fusion={"alpha": 1.0})
    dense = search(seeded, query=query, mode="dense")
    assert [r["chunkId"] for r in dense_only] == [r["chunkId"] for r in dense]


def test_modes_respect_filters_and_dense_matches_the_brief_endpoint(seeded: httpx.Client) -> None:
    pets = search(seeded, query="animals", mode="hybrid", filter={"pets": True})
    assert {r["chunkId"] for r in pets} == {"cats", "dogs"}
    assert search(seeded, query="cats", mode="lexical", filter={"pets": False}) == []
    dense = search(seeded, query="animals", mode="dense")
    brief = seeded.post("/search/pgvector", json={"query": "animals"}).json()["results"]
    assert dense == brief


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "mode": "semantic"}, "mode"),
        ({"query": "x", "mode": "hybrid", "rrfK": 0}, "rrfK"),
        ({"query": "x", "mode": "hybrid", "fusion": {"method": "mean"}}, "fusion.method"),
        ({"query": "x", "mode": "hybrid", "fusion": {"alpha": 1.5}}, "fusion.alpha"),
        ({"query": "x", "mode": "hybrid", "fusion": {"alpha": -0.1}}, "fusion.alpha"),
        ({"query": "x", "mode": "hybrid", "candidates": 1001}, "candidates"),
        ({"query": "x", "mode": "hybrid", "limit": 10, "candidates": 5}, "candidates"),
        ({"query": "", "mode": "lexical"}, "query"),
        ({"query": "x", "mode": "lexical", "limit": 0}, "limit"),
        ({"query": "x", "mode": "hybrid", "filter": {"a b": 1}}, "filter.a b"),
        ({"query": "x", "mode": "lexical", "collection": "missing"}, "collection"),
    ],
)
def test_bad_search_requests(seeded: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = seeded.post("/search", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field


def test_plain_words_match_any_ranked_by_how_many(seeded: httpx.Client) -> None:
    """A natural-language query rarely has every word in one chunk: plain words match any of
    them, and chunks holding more of them rank first."""
    found = search(seeded, query="why do wolves and cats hunt at dawn", mode="lexical")
    assert [r["chunkId"] for r in found] == ["cats", "dogs"]
    assert found[0]["score"] > found[1]["score"]
    # Explicit syntax keeps its strict meaning: a phrase, an exclusion.
    assert search(seeded, query='"hunt at dawn" wolves', mode="lexical") == []
    assert [r["chunkId"] for r in search(seeded, query="cats -dawn wolves", mode="lexical")] == []
    for nothing in ("the and of", "?!... --", "a an"):  # stop words or punctuation only
        for mode in ("lexical", "hybrid", "dense"):
            assert search(seeded, query=nothing, mode=mode) == [], (nothing, mode)
        # The brief's endpoint is pure vector search: it still answers.
        brief = seeded.post("/search/pgvector", json={"query": nothing})
        assert len(brief.json()["results"]) == 5
