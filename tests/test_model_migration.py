"""Model migration: a collection embedded again by another model (a second server of ours
serving /v1/embeddings at 256 dimensions) while it serves searches and takes writes, then one
switch of its name. Real HTTP, real PostgreSQL, the worker inside the service."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core import collections, model_migration
from embedsearch.core.chunks import ChunkInput, embed_batch
from embedsearch.core.deps import Deps
from embedsearch.core.model_migration import MigrationRunner, migration_options
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.runtime import open_deps
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.model_migrations import MigrationRecord
from tests.servers import LiveServer, create_database, live_server, rows, vector_indexes
from tests.test_cli import run

NEW_EMBEDDER = "openai:all-MiniLM-L6-v2"
TOPICS = ["rivers and lakes", "protein folding", "tax law", "jazz history", "volcanoes"]


def _text(i: int) -> str:
    return f"note {i} about {TOPICS[i % len(TOPICS)]}, written for the migration test"


@dataclass
class Service:
    http: httpx.Client
    database_url: str


@pytest.fixture(scope="module")
def provider_embedder() -> LocalEmbedder:
    """The provider's own copy of the model: two servers in one process must not share one
    tokenizer (in a deployment they are two processes)."""
    return LocalEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def provider(
    embedded_pg: EmbeddedPostgres, provider_embedder: LocalEmbedder, tmp_path: Path
) -> Iterator[LiveServer]:
    """Another server of ours: the OpenAI-compatible provider of the migration's new model."""
    settings = Settings(database_url=create_database(embedded_pg.url), data_dir=tmp_path / "p")
    with live_server(create_app(settings, embedder=provider_embedder)) as live:
        yield live


@pytest.fixture
def service(
    provider: LiveServer,
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
) -> Iterator[Service]:
    """Our service on its own database, its OpenAI provider pointed at `provider`."""
    database_url = create_database(embedded_pg.url)
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        openai_base_url=provider.url + "/v1",
        migration_batch_rows=32,
    )
    with (
        live_server(create_app(settings, embedder=local_embedder)) as live,
        httpx.Client(base_url=live.url, timeout=60) as http,
    ):
        yield Service(http, database_url)


def _fill(http: httpx.Client, name: str, count: int) -> None:
    assert http.post("/collections", json={"name": name}).status_code == 201
    for start in range(0, count, 100):
        items = [{"chunkId": f"c{i}", "text": _text(i)} for i in range(start, start + 100)]
        response = http.post("/embed/batch", json={"items": items, "collection": name})
        assert response.status_code == 200, response.text


def _wait_for(http: httpx.Client, name: str, state: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = http.get(f"/collections/{name}/migration").json()
        if body["state"] == state:  # a transient error (the provider busy) is retried
            return dict(body)
        time.sleep(0.3)
    raise AssertionError(f"migration of {name} not {state} in {timeout_s} s: {body}")


_DOCUMENT_CHUNKS = "SELECT chunk_id, content FROM c_papers WHERE document_id = 'guide'"


@dataclass
class Load:
    """Writes (new chunks, rewrites, deletes) and searches by the collection's name, until
    stopped; what every acknowledged write left, and every search that failed."""

    url: str
    name: str
    expected: dict[str, str | None] = field(default_factory=dict)  # chunk id -> text (None: gone)
    failed: list[str] = field(default_factory=list)
    searches: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def write(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                if i % 5 == 0:  # delete an original chunk
                    chunk_id = f"c{i}"
                    response = http.delete(f"/chunks/{chunk_id}", params={"collection": self.name})
                    if response.status_code == 204:
                        self.expected[chunk_id] = None
                    continue
                chunk_id, text = (f"c{i}", f"rewritten {i}") if i % 3 == 0 else (f"w{i}", _text(i))
                body = {"chunkId": chunk_id, "text": text, "collection": self.name}
                response = http.post("/embed", json=body)
                if response.status_code != 200:
                    self.failed.append(f"write {response.status_code}: {response.text}")
                else:
                    self.expected[chunk_id] = text

    def search(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                for mode in ("dense", "hybrid"):
                    body = {"query": "volcanoes", "mode": mode, "collection": self.name}
                    response = http.post("/search", json=body)
                    self.searches += 1
                    if response.status_code != 200 or not response.json()["results"]:
                        self.failed.append(f"search {response.status_code}: {response.text}")


def test_migration_under_load_switches_with_nothing_lost(
    service: Service, provider: LiveServer
) -> None:
    http = service.http
    _fill(http, "papers", 300)
    document = {
        "documentId": "guide",
        "text": "a guide to volcanoes. " * 20,
        "collection": "papers",
    }
    assert http.post("/documents", json=document).status_code == 200
    assert (
        http.post("/aliases", json={"name": "library", "collection": "papers"}).status_code == 200
    )
    load = Load(str(http.base_url), "papers")
    threads = [threading.Thread(target=load.write), threading.Thread(target=load.search)]
    for thread in threads:
        thread.start()
    try:
        started = http.post(
            "/collections/papers/migrate", json={"embedder": NEW_EMBEDDER, "dimensions": 256}
        )
        assert started.status_code == 202, started.text
        assert started.json()["target"] == "papers_v2"
        ready = _wait_for(http, "papers", "ready")
        # Its HNSW index was built once, after the backfill (not grown row by row).
        assert [i[1] for i in vector_indexes(service.database_url, "c_papers_v2")] == ["hnsw"]
        built = (
            "SELECT index_built_at IS NOT NULL, deferred_index IS NULL FROM embedsearch_collections"
        )
        assert rows(service.database_url, built + " WHERE name = 'papers_v2'") == [(True, True)]
        comparison = ready["comparison"]
        assert comparison["queries"] > 0 and comparison["sampled"] is True
        # The same model cut to 256 dimensions: mostly the same neighbours, not all of them.
        assert 0.5 <= comparison["overlapAt10"] <= 1.0
        scraped = http.get("/metrics").text
        assert 'embedsearch_migration_ready{collection="papers",target="papers_v2"} 1.0' in scraped
        time.sleep(1.0)  # writes keep arriving while it is ready
        assert http.post("/collections/papers/migration/switch").status_code == 202
        switched = _wait_for(http, "papers", "switched")
        time.sleep(1.0)  # and after the switch, through the name that is now an alias
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    assert load.failed == [], load.failed[:5]
    assert load.searches > 0 and len(load.expected) > 10
    assert switched["archivedAs"] == "papers_v1"
    # The name and the alias reach the new collection; the old one is kept under its new name.
    for name in ("papers", "library"):
        collection = http.get(f"/collections/{name}").json()
        assert (collection["name"], collection["dimensions"]) == ("papers_v2", 256)
    assert http.get("/collections/papers_v1").json()["dimensions"] == 384
    assert http.get("/documents/guide", params={"collection": "papers"}).status_code == 200
    # The new collection holds exactly what the acknowledged writes left: the first chunks,
    # the document's, and every write and delete made before, during and after the switch
    # (late ones, through a lookup just before it, are forwarded within seconds).
    final: dict[str, str | None] = {f"c{i}": _text(i) for i in range(300)}
    final |= {c: t for c, t in rows(service.database_url, _DOCUMENT_CHUNKS)}
    final |= load.expected
    expected = {chunk_id: text for chunk_id, text in final.items() if text is not None}
    deadline = time.monotonic() + 30
    while True:
        stored = dict(rows(service.database_url, "SELECT chunk_id, content FROM c_papers_v2"))
        if stored == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert stored == expected
    # The new vectors are the provider's, 256-dimensional.
    with httpx.Client(base_url=provider.url, timeout=60) as http_provider:
        made = http_provider.post(
            "/v1/embeddings",
            json={"model": "all-MiniLM-L6-v2", "input": [stored["c1"]], "dimensions": 256},
        ).json()["data"][0]["embedding"]
    (vector,) = rows(
        service.database_url, "SELECT embedding FROM c_papers_v2 WHERE chunk_id = 'c1'"
    )
    np.testing.assert_allclose(vector[0].to_numpy(), made, atol=1e-5)


def test_bad_migrations_are_refused_and_a_cancel_leaves_the_old_collection(
    service: Service,
) -> None:
    http = service.http
    _fill(http, "notes", 100)
    own = http.post("/collections/notes/migrate", json={"embedder": "local:all-MiniLM-L6-v2"})
    assert own.status_code == 422 and "already holds" in own.text
    for body, field_name in (
        ({"embedder": "nonsense"}, "embedder"),
        ({"embedder": NEW_EMBEDDER, "dimensions": 0}, "dimensions"),
        ({"embedder": NEW_EMBEDDER, "queries": [""]}, "queries"),
        ({"embedder": NEW_EMBEDDER, "judgments": {"queries": {}}}, "judgments"),
    ):
        refused = http.post("/collections/notes/migrate", json=body)
        assert refused.status_code == 422, refused.text
        assert field_name in refused.text
    assert (
        http.post("/collections/default/migrate", json={"embedder": NEW_EMBEDDER}).status_code
        == 422
    )
    assert (
        http.post("/collections/absent/migrate", json={"embedder": NEW_EMBEDDER}).status_code == 404
    )
    assert http.get("/collections/notes/migration").status_code == 404
    assert http.get("/collections", params={}).json()["collections"][-1]["name"] != "notes_v2"

    judgments = {"queries": {"q1": "volcanoes"}, "qrels": {"q1": {"c4": 1}}}
    body = {"embedder": NEW_EMBEDDER, "dimensions": 128, "judgments": judgments}
    assert http.post("/collections/notes/migrate", json=body).status_code == 202
    again = http.post("/collections/notes/migrate", json=body)
    assert again.status_code == 200  # the running one, not a second
    other = http.post("/collections/notes/migrate", json={"embedder": NEW_EMBEDDER})
    assert other.status_code == 409
    shadow = http.post("/collections/notes_v2/migrate", json={"embedder": NEW_EMBEDDER})
    assert shadow.status_code == 409 and "new collection of a running migration" in shadow.text
    assert http.delete("/collections/notes").status_code == 409  # in a migration
    ready = _wait_for(http, "notes", "ready")
    assert set(ready["comparison"]["ndcgAt10"]) == {"old", "new", "queries"}
    assert ready["backfill"] == {"done": 100, "total": 100} and ready["embedded"] == 100
    cancelled = http.delete("/collections/notes/migration")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert http.get("/collections/notes_v2").status_code == 404
    assert http.get("/collections/notes").json()["dimensions"] == 384
    triggers = rows(
        service.database_url,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'c_notes'::regclass AND tgname LIKE '%migrate%'",
    )
    assert triggers == []
    assert http.delete("/collections/notes/migration").status_code == 409  # nothing running


def _beir_judgments(root: Path) -> Path:
    """A small BEIR folder: the documents are the chunks' ids, two judged queries."""
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "c4", "title": "", "text": "volcanoes"}\n')
    (root / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "volcanoes"}\n{"_id": "q2", "text": "jazz history"}\n'
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tc4\t1\nq2\tc3\t1\n")
    return root


def test_cli_migrates_compares_on_judgments_and_switches(
    provider: LiveServer,
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
) -> None:
    database_url = create_database(embedded_pg.url)
    settings = Settings(database_url=database_url, data_dir=tmp_path / "s", migration_worker=False)
    with (
        live_server(create_app(settings, embedder=local_embedder)) as live,
        httpx.Client(base_url=live.url, timeout=60) as http,
    ):
        _fill(http, "notes", 100)
    env = {
        "EMBEDSEARCH_OPENAI_BASE_URL": provider.url + "/v1",
        "EMBEDSEARCH_MIGRATION_FORWARD_S": "0",
    }
    data_dir = tmp_path / "data"
    args = ["migrate", "notes", "--embedder", NEW_EMBEDDER, "--dimensions", "64"]
    judged = ["--judgments", str(_beir_judgments(tmp_path / "beir"))]
    done = run([*args, *judged, "--switch", "--json"], database_url, data_dir, **env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "switched" and result["archivedAs"] == "notes_v1"
    ndcg = result["comparison"]["ndcgAt10"]
    assert ndcg["queries"] == 2 and 0 <= ndcg["new"] <= 1 and ndcg["old"] > 0
    dims = rows(database_url, "SELECT name, dimensions FROM embedsearch_collections ORDER BY 1")
    assert dims == [("default", 384), ("notes_v1", 384), ("notes_v2", 64)]
    assert rows(database_url, "SELECT count(*) FROM c_notes_v2") == [(100,)]
    shown = run(["migrate", "notes", "--status"], database_url, data_dir, **env)
    assert shown.returncode == 0 and "notes now reaches notes_v2" in shown.stdout
    again = run(args, database_url, data_dir, **env)  # notes_v2 has this model now
    assert again.returncode == 2 and "already holds" in again.stderr


def test_a_backfill_stopped_midway_resumes_without_embedding_twice(
    provider: LiveServer,
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=create_database(embedded_pg.url),
        data_dir=tmp_path / "data",
        openai_base_url=provider.url + "/v1",
        migration_batch_rows=16,
    )

    async def scenario() -> tuple[MigrationRecord, MigrationRecord]:
        async with open_deps(settings, embedder=local_embedder) as deps:
            await collections.create(deps, "books")
            items = [ChunkInput(f"c{i}", _text(i)) for i in range(200)]
            await embed_batch(deps, items, collection="books")
            record, _ = await model_migration.start(
                deps, "books", embedder=NEW_EMBEDDER, dimensions=32
            )
            options = migration_options(settings)
            first = asyncio.create_task(MigrationRunner(deps, record.id, options).run())
            while (await _progress(deps, record.id)).backfill_done < 48:
                await asyncio.sleep(0.05)
            first.cancel()  # as a killed worker: its batch's transaction never commits
            # It stops (a cancel psycopg turned into a query error is not retried).
            await asyncio.wait_for(asyncio.gather(first, return_exceptions=True), 30)
            stopped = await _progress(deps, record.id)
            await embed_batch(deps, [ChunkInput("c0", "changed while stopped")], "books")
            runner = MigrationRunner(deps, record.id, options, until_ready=True)
            return stopped, await asyncio.wait_for(runner.run(), 300)

    stopped, ready = asyncio.run(scenario())
    assert 48 <= stopped.backfill_done < 200
    assert ready.state == "ready" and ready.backfill_done == 200
    # Every chunk once, plus the one changed meanwhile: what was stored is not embedded again.
    assert 201 <= ready.embedded <= 201 + 16
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    assert rows(url, "SELECT count(*), count(DISTINCT chunk_id) FROM c_books_v2") == [(200, 200)]
    assert rows(url, "SELECT content FROM c_books_v2 WHERE chunk_id = 'c0'") == [
        ("changed while stopped",)
    ]


async def _progress(deps: Deps, migration_id: int) -> MigrationRecord:
    record = await deps.store.migrations.get(migration_id)
    assert record is not None
    return record
