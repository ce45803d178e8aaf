"""Collections side by side, each with its own model and dimensions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from tests.servers import LiveServer, create_database, live_server, rows


def test_collection_lifecycle(client: httpx.Client) -> None:
    created = client.post("/collections", json={"name": "papers", "distance": "l2"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body | {"createdAt": None} == {
        "name": "papers",
        "model": "all-MiniLM-L6-v2",
        "dimensions": 384,
        "embedder": "local:all-MiniLM-L6-v2",
        "distance": "l2",
        "storage": "vector",
        "normalized": True,
        "count": 0,
        "createdAt": None,
    }
    assert client.post("/collections", json={"name": "papers"}).status_code == 409
    client.post(
        "/embed", json={"chunkId": "p1", "text": "A paper on proteins", "collection": "papers"}
    )
    client.post("/embed", json={"chunkId": "d1", "text": "Default collection text"})
    assert client.get("/collections/papers").json()["count"] == 1
    names = {c["name"]: c["count"] for c in client.get("/collections").json()["collections"]}
    assert names == {"default": 1, "papers": 1}
    search = client.post(
        "/search/pgvector", json={"query": "protein", "collection": "papers"}
    ).json()
    assert [r["chunkId"] for r in search["results"]] == ["p1"]
    assert search["distance"] == "l2" and search["collection"] == "papers"
    assert client.delete("/collections/papers").status_code == 204
    assert client.get("/collections/papers").status_code == 404
    assert (
        client.post("/search/pgvector", json={"query": "x", "collection": "papers"}).status_code
        == 404
    )
    assert [
        r["chunkId"] for r in client.post("/search/pgvector", json={"query": "x"}).json()["results"]
    ] == ["d1"]


@pytest.mark.parametrize(
    ("request_", "status", "field"),
    [
        (("POST", "/collections", {"name": "Bad-Name"}), 422, "name"),
        (("POST", "/collections", {"name": "x" * 41}), 422, "name"),
        (("POST", "/collections", {"name": "ok", "embedder": "cloud:thing"}), 422, "embedder"),
        (
            ("POST", "/collections", {"name": "ok", "embedder": "local:no-such-model"}),
            422,
            "embedder",
        ),
        (("POST", "/collections", {"name": "ok", "distance": "dot"}), 422, "distance"),
        (("DELETE", "/collections/default", None), 422, "name"),
        (("DELETE", "/collections/missing", None), 404, "name"),
        (("GET", "/collections/missing", None), 404, "collection"),
        (("GET", "/collections/Bad-Name", None), 422, "collection"),
        (
            ("POST", "/embed", {"chunkId": "a", "text": "t", "collection": "missing"}),
            404,
            "collection",
        ),
        (
            ("POST", "/embed", {"chunkId": "a", "text": "t", "collection": "drop table"}),
            422,
            "collection",
        ),
        (
            (
                "POST",
                "/embed/batch",
                {"items": [{"chunkId": "a", "text": "t"}], "collection": "missing"},
            ),
            404,
            "collection",
        ),
        (("POST", "/search/pgvector", {"query": "q", "collection": "missing"}), 404, "collection"),
    ],
)
def test_bad_collection_requests(
    client: httpx.Client,
    database_url: str,
    request_: tuple[str, str, dict[str, object] | None],
    status: int,
    field: str,
) -> None:
    method, path, body = request_
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert rows(database_url, "SELECT name FROM embedsearch_collections") == [("default",)]


def test_two_models_side_by_side(
    server: LiveServer, embedded_pg: EmbeddedPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    """One service, two collections: the local 384-d model and a 128-d OpenAI-compatible one
    (our first server's /v1/embeddings), each searched with its own model."""
    database_url = create_database(embedded_pg.url)
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, openai_base_url=server.url + "/v1"
    )
    with (
        live_server(create_app(settings, embedder=local_embedder)) as app,
        httpx.Client(base_url=app.url, timeout=60) as http,
    ):
        created = http.post(
            "/collections",
            json={"name": "narrow", "embedder": "openai:all-MiniLM-L6-v2", "dimensions": 128},
        )
        assert created.status_code == 201, created.text
        assert created.json()["dimensions"] == 128
        for collection in (None, "narrow"):
            for chunk_id, text in (
                ("bio", "Cells divide by mitosis."),
                ("cook", "Knead the dough well."),
            ):
                response = http.post(
                    "/embed", json={"chunkId": chunk_id, "text": text, "collection": collection}
                )
                assert response.status_code == 200, response.text
        for collection in (None, "narrow"):
            found = http.post(
                "/search/pgvector", json={"query": "cell biology", "collection": collection}
            ).json()
            assert [r["chunkId"] for r in found["results"]] == ["bio", "cook"]
        assert (
            http.post("/embed", json={"chunkId": "x", "text": "y", "collection": "narrow"}).json()[
                "dimensions"
            ]
            == 128
        )
    assert rows(database_url, "SELECT vector_dims(embedding) FROM c_narrow LIMIT 1") == [(128,)]
    assert rows(database_url, "SELECT vector_dims(embedding) FROM chunk_embeddings LIMIT 1") == [
        (384,)
    ]
