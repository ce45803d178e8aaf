"""Collections sharded on Citus, on a real cluster: a coordinator and two workers from the
pgserver wheel's PostgreSQL 18, Citus built from ../shared/citus (tests/citus_cluster.py).

The same 2,000 chunks go into a plain collection (a table on the coordinator) and a sharded one
(a shard on each of the 2 workers): every search must give the same results on both, the
sharded index must agree with exact search, and the BM25 statistics must stay global.
"""

from __future__ import annotations

import asyncio
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
from embedsearch.core.distance import Distance
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows
from embedsearch.store.records import CollectionOptions
from embedsearch.store.sql import search as search_sql
from tests.citus_cluster import VOCABULARY, CitusCluster, NoCompiler, ensure_citus, synthetic_chunks
from tests.servers import bm25_recount, bm25_statistics, handle, live_server, open_store, rows
from tests.test_cli import run as cli_run

MODEL, DIMS = "all-MiniLM-L6-v2", 384
CHUNKS, SHARDS, K = 2000, 2, 10


def corpus() -> tuple[list[str], list[str | None], list[str], np.ndarray]:
    return synthetic_chunks(CHUNKS)


def load(url: str, collection: str) -> None:
    """Write the corpus straight through the store, in batches (binary COPY, as /embed/batch):
    embedding 2,000 texts would only slow the test down."""
    ids, documents, texts, vectors = corpus()

    async def write() -> None:
        async with open_store(url, model=MODEL, dimensions=DIMS) as store:
            chunks = await handle(store, collection)
            for at in range(0, CHUNKS, 500):
                part = slice(at, at + 500)
                metadata = [{"group": i % 5} for i in range(at, min(at + 500, CHUNKS))]
                await chunks.upsert(
                    ChunkRows(
                        ids[part],
                        vectors[part],
                        MODEL,
                        texts[part],
                        [f"h{i}" for i in range(at, at + 500)][: len(ids[part])],
                        metadata,
                        documents[part],
                    )
                )

    asyncio.run(write())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitusCluster]:
    try:
        ensure_citus()
    except NoCompiler as missing:  # no compiler or no Citus source: the only reasons to skip
        pytest.skip(f"Citus tests skipped: {missing}")
    started = CitusCluster(tmp_path_factory.mktemp("citus"))
    yield started
    started.destroy()


@pytest.fixture(scope="module")
def citus_client(
    cluster: CitusCluster, local_embedder: LocalEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """Our API with EMBEDSEARCH_DATABASE_URL the coordinator."""
    settings = Settings(database_url=cluster.url, data_dir=tmp_path_factory.mktemp("citus-data"))
    with (
        live_server(create_app(settings, embedder=local_embedder)) as live,
        httpx.Client(base_url=live.url, timeout=60) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def loaded(citus_client: httpx.Client, cluster: CitusCluster) -> None:
    """`plain` and `sharded`, the same chunks in each."""
    for body in ({"name": "plain"}, {"name": "sharded", "sharding": {"shards": SHARDS}}):
        response = citus_client.post("/collections", json=body)
        assert response.status_code == 201, response.text
        load(cluster.url, str(body["name"]))


QUERIES = [" ".join(VOCABULARY[i : i + 2]) for i in range(0, 48, 6)] + [
    f"{VOCABULARY[i]} {VOCABULARY[-i - 1]}" for i in range(1, 5)
]


def search(client: httpx.Client, collection: str, query: str, **body: Any) -> list[Any]:
    response = client.post(
        "/search", json={"query": query, "limit": K, "collection": collection} | body
    )
    assert response.status_code == 200, response.text
    return [(r["chunkId"], r["score"]) for r in response.json()["results"]]


def ids(results: list[Any]) -> list[str]:
    return [chunk_id for chunk_id, _ in results]


def test_a_sharded_collection_is_distributed_and_reported(
    citus_client: httpx.Client, cluster: CitusCluster, loaded: None
) -> None:
    body = citus_client.get("/collections/sharded").json()
    assert body["sharding"] == {"shards": SHARDS, "distributionColumn": "shard_key"}
    assert body["count"] == CHUNKS
    assert citus_client.get("/collections/plain").json()["sharding"] is None
    placed = shards_per_worker(cluster, "sharded")
    assert sorted(placed) == sorted(w.port for w in cluster.workers)
    assert sum(placed.values()) == SHARDS
    # A document's chunks share one shard (the key is the document id).
    spread = rows(
        cluster.url,
        "SELECT count(DISTINCT get_shard_id_for_distribution_column('c_sharded', shard_key))"
        " FROM c_sharded WHERE document_id = ANY(%s) GROUP BY document_id",
        (["doc0", "doc1", "doc50"],),
    )
    assert [n for (n,) in spread] == [1, 1, 1]


def test_dense_exact_lexical_hybrid_and_mmr_match_the_plain_collection(
    citus_client: httpx.Client, loaded: None
) -> None:
    for query in QUERIES:
        for body in (
            {"mode": "dense", "exact": True},
            {"mode": "dense", "exact": True, "filter": {"group": 2}},
            {"mode": "lexical"},
            {"mode": "lexical", "filter": {"group": {"$in": [1, 3]}}},
            {"mode": "hybrid"},
            {"mode": "dense", "exact": True, "mmr": {"lambda": 0.5, "fetchK": 30}},
        ):
            plain = search(citus_client, "plain", query, **body)
            sharded = search(citus_client, "sharded", query, **body)
            assert len(plain) == K, (query, body)
            assert ids(sharded) == ids(plain), (query, body)
            assert [s for _, s in sharded] == pytest.approx([s for _, s in plain], abs=1e-6)


def test_the_index_on_every_shard_agrees_with_exact_search(
    cluster: CitusCluster, loaded: None
) -> None:
    """Recall@10 of the sharded HNSW search against exact search, with the index really used on
    each worker (the workers' own statistics say so) and not by exact searches (their setting
    reached the workers). At 1,000 rows a shard PostgreSQL rightly finds an exact scan cheaper
    than HNSW at ef_search 200, so here searches run as a role whose sessions, on every node,
    rule sequential scans out: every ANN search then goes through each shard's index. A
    collection of its own: the other tests' searches would count in the statistics."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:  # Citus creates it on all nodes
        conn.execute("CREATE ROLE index_probe SUPERUSER LOGIN")
        conn.execute("ALTER ROLE index_probe SET enable_seqscan = off")
    url = psycopg.conninfo.make_conninfo(cluster.url, user="index_probe")
    create_sharded(url, "indexed")
    load(url, "indexed")
    _, _, _, vectors = corpus()
    rng = np.random.default_rng(11)
    queries = vectors[rng.integers(0, CHUNKS, 30)] + 0.3 * rng.standard_normal((30, DIMS))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    async def recall() -> float:
        async with open_store(url, model=MODEL, dimensions=DIMS) as store:
            chunks = await handle(store, "indexed")
            overlap = []
            for query in queries:
                exact = await chunks.search(query, limit=K, distance=Distance.COSINE, exact=True)
                ann = await chunks.search(query, limit=K, distance=Distance.COSINE)
                found = {hit.chunk_id for hit in exact} & {hit.chunk_id for hit in ann}
                overlap.append(len(found) / K)
            return float(np.mean(overlap))

    before = hnsw_scans(cluster, "indexed")
    assert asyncio.run(recall()) >= 0.98
    # One index scan per shard per ANN search, none for the exact ones.
    expected = {port: n * len(queries) for port, n in shards_per_worker(cluster, "indexed").items()}
    deadline = time.monotonic() + 20
    while (scans := delta(hnsw_scans(cluster, "indexed"), before)) != expected:
        assert time.monotonic() < deadline, (scans, expected)
        time.sleep(0.5)  # a worker's backend reports its statistics as it exits


def test_search_settings_reach_every_worker(cluster: CitusCluster, loaded: None) -> None:
    """What each shard's worker sees in a search's transaction (the port says where it ran)."""

    async def seen() -> set[tuple[int, str]]:
        async with open_store(cluster.url, model=MODEL, dimensions=DIMS) as store:
            settings = search_sql.set_local_on_workers({"hnsw.ef_search": "123"})
            async with store.database.reading([(settings, None)]) as conn:
                cur = await conn.execute(
                    "SELECT DISTINCT inet_server_port(), current_setting('hnsw.ef_search')"
                    " FROM c_sharded"
                )
                return {(r[0], r[1]) for r in await cur.fetchall()}

    assert asyncio.run(seen()) == {(worker.port, "123") for worker in cluster.workers}


def create_sharded(url: str, name: str) -> None:
    async def create() -> None:
        async with open_store(url, model=MODEL, dimensions=DIMS) as store:
            options = CollectionOptions(shards=SHARDS)
            await store.registry.create(
                name, model=MODEL, dimensions=DIMS, embedder=f"local:{MODEL}", options=options
            )

    asyncio.run(create())


def hnsw_scans(cluster: CitusCluster, collection: str) -> dict[int, int]:
    """Index scans of the collection's HNSW index on each worker, its shards' statistics."""
    return {
        worker.port: int(
            rows(
                cluster.shards_url(worker),
                "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes"
                " WHERE indexrelname LIKE %s",
                (f"c_{collection}_embedding_hnsw_%",),
            )[0][0]
        )
        for worker in cluster.workers
    }


def shards_per_worker(cluster: CitusCluster, collection: str) -> dict[int, int]:
    return dict(
        rows(
            cluster.url,
            "SELECT nodeport, count(*)::int FROM citus_shards"
            " WHERE table_name = %s::regclass GROUP BY nodeport",
            (f"c_{collection}",),
        )
    )


def delta(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {port: after[port] - before[port] for port in after}


def test_writes_documents_and_global_statistics(
    citus_client: httpx.Client, cluster: CitusCluster, loaded: None
) -> None:
    """/embed, /embed/batch (COPY through the coordinator), re-embedding, chunk deletes and
    document replaces on a sharded collection keep one global set of BM25 statistics, equal
    to a recount of the chunks on every shard."""
    created = citus_client.post("/collections", json={"name": "writes", "sharding": {"shards": 2}})
    assert created.status_code == 201, created.text

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = citus_client.post(path, json=body | {"collection": "writes"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert post("/embed", {"chunkId": "solo", "text": "a lonely chunk of text"})["created"]
    items = [{"chunkId": f"b{i}", "text": f"batch item {VOCABULARY[i]}"} for i in range(12)]
    assert post("/embed/batch", {"items": items})["created"] == 12
    items[3]["text"] = "rewritten words entirely"
    assert post("/embed/batch", {"items": items})["created"] == 0
    assert citus_client.delete("/chunks/b5", params={"collection": "writes"}).status_code == 204
    text = " ".join(f"Sentence {i} talks about {VOCABULARY[i]}." for i in range(40))
    chunking = {"maxTokens": 24, "overlap": 0}
    first = post("/documents", {"documentId": "manual", "text": text, "chunking": chunking})
    replaced = post(
        "/documents", {"documentId": "manual", "text": text[: len(text) // 3], "chunking": chunking}
    )
    assert first["status"] == "new" and replaced["status"] == "updated"
    assert len(first["chunkIds"]) > len(replaced["chunkIds"]) >= 2
    stored = citus_client.get("/documents/manual", params={"collection": "writes"}).json()
    in_table = rows(
        cluster.url, "SELECT chunk_id FROM c_writes WHERE document_id = 'manual' ORDER BY 1"
    )
    assert sorted(stored["chunkIds"]) == [r[0] for r in in_table]  # no orphans
    assert [r[0] for r in in_table] == sorted(replaced["chunkIds"])
    assert bm25_statistics(cluster.url, "writes") == bm25_recount(cluster.url, "c_writes")
    assert citus_client.get("/chunks/b3", params={"collection": "writes"}).json()["text"] == (
        "rewritten words entirely"
    )
    hits = search(citus_client, "writes", "rewritten", mode="lexical")
    assert ids(hits)[0] == "b3"
    deleted = citus_client.delete("/documents/manual", params={"collection": "writes"})
    assert deleted.status_code == 204
    assert bm25_statistics(cluster.url, "writes") == bm25_recount(cluster.url, "c_writes")
    assert citus_client.delete("/collections/writes").status_code == 204
    assert rows(cluster.url, "SELECT to_regclass('c_writes')") == [(None,)]
    assert not rows(cluster.url, "SELECT 1 FROM citus_shards WHERE table_name::text = 'c_writes'")
    assert bm25_statistics(cluster.url, "writes") == {}


def test_index_build_and_health_on_every_shard(
    citus_client: httpx.Client, cluster: CitusCluster, loaded: None
) -> None:
    built = citus_client.post(
        "/collections/sharded/index", json={"type": "hnsw", "m": 12, "efConstruction": 48}
    )
    assert built.status_code == 200, built.text
    per_worker = [
        rows(
            cluster.shards_url(worker),
            # The shards' indexes (name_<shard id>), not the worker's copy of the shell table's.
            "SELECT count(*) FROM pg_indexes"
            " WHERE indexname ~ '^c_sharded_embedding_hnsw_[0-9]+$' AND indexdef LIKE '%m=''12''%'",
        )[0][0]
        for worker in cluster.workers
    ]
    assert sum(per_worker) == SHARDS and all(per_worker)
    health = citus_client.get("/collections/sharded/index", params={"sample": 20}).json()
    assert health["type"] == "hnsw" and health["options"]["m"] == 12
    assert health["rows"] == CHUNKS
    assert health["recall"]["recall"] >= 0.95
    assert health["indexBytes"] > 1_000_000 and health["tableBytes"] > 1_000_000  # the shards'


def test_cli_creates_a_sharded_collection(
    citus_client: httpx.Client, cluster: CitusCluster, tmp_path: Path
) -> None:
    done = cli_run(["collections", "create", "from_cli", "--shards", "3"], cluster.url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 shards" in done.stdout
    assert citus_client.get("/collections/from_cli").json()["sharding"]["shards"] == 3


def test_sharding_without_citus_is_refused(
    client: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    response = client.post("/collections", json={"name": "nope", "sharding": {"shards": 2}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "sharding" and "Citus" in error["message"]
    assert client.get("/collections/nope").status_code == 404
    bad = client.post("/collections", json={"name": "nope", "sharding": {"shards": 0}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "sharding.shards"
    done = cli_run(["collections", "create", "nope", "--shards", "2"], database_url, tmp_path)
    assert done.returncode != 0 and "Citus" in done.stderr


def test_a_worker_down_is_a_503_naming_it(
    citus_client: httpx.Client, cluster: CitusCluster, loaded: None
) -> None:
    """Last: it stops a worker. No partial results, nothing half written; the plain collection
    on the coordinator still answers, and the sharded one again once the worker is back."""
    down = cluster.workers[1]
    down.stop()
    try:
        for body in ({"mode": "dense"}, {"mode": "lexical"}, {"mode": "hybrid"}):
            response = citus_client.post(
                "/search", json={"query": QUERIES[0], "collection": "sharded"} | body
            )
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "worker_unavailable"
            assert f"127.0.0.1:{down.port}" in error["message"]
        items = [{"chunkId": f"doc{i}#99", "text": "new"} for i in range(40)]
        write = citus_client.post("/embed/batch", json={"items": items, "collection": "sharded"})
        assert write.status_code == 503 and f":{down.port}" in write.json()["error"]["message"]
        assert len(search(citus_client, "plain", QUERIES[0])) == K
    finally:
        down.start()
    assert len(search(citus_client, "sharded", QUERIES[0])) == K
    assert citus_client.get("/collections/sharded").json()["count"] == CHUNKS  # nothing written


def test_a_constraint_error_on_a_worker_is_not_a_worker_down(cluster: CitusCluster) -> None:
    """Only a lost connection names a worker as down; a worker's own error stays itself."""
    from embedsearch.store.citus import unreachable_worker

    with psycopg.connect(cluster.url) as conn, pytest.raises(psycopg.Error) as raised:
        conn.execute(
            "INSERT INTO c_sharded (chunk_id, shard_key, embedding, model_name)"
            " VALUES ('x#1', 'y', %s::vector, 'm')",
            (str([0.0] * DIMS),),
        )
    assert unreachable_worker(raised.value) is None


def test_every_form_citus_gives_a_lost_worker_names_it() -> None:
    """The messages Citus raises for a worker it cannot reach (seen from a down worker: the
    second when a search's transaction had a connection to it) all name the worker; the
    worker-down test meets either, depending on the coordinator's cached connections."""
    from embedsearch.store.citus import unreachable_worker

    refused = psycopg.OperationalError(
        "connection to the remote node postgres@127.0.0.1:46739 failed with the following"
        " error: Connection refused"
    )
    essential = psycopg.errors.InternalError(
        "failure on connection marked as essential: 127.0.0.1:51943"
    )
    assert unreachable_worker(refused) == "127.0.0.1:46739"
    assert unreachable_worker(essential) == "127.0.0.1:51943"
    assert unreachable_worker(psycopg.errors.InternalError("division by zero")) is None
