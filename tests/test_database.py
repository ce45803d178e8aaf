"""Database paths: an external PostgreSQL over TCP with a password, outages and recovery, the
model/dimension guard, and the embedded default keeping data across restarts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import psycopg
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core import chunks, search
from embedsearch.core.errors import ModelMismatch
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.runtime import open_deps
from tests.servers import LiveServer, TcpPostgres, create_database, live_server, rows


def test_external_database_over_tcp_with_password(
    tcp_pg: TcpPostgres,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = create_database(tcp_pg.url())
    settings = Settings(database_url=url, data_dir=tmp_path)
    with (
        live_server(create_app(settings, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        assert http.post("/embed", json={"chunkId": "a", "text": "hello world"}).status_code == 200
        assert http.get("/readyz").json()["pgvector"] == "0.8.5"
        assert (
            http.post("/search/pgvector", json={"query": "hi"}).json()["results"][0]["chunkId"]
            == "a"
        )
    assert rows(url, "SELECT chunk_id FROM chunk_embeddings") == [("a",)]
    assert not (tmp_path / "pgdata").exists()  # no embedded server was started
    assert tcp_pg.password not in caplog.text
    assert tcp_pg.password not in repr(settings)


def test_database_outage_is_503_and_recovers_by_itself(
    tcp_pg: TcpPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    url = create_database(tcp_pg.url())
    settings = Settings(database_url=url, data_dir=tmp_path, db_timeout_s=2)
    with (
        live_server(create_app(settings, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.post("/embed", json={"chunkId": "a", "text": "before"}).status_code == 200
        tcp_pg.stop()
        try:
            for request in (
                http.post("/embed", json={"chunkId": "b", "text": "during"}),
                http.post("/search/pgvector", json={"query": "during"}),
                http.get("/readyz"),
            ):
                assert request.status_code == 503, request.text
                assert request.json()["error"]["code"] == "database_unavailable"
            assert http.get("/healthz").status_code == 200
        finally:
            tcp_pg.start()
        assert http.get("/readyz").status_code == 200
        assert http.post("/embed", json={"chunkId": "c", "text": "after"}).status_code == 200
        found = http.post("/search/pgvector", json={"query": "x", "limit": 10}).json()["results"]
    assert sorted(r["chunkId"] for r in found) == ["a", "c"]


def _open(settings: Settings, embedder: LocalEmbedder | None = None) -> None:
    async def go() -> None:
        async with open_deps(settings, embedder=embedder):
            pass

    asyncio.run(go())


def test_another_model_or_dimension_is_refused(
    database_url: str, local_embedder: LocalEmbedder, server: LiveServer, tmp_path: Path
) -> None:
    _open(Settings(database_url=database_url, data_dir=tmp_path), local_embedder)
    # The same database, now with 128-dimensional vectors from an OpenAI-compatible server.
    other = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        embedder="openai:all-MiniLM-L6-v2",
        openai_base_url=server.url + "/v1",
        dimensions=128,
    )
    with pytest.raises(ModelMismatch, match=r"all-MiniLM-L6-v2 \(384 dims\)"):
        _open(other)
    assert rows(database_url, "SELECT vector_dims(embedding) FROM chunk_embeddings LIMIT 1") == []


@pytest.mark.parametrize(
    ("declared", "row_model", "accepted"),
    [(768, None, False), (384, "other-model", False), (384, "all-MiniLM-L6-v2", True)],
)
def test_a_table_from_the_briefs_script_is_adopted_only_if_it_matches(
    database_url: str,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
    declared: int,
    row_model: str | None,
    accepted: bool,
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            f"CREATE TABLE chunk_embeddings (chunk_id VARCHAR(255) PRIMARY KEY, embedding VECTOR({declared}),"
            " created_at TIMESTAMP DEFAULT NOW(), model_name VARCHAR(100))"
        )
        if row_model:
            conn.execute(
                "INSERT INTO chunk_embeddings (chunk_id, embedding, model_name) VALUES ('old', %s::vector, %s)",
                ("[" + ",".join(["0.05"] * declared) + "]", row_model),
            )
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    if not accepted:
        with pytest.raises(ModelMismatch):
            _open(settings, local_embedder)
        return
    _open(settings, local_embedder)
    columns = {
        r[0]
        for r in rows(
            database_url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'chunk_embeddings'",
        )
    }
    assert {"content", "metadata", "updated_at", "content_hash"} <= columns
    assert rows(database_url, "SELECT chunk_id FROM chunk_embeddings") == [("old",)]


def test_embedded_default_keeps_data_across_restarts(
    local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data")

    async def embed_then_search() -> list[str]:
        async with open_deps(settings, embedder=local_embedder) as deps:
            await chunks.embed_chunk(deps, "kept", "Data survives restarts of the server.")
        async with open_deps(settings, embedder=local_embedder) as deps:
            outcome = await search.search(deps, "restart", limit=3)
            return [hit.chunk_id for hit in outcome.hits]

    assert asyncio.run(embed_then_search()) == ["kept"]
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
