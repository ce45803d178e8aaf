"""Index management and health: HNSW parameters, IVFFlat with lists and probes, halfvec
storage, raw (not unit-length) vectors, GET /collections/{name}/index, and the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core.indexing import IndexReport, advise
from embedsearch.core.vector_index import IndexType, Storage, probes_for
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.records import IndexBuildProgress
from tests.raw_embeddings import create_raw_app, raw_vector
from tests.servers import (
    LiveServer,
    create_database,
    handle,
    live_server,
    open_store,
    rows,
    vector_indexes,
)
from tests.test_cli import run as cli_run

DIMS = 384


def clustered_vectors(n: int, seed: int = 3) -> np.ndarray:
    """Unit vectors around 40 centres: the structure IVFFlat and HNSW are built for."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIMS))
    vectors = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, DIMS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def load(database_url: str, collection: str, vectors: np.ndarray, start: int = 0) -> None:
    """Write vectors straight through the store (embedding thousands of texts would only slow
    the test down; the index does not care where vectors come from)."""

    async def write() -> None:
        async with open_store(database_url, model="all-MiniLM-L6-v2", dimensions=DIMS) as store:
            n = len(vectors)
            ids = [f"v{start + i}" for i in range(n)]
            chunks = await handle(store, collection)
            await chunks.upsert(ChunkRows(ids, vectors, "all-MiniLM-L6-v2", ids, [""] * n, []))

    asyncio.run(write())


def top_ids(client: httpx.Client, **body: Any) -> list[str]:
    response = client.post("/search", json={"query": "anything", "limit": 10} | body)
    assert response.status_code == 200, response.text
    return [r["chunkId"] for r in response.json()["results"]]


def test_ivfflat_lists_probes_advice_and_rebuild(client: httpx.Client, database_url: str) -> None:
    created = client.post("/collections", json={"name": "docs", "index": {"type": "none"}})
    assert created.status_code == 201, created.text
    assert vector_indexes(database_url, "c_docs") == []
    health = client.get("/collections/docs/index").json()
    assert (health["type"], health["rows"], health["recall"]) == ("none", 0, None)

    empty = client.post("/collections/docs/index", json={"type": "ivfflat"})
    assert empty.status_code == 409 and "load the data first" in empty.json()["error"]["message"]

    load(database_url, "docs", clustered_vectors(3000))
    built = client.post("/collections/docs/index", json={"type": "ivfflat", "lists": 30})
    assert built.status_code == 200, built.text
    body = built.json()
    assert (body["type"], body["options"], body["rows"], body["indexRows"]) == (
        "ivfflat",
        {"lists": 30},
        3000,
        3000,
    )
    assert body["probes"] == probes_for(30) and body["indexBytes"] > 0
    assert vector_indexes(database_url, "c_docs") == [
        ("c_docs_embedding_ivfflat", "ivfflat", "lists=30")
    ]

    # Scanning every list is exact; one list is not (on clustered data it misses some).
    exact = top_ids(client, collection="docs", exact=True)
    assert top_ids(client, collection="docs", probes=30) == exact
    health = client.get("/collections/docs/index", params={"sample": 40}).json()
    assert health["recall"]["sample"] >= 30 and health["recall"]["recall"] >= 0.9
    assert health["advice"] == []

    # Lists trained on 3000 rows no longer fit 9000: the report says to rebuild.
    load(database_url, "docs", clustered_vectors(6000, seed=4), start=3000)
    health = client.get("/collections/docs/index", params={"sample": 0}).json()
    assert any("rebuild" in item and "9" in item for item in health["advice"]), health
    rebuilt = client.post("/collections/docs/index", json={"type": "ivfflat"}).json()
    assert (rebuilt["options"], rebuilt["indexRows"]) == ({"lists": 9}, 9000)

    # Switch to HNSW with chosen parameters: the IVFFlat index is gone.
    hnsw = client.post(
        "/collections/docs/index", json={"type": "hnsw", "m": 8, "efConstruction": 32}
    ).json()
    assert (hnsw["type"], hnsw["options"], hnsw["efSearch"]) == (
        "hnsw",
        {"m": 8, "ef_construction": 32},
        200,
    )
    assert [i[1:] for i in vector_indexes(database_url, "c_docs")] == [
        ("hnsw", "m=8,ef_construction=32")
    ]
    assert top_ids(client, collection="docs", efSearch=1000) == exact
    dropped = client.post("/collections/docs/index", json={"type": "none"}).json()
    assert dropped["type"] == "none" and vector_indexes(database_url, "c_docs") == []
    assert top_ids(client, collection="docs") == exact


def test_default_hnsw_recall_and_one_build_at_a_time(
    client: httpx.Client, database_url: str
) -> None:
    load(database_url, "default", clustered_vectors(4000))
    health = client.get("/collections/default/index", params={"sample": 50}).json()
    assert (health["type"], health["options"]) == ("hnsw", {"m": 16, "ef_construction": 64})
    assert health["opclass"] == "vector_cosine_ops"
    assert health["recall"]["recall"] >= 0.98, health
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended('index/' || 'default', 7))")
        busy = client.post("/collections/default/index", json={"type": "hnsw"})
    assert busy.status_code == 409 and "already running" in busy.text
    assert [i[0] for i in vector_indexes(database_url, "chunk_embeddings")] == [
        "chunk_embeddings_embedding_hnsw"
    ]


def test_unit_vectors_one_cosine_index_orders_every_metric(
    client: httpx.Client, database_url: str
) -> None:
    """The default collection has one cosine HNSW index; searches by l2 and inner product go
    through it and agree with exact scans, scores included."""
    texts = [f"note {i} on {w}" for i, w in enumerate(["rain", "code", "bread", "jazz"] * 10)]
    items = [{"chunkId": f"n{i}", "text": t} for i, t in enumerate(texts)]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200
    assert [i[1] for i in vector_indexes(database_url, "chunk_embeddings")] == ["hnsw"]
    for distance in ("cosine", "l2", "inner_product"):
        body = {"query": "baking bread", "limit": 10, "distance": distance}
        ann = client.post("/search", json=body).json()["results"]
        exact = client.post("/search", json=body | {"exact": True}).json()["results"]
        assert [r["chunkId"] for r in ann] == [r["chunkId"] for r in exact]
        np.testing.assert_allclose(
            [r["score"] for r in ann], [r["score"] for r in exact], atol=1e-6
        )


def test_halfvec_storage_halves_the_index(
    client: httpx.Client, database_url: str, local_embedder: LocalEmbedder
) -> None:
    for name, storage in (("full", "vector"), ("half", "halfvec")):
        created = client.post("/collections", json={"name": name, "storage": storage})
        assert created.json()["storage"] == storage
    (column_type,) = rows(
        database_url,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'c_half'::regclass AND attname = 'embedding'",
    )[0]
    assert column_type == "halfvec(384)"
    vectors = clustered_vectors(2000)
    load(database_url, "full", vectors)
    load(database_url, "half", vectors)
    full = client.get("/collections/full/index", params={"sample": 0}).json()
    half = client.get("/collections/half/index", params={"sample": 20}).json()
    assert half["opclass"] == "halfvec_cosine_ops"
    assert half["indexBytes"] < 0.7 * full["indexBytes"], (half, full)
    assert half["recall"]["recall"] >= 0.95

    # Text written and searched over HTTP: float16 storage, same neighbours as float32.
    texts = ["tides and the moon", "sourdough starter", "graph databases", "violin concertos"]
    for name in ("full", "half"):
        items = [{"chunkId": f"t{i}", "text": t} for i, t in enumerate(texts)]
        response = client.post("/embed/batch", json={"items": items, "collection": name})
        assert response.status_code == 200, response.text
    stored = rows(database_url, "SELECT embedding FROM c_half WHERE chunk_id = 't2'")[0][0]
    expected = local_embedder.embed([texts[2]]).vectors[0]
    np.testing.assert_allclose(stored.to_numpy(), expected, atol=1e-3)
    for name in ("full", "half"):
        found = client.post(
            "/search", json={"query": "graph databases", "collection": name, "limit": 1}
        ).json()["results"]
        assert found[0]["chunkId"] == "t2"


@pytest.fixture
def raw_server() -> Iterator[LiveServer]:
    with live_server(create_raw_app()) as live:
        yield live


def test_raw_vectors_keep_their_length_and_rank_correctly(
    raw_server: LiveServer, embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A collection that keeps a provider's raw vectors: stored as given (not unit length),
    its index follows the collection's distance (l2), and searches by the other distances
    still return numpy's brute-force ranking (they scan exactly). A normalizing collection on
    the same provider stores unit vectors."""
    database_url = create_database(embedded_pg.url)
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        embedder="openai:toy-raw",
        dimensions=8,
        openai_base_url=raw_server.url + "/v1",
        openai_api_key="test-key",
    )
    texts = [f"raw text number {i}" for i in range(80)]
    with (
        live_server(create_app(settings)) as app,
        httpx.Client(base_url=app.url, timeout=60) as http,
    ):
        created = http.post(
            "/collections",
            json={
                "name": "raw",
                "embedder": "openai:toy-raw",
                "dimensions": 8,
                "normalize": False,
                "distance": "l2",
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["normalized"] is False
        for collection in ("raw", None):
            items = [{"chunkId": f"r{i}", "text": t} for i, t in enumerate(texts)]
            response = http.post("/embed/batch", json={"items": items, "collection": collection})
            assert response.status_code == 200, response.text
        assert [i[1:] for i in vector_indexes(database_url, "c_raw")] == [
            ("hnsw", "m=16,ef_construction=64")
        ]
        opclass = http.get("/collections/raw/index", params={"sample": 0}).json()["opclass"]
        assert opclass == "vector_l2_ops"

        matrix = np.stack([raw_vector(t) for t in texts]).astype(np.float64)
        stored = dict(rows(database_url, "SELECT chunk_id, embedding FROM c_raw"))
        np.testing.assert_allclose(stored["r5"].to_numpy(), matrix[5], rtol=1e-6)
        norms = [np.linalg.norm(v.to_numpy()) for v in stored.values()]
        assert min(norms) < 0.9 and max(norms) > 1.1
        unit = [
            r[0].to_numpy() for r in rows(database_url, "SELECT embedding FROM chunk_embeddings")
        ]
        np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)

        query = "what is raw"
        q = raw_vector(query).astype(np.float64)
        expected = {
            "l2": np.linalg.norm(matrix - q, axis=1),
            "inner_product": -(matrix @ q),
            "cosine": 1 - matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)),
        }
        for distance, scores in expected.items():
            body = {"query": query, "collection": "raw", "limit": 10, "distance": distance}
            body |= {"efSearch": 200} if distance == "l2" else {}
            found = http.post("/search", json=body).json()["results"]
            order = np.argsort(scores, kind="stable")[:10]
            assert [r["chunkId"] for r in found] == [f"r{i}" for i in order], distance
            np.testing.assert_allclose([r["score"] for r in found], scores[order], rtol=1e-4)


def _report(**fields: Any) -> IndexReport:
    base: dict[str, Any] = {
        "collection": "c",
        "type": IndexType.HNSW,
        "options": {},
        "opclass": "vector_cosine_ops",
        "storage": Storage.VECTOR,
        "dimensions": 384,
        "rows": 1000,
        "index_rows": None,
        "index_bytes": 1 << 20,
        "table_bytes": 1 << 20,
        "valid": True,
        "ef_search": 40,
        "probes": None,
        "built_at": datetime(2026, 1, 1),
        "recall_at_k": 0.99,
        "k": 10,
        "sample": 50,
        "advice": [],
        "build": None,
    }
    return IndexReport(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, []),
        ({"type": IndexType.NONE, "rows": 50_000}, ["no ANN index"]),
        ({"type": IndexType.NONE, "rows": 500}, []),
        ({"recall_at_k": 0.9}, ["raise efSearch"]),
        ({"valid": False}, ["invalid index"]),
        ({"valid": False, "build": IndexBuildProgress("building", 1, 9, 5, 0)}, []),
        ({"deferred": True, "type": IndexType.NONE, "rows": 50_000}, ["did not finish"]),
        ({"index_bytes": 1 << 30}, ["larger than shared_buffers", "halfvec"]),
        (
            {"type": IndexType.IVFFLAT, "options": {"lists": 1}, "index_rows": 1000},
            [],
        ),
        (
            {"type": IndexType.IVFFLAT, "options": {"lists": 1}, "index_rows": 100},
            ["trained on 100 rows"],
        ),
    ],
)
def test_advice(fields: dict[str, Any], expected: list[str]) -> None:
    advice = " | ".join(advise(_report(**fields), shared_buffers_bytes=512 << 20))
    for phrase in expected:
        assert phrase in advice
    assert bool(advice) == bool(expected)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "btree"}, "type"),
        ({"type": "hnsw", "m": 1}, "m"),
        ({"type": "hnsw", "m": 16, "efConstruction": 8}, "efConstruction"),
        ({"type": "ivfflat", "lists": 0}, "lists"),
    ],
)
def test_bad_index_requests(client: httpx.Client, database_url: str, body: Any, field: str) -> None:
    response = client.post("/collections/default/index", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert [i[0] for i in vector_indexes(database_url, "chunk_embeddings")] == [
        "chunk_embeddings_embedding_hnsw"
    ]


def test_bad_collection_options(client: httpx.Client) -> None:
    for body, field in (
        ({"name": "x", "storage": "float8"}, "storage"),
        ({"name": "x", "index": {"type": "ivfflat"}}, "index.type"),
        ({"name": "x", "normalize": "maybe"}, "normalize"),
    ):
        response = client.post("/collections", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    assert client.get("/collections/missing/index").status_code == 404
    assert client.post("/collections/missing/index", json={}).status_code == 404
    assert client.get("/collections/default/index", params={"sample": -1}).status_code == 422
    assert client.post("/search", json={"query": "q", "probes": 0}).status_code == 422


def test_cli_index_build_and_check(database_url: str, tmp_path: Path) -> None:
    def cli(*args: str) -> Any:
        return cli_run(list(args), database_url, tmp_path, EMBEDSEARCH_BACKEND="torch")

    created = cli("collections", "create", "cli_docs", "--storage", "halfvec", "--index", "none")
    assert created.returncode == 0, created.stderr
    load(database_url, "cli_docs", clustered_vectors(2500))
    built = cli("index", "build", "cli_docs", "--type", "ivfflat", "--quiet")
    assert built.returncode == 0, built.stderr
    assert "cli_docs: ivfflat (lists=2) on 2500 rows" in built.stdout
    checked = cli("index", "check", "cli_docs", "--json", "--sample", "20")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert (report["type"], report["opclass"], report["index_rows"]) == (
        "ivfflat",
        "halfvec_cosine_ops",
        2500,
    )
    assert report["recall_at_k"] >= 0.9
    text = cli("index", "check", "cli_docs", "--sample", "0")
    assert "ivfflat lists=2" in text.stdout and "advice      none" in text.stdout
    missing = cli("index", "check", "missing")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad = cli("index", "build", "cli_docs", "--type", "hnsw", "--m", "1")
    assert bad.returncode == 2 and "m must be between" in bad.stderr
