"""Vectors live in the row (storage MAIN), not in TOAST: a table a previous release wrote keeps
its vectors in TOAST until `embedsearch collections compact` rewrites it, with nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from tests.servers import rows
from tests.test_cli import environment

TOASTED = (
    "SELECT count(*) FILTER (WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL), count(*)"
    " FROM chunk_embeddings"
)
STORAGE = (
    "SELECT attstorage FROM pg_attribute"
    " WHERE attrelid = 'chunk_embeddings'::regclass AND attname = 'embedding'"
)
# Rows past ~2 kB: text and tsvector beside a 1.5 kB vector (what pushed vectors out before).
TEXTS = {
    f"c{i}": f"Document {i} about {topic}. " + " ".join(f"{topic}{j}" for j in range(60))
    for i, topic in enumerate(["graphs", "proteins", "rivers", "markets", "poems", "stars"])
}


def set_storage(url: str, storage: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE chunk_embeddings ALTER COLUMN embedding SET STORAGE {storage}")


def store(client: httpx.Client) -> None:
    items = [{"chunkId": cid, "text": text} for cid, text in TEXTS.items()]
    assert client.post("/embed/batch", json={"items": items}).status_code == 200


def nearest(client: httpx.Client) -> list[tuple[str, float]]:
    found = client.post("/search", json={"query": "proteins", "limit": 6, "exact": True})
    return [(r["chunkId"], r["score"]) for r in found.json()["results"]]


def test_new_collections_keep_vectors_in_the_row(client: httpx.Client, database_url: str) -> None:
    store(client)
    assert rows(database_url, STORAGE) == [("m",)]
    assert rows(database_url, TOASTED) == [(0, len(TEXTS))]


def test_compact_moves_a_previous_releases_vectors_into_the_rows(
    client: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    # What releases before schema version 4 did: pgvector's default, EXTERNAL.
    set_storage(database_url, "EXTERNAL")
    store(client)
    toasted, total = rows(database_url, TOASTED)[0]
    assert toasted == total == len(TEXTS)
    before = nearest(client)

    set_storage(database_url, "MAIN")  # what migration 4 does
    result = subprocess.run(
        [sys.executable, "-m", "embedsearch.cli", "collections", "compact", "default"],
        env=environment(database_url, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "compacted default" in result.stdout
    assert rows(database_url, TOASTED) == [(0, len(TEXTS))]
    assert nearest(client) == before  # the same vectors, found the same


def test_compact_of_an_unknown_collection_is_a_clear_error(
    database_url: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "embedsearch.cli", "collections", "compact", "nope"],
        env=environment(database_url, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "nope" in result.stderr
    assert "Traceback" not in result.stderr
