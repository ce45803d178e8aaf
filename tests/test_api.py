"""The brief's two endpoints on a real server and a real PostgreSQL + pgvector."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from embedsearch.embedders.local import LocalEmbedder
from tests.servers import rows

TEXTS = {
    "ml": "Machine learning basics: models learn patterns from data.",
    "nn": "Neural networks are layers of weighted sums followed by nonlinear activations.",
    "db": "PostgreSQL is a relational database with transactions and indexes.",
    "pg": "pgvector adds vector similarity search to PostgreSQL.",
    "cook": "Simmer the tomatoes with garlic and olive oil for twenty minutes.",
    "bike": "Adjust the saddle height so the knee is slightly bent at the bottom.",
    "space": "The James Webb telescope observes the universe in infrared light.",
    "music": "A fugue develops a short theme through imitation in several voices.",
}


def embed_all(client: httpx.Client, texts: dict[str, str]) -> None:
    for chunk_id, text in texts.items():
        response = client.post("/embed", json={"chunkId": chunk_id, "text": text})
        assert response.status_code == 200, response.text


def test_embed_returns_the_brief_shape(client: httpx.Client, database_url: str) -> None:
    response = client.post(
        "/embed", json={"chunkId": "chunk-123", "text": "Machine learning basics"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["chunkId"] == "chunk-123"
    assert body["dimensions"] == 384
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["created"] is True and body["truncated"] is False
    stored = rows(
        database_url,
        "SELECT chunk_id, model_name, content, vector_dims(embedding) FROM chunk_embeddings",
    )
    assert stored == [("chunk-123", "all-MiniLM-L6-v2", "Machine learning basics", 384)]


def test_search_returns_the_brief_shape_nearest_first(client: httpx.Client) -> None:
    embed_all(client, TEXTS)
    response = client.post("/search/pgvector", json={"query": "explain neural networks"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 5  # default limit
    assert set(results[0]) >= {"chunkId", "score"}
    assert results[0]["chunkId"] == "nn"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores)


@pytest.mark.parametrize("distance", ["cosine", "l2", "inner_product"])
def test_scores_match_numpy_distances(
    client: httpx.Client, local_embedder: LocalEmbedder, database_url: str, distance: str
) -> None:
    embed_all(client, TEXTS)
    query = "which database can search vectors?"
    response = client.post(
        "/search/pgvector", json={"query": query, "limit": len(TEXTS), "distance": distance}
    )
    assert response.status_code == 200
    got = [(r["chunkId"], r["score"]) for r in response.json()["results"]]

    # Brute force with numpy over the vectors as stored, and the query as the model embeds it.
    stored = rows(database_url, "SELECT chunk_id, embedding FROM chunk_embeddings")
    ids = [r[0] for r in stored]
    matrix = np.stack([r[1].to_numpy().astype(np.float64) for r in stored])
    q = local_embedder.embed([query]).vectors[0].astype(np.float64)
    if distance == "cosine":
        expected = 1 - matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
    elif distance == "l2":
        expected = np.linalg.norm(matrix - q, axis=1)
    else:
        expected = -(matrix @ q)
    order = np.argsort(expected, kind="stable")
    assert [chunk_id for chunk_id, _ in got] == [ids[i] for i in order]
    np.testing.assert_allclose([s for _, s in got], expected[order], atol=1e-5)


def test_stored_vectors_are_unit_length(client: httpx.Client, database_url: str) -> None:
    embed_all(client, TEXTS)
    norms = [
        r[0] for r in rows(database_url, "SELECT vector_norm(embedding) FROM chunk_embeddings")
    ]
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_reembedding_a_chunk_id_is_an_upsert(client: httpx.Client, database_url: str) -> None:
    first = client.post("/embed", json={"chunkId": "c", "text": "The cat sat on the mat."}).json()
    (created_at, updated_at) = rows(
        database_url, "SELECT created_at, updated_at FROM chunk_embeddings"
    )[0]
    second = client.post(
        "/embed",
        json={"chunkId": "c", "text": "Quantum computers use qubits.", "metadata": {"v": 2}},
    ).json()
    assert first["created"] is True and second["created"] is False
    stored = rows(
        database_url, "SELECT content, metadata, created_at, updated_at FROM chunk_embeddings"
    )
    assert len(stored) == 1
    content, metadata, created_again, updated_again = stored[0]
    assert content == "Quantum computers use qubits." and metadata == {"v": 2}
    assert created_again == created_at and updated_again > updated_at
    hit = client.post("/search/pgvector", json={"query": "qubits", "limit": 1}).json()["results"][0]
    assert hit["chunkId"] == "c" and hit["text"] == "Quantum computers use qubits."


def test_limit_larger_than_hnsw_ef_search_returns_every_row(client: httpx.Client) -> None:
    texts = {f"n{i}": f"note number {i} about topic {i % 7}" for i in range(60)}
    for chunk_id, text in texts.items():
        assert client.post("/embed", json={"chunkId": chunk_id, "text": text}).status_code == 200
    results = client.post("/search/pgvector", json={"query": "topic 3", "limit": 60}).json()[
        "results"
    ]
    assert len(results) == 60
    assert {r["chunkId"] for r in results} == set(texts)


def test_search_on_empty_table_returns_no_results(client: httpx.Client) -> None:
    response = client.post("/search/pgvector", json={"query": "anything", "limit": 3})
    assert response.status_code == 200 and response.json()["results"] == []


def test_text_beyond_the_model_window_is_truncated_and_says_so(client: httpx.Client) -> None:
    long_text = " ".join(["retrieval"] * 600)
    body = client.post("/embed", json={"chunkId": "long", "text": long_text}).json()
    assert body["truncated"] is True and body["tokens"] > 256
    search = client.post("/search/pgvector", json={"query": long_text}).json()
    assert search["queryTruncated"] is True


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["dimensions"] == 384 and ready["pgvector"] >= "0.5"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/embed", "/search/pgvector", "/v1/embeddings"} <= set(paths)
