"""Aliases: another name for a collection wherever a collection name is taken, re-pointed
atomically; names never clash with collections'; a collection an alias names is not dropped
under it. Real HTTP against a real PostgreSQL, and the CLI as users run it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.test_cli import run


def _collection_with(client: httpx.Client, name: str, chunk_id: str, text: str) -> None:
    assert client.post("/collections", json={"name": name}).status_code == 201
    embedded = client.post("/embed", json={"chunkId": chunk_id, "text": text, "collection": name})
    assert embedded.status_code == 200, embedded.text


def _found(client: httpx.Client, collection: str) -> list[str]:
    response = client.post(
        "/search", json={"query": "rivers", "mode": "lexical", "collection": collection}
    )
    assert response.status_code == 200, response.text
    return [hit["chunkId"] for hit in response.json()["results"]]


def test_an_alias_reaches_its_collection_and_switches_atomically(client: httpx.Client) -> None:
    _collection_with(client, "papers_v1", "old", "rivers flow to the sea")
    _collection_with(client, "papers_v2", "new", "rivers carry sediment")
    made = client.post("/aliases", json={"name": "papers", "collection": "papers_v1"})
    assert made.status_code == 200, made.text
    assert made.json()["previous"] is None and made.json()["collection"] == "papers_v1"
    assert _found(client, "papers") == ["old"]
    # Writes through the alias land in its collection.
    written = client.post(
        "/embed", json={"chunkId": "via", "text": "rivers by alias", "collection": "papers"}
    )
    assert written.status_code == 200
    assert set(_found(client, "papers_v1")) == {"old", "via"}
    assert client.get("/collections/papers").json()["name"] == "papers_v1"

    # Searches by the alias while it is re-pointed: each sees one collection, none fails.
    seen: list[list[str]] = []
    stop = threading.Event()

    def search() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop.is_set():
                seen.append(_found(own, "papers"))

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        for target, before in [("papers_v2", "papers_v1"), ("papers_v1", "papers_v2")] * 3:
            moved = client.post("/aliases", json={"name": "papers", "collection": target})
            assert moved.status_code == 200 and moved.json()["previous"] == before
            wanted = len(seen) + 3  # a few searches between switches
            deadline = time.monotonic() + 30
            while len(seen) < wanted and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        stop.set()
        searcher.join()
    assert all(set(hits) in ({"old", "via"}, {"new"}) for hits in seen), seen
    assert {"new"} in [set(hits) for hits in seen] and {"old", "via"} in [set(h) for h in seen]
    listed = client.get("/aliases").json()["aliases"]
    assert [(a["name"], a["collection"]) for a in listed] == [("papers", "papers_v1")]
    assert client.get("/aliases/papers").json()["collection"] == "papers_v1"


def test_names_never_clash_and_a_named_collection_stays(client: httpx.Client) -> None:
    _collection_with(client, "books", "b1", "rivers in novels")
    assert client.post("/aliases", json={"name": "library", "collection": "books"}).status_code
    clash = client.post("/aliases", json={"name": "books", "collection": "books"})
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "name"
    taken = client.post("/collections", json={"name": "library"})
    assert taken.status_code == 409 and "alias" in taken.json()["error"]["message"]
    kept = client.delete("/collections/books")
    assert kept.status_code == 409 and "library" in kept.json()["error"]["message"]
    assert _found(client, "books") == ["b1"]
    chained = client.post("/aliases", json={"name": "shelf", "collection": "library"})
    assert chained.status_code == 422 and chained.json()["error"]["field"] == "collection"
    missing = client.post("/aliases", json={"name": "shelf", "collection": "nothing"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "collection"
    bad = client.post("/aliases", json={"name": "Bad Name", "collection": "books"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "name"
    assert client.get("/aliases").json()["aliases"] == [
        {**client.get("/aliases/library").json()}
    ]  # nothing above made or changed an alias

    dropped = client.delete("/aliases/library")
    assert dropped.status_code == 200 and dropped.json() == {
        "name": "library",
        "collection": "books",
    }
    assert client.delete("/aliases/library").status_code == 404
    assert client.get("/aliases/library").status_code == 404
    gone = client.post("/search", json={"query": "rivers", "collection": "library"})
    assert gone.status_code == 404
    assert client.delete("/collections/books").status_code == 204  # no alias names it now


def test_cli_sets_lists_and_drops_aliases(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    created = run(["collections", "create", "notes_v1", "--index", "none"], database_url, data_dir)
    assert created.returncode == 0, created.stderr
    made = run(["aliases", "set", "notes", "notes_v1"], database_url, data_dir)
    assert made.returncode == 0 and made.stdout.strip() == "notes -> notes_v1", made.stderr
    listed = run(["aliases", "list", "--json"], database_url, data_dir)
    assert listed.stdout.strip() == '[{"name": "notes", "collection": "notes_v1"}]'
    refused = run(["aliases", "set", "notes", "missing"], database_url, data_dir)
    assert refused.returncode != 0 and "missing" in refused.stderr
    dropped = run(["aliases", "drop", "notes"], database_url, data_dir)
    assert dropped.returncode == 0 and "notes_v1 kept" in dropped.stdout
    assert run(["aliases", "list"], database_url, data_dir).stdout == ""
