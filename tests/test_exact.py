"""POST /search with `exact` (sequential scan: ground truth) and a per-request `efSearch`."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from embedsearch.embedders.local import LocalEmbedder
from tests.servers import rows

TEXTS = {
    f"t{i}": f"sentence {i} about {topic}"
    for i, topic in enumerate(
        ["rivers", "mountains", "databases", "vectors", "cooking", "music", "chess", "gardens"] * 5
    )
}


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    items = [{"chunkId": cid, "text": text} for cid, text in TEXTS.items()]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    return client


@pytest.mark.parametrize("distance", ["cosine", "l2", "inner_product"])
def test_exact_search_is_numpy_brute_force(
    seeded: httpx.Client, database_url: str, local_embedder: LocalEmbedder, distance: str
) -> None:
    query = "vector databases"
    body = {"query": query, "limit": 10, "distance": distance, "exact": True}
    results = seeded.post("/search", json=body).json()["results"]
    stored = rows(database_url, "SELECT chunk_id, embedding FROM chunk_embeddings")
    ids = [r[0] for r in stored]
    matrix = np.stack([r[1].to_numpy().astype(np.float64) for r in stored])
    q = local_embedder.embed([query]).vectors[0].astype(np.float64)
    expected = {
        "cosine": 1 - matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)),
        "l2": np.linalg.norm(matrix - q, axis=1),
        "inner_product": -(matrix @ q),
    }[distance]
    order = np.argsort(expected, kind="stable")[:10]
    assert [r["chunkId"] for r in results] == [ids[i] for i in order]
    np.testing.assert_allclose([r["score"] for r in results], expected[order], atol=1e-5)


def test_ef_search_and_exact_agree_on_a_small_table(seeded: httpx.Client) -> None:
    def top(**extra: Any) -> list[str]:
        body = {"query": "chess openings", "limit": 8} | extra
        response = seeded.post("/search", json=body)
        assert response.status_code == 200, response.text
        return [r["chunkId"] for r in response.json()["results"]]

    assert top(efSearch=200) == top(exact=True)
    assert len(top(efSearch=10)) == 8  # ef_search is never below limit
    assert top(exact=True, filter={"missing": 1}) == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"efSearch": 0}, "efSearch"),
        ({"efSearch": 1001}, "efSearch"),
        ({"exact": "maybe"}, "exact"),
    ],
)
def test_bad_tuning_options(seeded: httpx.Client, extra: dict[str, Any], field: str) -> None:
    response = seeded.post("/search", json={"query": "x"} | extra)
    assert response.status_code == 422 and response.json()["error"]["field"] == field
