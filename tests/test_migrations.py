"""Versioned schema migrations: a database written by the previous release (schema version 1,
tests/fixtures/v1, captured from e9b6e60) upgrades in place with nothing lost and searches as
before; a newer schema is refused untouched; a failing step rolls back and nothing starts; a
process that starts while another migrates waits, then works."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.migrations import MIGRATIONS, SCHEMA_VERSION
from embedsearch.store.sql.schema import MIGRATION_LOCK_ID
from tests.servers import (
    bm25_postings,
    bm25_recount,
    bm25_statistics,
    create_database,
    live_server,
    postings_recount,
    rows,
)
from tests.test_cli import CLI, environment
from tests.test_cli import run as cli_run

FIXTURE = Path(__file__).parent / "fixtures" / "v1"
TABLES = ("chunk_embeddings", "c_papers", "c_raw_ip", "c_tuned", "c_ivf")
COLLECTIONS = ("default", "papers", "raw_ip", "tuned", "ivf")
V1_CHUNK_COLUMNS = (
    "chunk_id, embedding::text, created_at, updated_at, model_name, content, content_hash,"
    " metadata, document_id, content_tsv"
)


def version_1_database(embedded_pg: EmbeddedPostgres) -> str:
    """A fresh database holding exactly what e9b6e60 wrote (its pg_dump, schema and rows)."""
    url = create_database(embedded_pg.url, prefix="v1")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FIXTURE / "database.sql").read_text(encoding="utf-8"))
    return url


def snapshot(url: str) -> dict[str, Any]:
    """Everything a release stores, read straight from the catalog and the tables."""
    found: dict[str, Any] = {
        "registry": rows(
            url,
            "SELECT name, table_name, model, dimensions, created_at, embedder, distance, storage,"
            " normalized, probes, index_rows, index_built_at, deferred_index"
            " FROM embedsearch_collections ORDER BY name",
        ),
        "documents": rows(url, "SELECT * FROM embedsearch_documents ORDER BY 1, 2"),
        "indexes": rows(
            url,
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename = ANY(%s) ORDER BY 1, 2",
            ([*TABLES, "embedsearch_collections", "embedsearch_documents"],),
        ),
    }
    for table in TABLES:
        found[table] = rows(url, f"SELECT {V1_CHUNK_COLUMNS} FROM {table} ORDER BY chunk_id")  # noqa: S608
    return found


EMBEDDING_STORAGE = (
    "SELECT attstorage FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'"
)


def plain_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """`rows` without the vector type, for a database that may not have the extension."""
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def versions(url: str) -> list[int]:
    return [
        r[0] for r in plain_rows(url, "SELECT version FROM embedsearch_schema ORDER BY version")
    ]


PUBLIC_TABLES = "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 1"


def same_results(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """The same ranking with the same scores; results whose scores tie (within 1e-4, as
    equal texts do) may come in either order."""
    if len(got) != len(expected):
        return False
    for mine, theirs in zip(got, expected, strict=True):
        if abs(mine["score"] - theirs["score"]) > 1e-4:
            return False
        tied = {e["chunkId"] for e in expected if abs(e["score"] - theirs["score"]) <= 1e-4}
        if mine["chunkId"] != theirs["chunkId"] and mine["chunkId"] not in tied:
            return False
    return True


def test_a_version_1_database_upgrades_in_place_and_searches_the_same(
    embedded_pg: EmbeddedPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    url = version_1_database(embedded_pg)
    before = snapshot(url)
    assert len(before["registry"]) == 5 and len(before["documents"]) == 6
    assert rows(url, "SELECT to_regclass('embedsearch_schema')") == [(None,)]

    settings = Settings(database_url=url, data_dir=tmp_path)
    with (
        live_server(create_app(settings, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert versions(url) == [m.version for m in MIGRATIONS]
        assert snapshot(url) == before  # every collection, chunk, document, index, registry row
        searches = json.loads((FIXTURE / "searches.json").read_text(encoding="utf-8"))
        for case in searches:
            response = http.post("/search", json=case["request"])
            assert response.status_code == 200, response.text
            got = [
                {"chunkId": r["chunkId"], "score": r["score"]} for r in response.json()["results"]
            ]
            if case["request"]["mode"] == "dense":
                assert same_results(got, case["results"]), (case["request"], got, case["results"])
            else:  # lexical search is BM25 since version 3: other scores, the same matches found
                assert bool(got) == bool(case["results"]), case["request"]
        # Version 3 counted the stored chunks for BM25.
        for name, table in zip(COLLECTIONS, TABLES, strict=True):
            assert bm25_statistics(url, name) == bm25_recount(url, table), name
        # Version 5 posted the stored chunks, each (lexeme, chunk) once.
        for table in TABLES:
            posted = bm25_postings(url, table)
            assert posted == postings_recount(url, table), table
            holding = psycopg.sql.SQL("SELECT chunk_id FROM {} WHERE length(content_tsv) > 0")
            expected = rows(url, holding.format(psycopg.sql.Identifier(table)))
            assert expected and {chunk for _, chunk, _, _ in posted} == {r[0] for r in expected}
        # Version 4: vectors are kept in the row from now on ('m': MAIN).
        for table in TABLES:
            assert rows(url, EMBEDDING_STORAGE, (table,)) == [("m",)], table
        listed = {c["name"]: c["count"] for c in http.get("/collections").json()["collections"]}
        assert listed == {
            name: len(before[table]) for name, table in zip(COLLECTIONS, TABLES, strict=True)
        }
        # The upgraded database takes writes as before.
        assert (
            http.post("/embed", json={"chunkId": "new", "text": "after the upgrade"}).status_code
            == 200
        )
        document = http.get("/documents/long.md").json()
        assert document["chunkCount"] == 1 and document["metadata"] == {"lang": "en"}
        assert ("upgrad", "new") in {
            (lexeme, chunk) for lexeme, chunk, _, _ in bm25_postings(url, "chunk_embeddings")
        }


SOURCE_REGISTRY_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'embedsearch_sources'"
    " ORDER BY ordinal_position"
)


def test_version_7_adds_an_empty_source_registry_to_an_upgraded_database(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = version_1_database(embedded_pg)
    before = snapshot(url)
    assert plain_rows(url, "SELECT to_regclass('embedsearch_sources')") == [(None,)]
    listed = cli_run(["sources", "list", "--json"], url, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert 7 in versions(url) and versions(url)[-1] == SCHEMA_VERSION
    columns = [r[0] for r in plain_rows(url, SOURCE_REGISTRY_COLUMNS)]
    assert columns[:9] == [
        "name",
        "url",
        "table_schema",
        "table_name",
        "id_column",
        "text_columns",
        "metadata_columns",
        "row_filter",
        "collection",
    ]
    assert {"phase", "backfill_cursor", "backfill_done", "last_error"} <= set(columns)
    assert plain_rows(url, "SELECT count(*) FROM embedsearch_sources") == [(0,)]
    assert snapshot(url) == before  # nothing else changed


def test_a_database_newer_than_the_code_is_refused_untouched(
    database_url: str, tmp_path: Path
) -> None:
    newer = SCHEMA_VERSION + 7
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE embedsearch_schema (version INTEGER PRIMARY KEY, description TEXT NOT"
            " NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute(
            "INSERT INTO embedsearch_schema VALUES (%s, 'from the future', now())", (newer,)
        )
    tables = plain_rows(database_url, PUBLIC_TABLES)
    result = cli_run(["collections", "list"], database_url, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"version {newer}" in result.stderr and f"version {SCHEMA_VERSION}" in result.stderr
    assert "Traceback" not in result.stderr
    assert plain_rows(database_url, PUBLIC_TABLES) == tables == [("embedsearch_schema",)]
    assert versions(database_url) == [newer]
    assert (
        plain_rows(database_url, "SELECT extname FROM pg_extension WHERE extname = 'vector'") == []
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_failing_migration_rolls_back_and_nothing_starts(
    embedded_pg: EmbeddedPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    """Version 2 refuses registry values the code cannot read; a version-1 row holding one
    (written by hand) makes that step fail: it rolls back, the CLI says so and exits 1, and the
    server does not start on the half-migrated schema."""
    url = version_1_database(embedded_pg)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE embedsearch_collections SET distance = 'manhattan' WHERE name = 'ivf'")
    before = snapshot(url)
    result = cli_run(["collections", "list"], url, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "version 2" in result.stderr and "rolled back" in result.stderr
    assert "Traceback" not in result.stderr
    assert versions(url) == [1]  # version 1 applied (nothing to change), version 2 not
    assert snapshot(url) == before
    constraints = rows(
        url,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'embedsearch_collections'::regclass"
        " AND contype = 'c'",
    )
    assert constraints == []
    app = create_app(Settings(database_url=url, data_dir=tmp_path), embedder=local_embedder)
    with pytest.raises(RuntimeError, match="failed to start"), live_server(app):
        pass


def test_a_process_starting_during_a_migration_waits_then_works(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = version_1_database(embedded_pg)
    with psycopg.connect(url) as holder:
        # What a migrating process holds while it works.
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        waiting = [
            subprocess.Popen(
                [*CLI, "collections", "list", "--json"],
                env=environment(url, tmp_path / f"data{i}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        time.sleep(3)
        assert [p.poll() for p in waiting] == [None, None]  # both wait on the lock
        assert versions_or_none(url) is None
        holder.commit()  # the migration "finishes"; the waiting processes go on
    for process in waiting:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert {c["name"] for c in json.loads(out)} == {
            "default",
            "papers",
            "raw_ip",
            "tuned",
            "ivf",
        }
    assert versions(url) == [m.version for m in MIGRATIONS]  # each step applied once


def versions_or_none(url: str) -> list[int] | None:
    if plain_rows(url, "SELECT to_regclass('embedsearch_schema')") == [(None,)]:
        return None
    return versions(url)
