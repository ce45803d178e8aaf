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
from tests.test_cli import run as run_cli


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
        "textConfig": "english",
        "fusion": None,
        "sharding": None,
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


FUSION_CHUNKS = {
    "quota": "The error code XJ-42 means the disk quota was exceeded.",
    "space": "Storage quotas limit how much disk space each user may fill.",
    "cats": "Cats sleep for most of the day and hunt at dawn.",
    "pasta": "Boil the pasta in salted water until it is al dente.",
}


def hybrid(client: httpx.Client, collection: str, **extra: object) -> list[tuple[str, float]]:
    body = {"query": "disk quota error", "mode": "hybrid", "collection": collection} | extra
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return [(r["chunkId"], r["score"]) for r in response.json()["results"]]


def seed_fusion_chunks(client: httpx.Client, collection: str | None) -> None:
    items = [{"chunkId": cid, "text": text} for cid, text in FUSION_CHUNKS.items()]
    response = client.post("/embed/batch", json={"items": items, "collection": collection})
    assert response.status_code == 200, response.text


def test_patch_sets_and_clears_the_default_fusion(client: httpx.Client) -> None:
    assert client.post("/collections", json={"name": "papers"}).status_code == 201
    seed_fusion_chunks(client, "papers")
    built_in = hybrid(client, "papers")
    rrf = hybrid(client, "papers", fusion={"method": "rrf", "k": 1})
    assert rrf != built_in

    patched = client.patch("/collections/papers", json={"fusion": {"method": "rrf", "k": 1}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["fusion"] == {"method": "rrf", "k": 1}
    assert patched.json()["count"] == len(FUSION_CHUNKS) and patched.json()["name"] == "papers"
    assert client.get("/collections/papers").json()["fusion"] == {"method": "rrf", "k": 1}
    assert hybrid(client, "papers") == rrf  # no fusion in the request: the stored one
    # A request's own fusion still wins over the stored default.
    assert hybrid(client, "papers", fusion={"method": "convex", "alpha": 0.5}) == built_in

    # Fields left out change nothing.
    unchanged = client.patch("/collections/papers", json={})
    assert unchanged.status_code == 200 and unchanged.json()["fusion"] == {"method": "rrf", "k": 1}

    convex = client.patch(
        "/collections/papers", json={"fusion": {"method": "convex", "alpha": 0.3}}
    )
    assert convex.json()["fusion"] == {"method": "convex", "alpha": 0.3}
    assert hybrid(client, "papers") == hybrid(client, "papers", fusion={"alpha": 0.3})
    assert hybrid(client, "papers") != built_in

    cleared = client.patch("/collections/papers", json={"fusion": None})
    assert cleared.status_code == 200 and cleared.json()["fusion"] is None
    assert client.get("/collections/papers").json()["fusion"] is None
    assert hybrid(client, "papers") == built_in


def test_patch_default_collection_applies_at_once(client: httpx.Client) -> None:
    """The default collection's record is cached for a few seconds: a change must not wait."""
    seed_fusion_chunks(client, None)
    built_in = hybrid(client, "default")  # caches the default record
    rrf = hybrid(client, "default", fusion={"method": "rrf", "k": 1})
    patched = client.patch("/collections/default", json={"fusion": {"method": "rrf", "k": 1}})
    assert patched.status_code == 200, patched.text
    assert hybrid(client, "default") == rrf != built_in


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/collections/papers", {"fusion": {"method": "dense"}}, 422, "fusion.method"),
        ("/collections/papers", {"fusion": {"method": "convex", "alpha": 2}}, 422, "fusion.alpha"),
        (
            "/collections/papers",
            {"fusion": {"method": "convex", "alpha": -0.1}},
            422,
            "fusion.alpha",
        ),
        ("/collections/papers", {"fusion": {"method": "rrf", "k": 0}}, 422, "fusion.k"),
        ("/collections/papers", {"fusion": "rrf"}, 422, "fusion"),
        ("/collections/papers", {"fusoin": None}, 422, "fusoin"),  # a typo is not "no change"
        ("/collections/missing", {"fusion": {"method": "rrf"}}, 404, "collection"),
        ("/collections/missing", {"fusion": None}, 404, "collection"),
        ("/collections/Bad-Name", {"fusion": None}, 422, "collection"),
    ],
)
def test_patch_bad_input_changes_nothing(
    client: httpx.Client,
    database_url: str,
    path: str,
    body: dict[str, object],
    status: int,
    field: str,
) -> None:
    assert client.post("/collections", json={"name": "papers"}).status_code == 201
    stored = {"method": "rrf", "k": 7}
    assert client.patch("/collections/papers", json={"fusion": stored}).status_code == 200
    before = rows(database_url, "SELECT name, fusion FROM embedsearch_collections ORDER BY name")
    assert before == [("default", None), ("papers", stored)]

    response = client.patch(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    after = rows(database_url, "SELECT name, fusion FROM embedsearch_collections ORDER BY name")
    assert after == before


def test_cli_set_fusion(database_url: str, tmp_path: Path) -> None:
    def cli(*args: str) -> tuple[int, str]:
        done = run_cli(["collections", *args], database_url, tmp_path)
        return done.returncode, done.stdout + done.stderr

    def stored() -> list[tuple[object, ...]]:
        return rows(
            database_url, "SELECT fusion FROM embedsearch_collections WHERE name = 'papers'"
        )

    assert cli("create", "papers")[0] == 0
    code, out = cli("set-fusion", "papers", "--alpha", "0.7")
    assert code == 0 and "convex alpha 0.7" in out, out
    assert stored() == [({"method": "convex", "alpha": 0.7},)]
    for bad, message in (
        (["papers", "--alpha", "2"], "fusion.alpha must be between 0 and 1"),
        (["papers", "--method", "rrf", "--alpha", "0.2"], "--alpha applies to convex"),
        (["papers", "--clear", "--k", "5"], "--clear takes no"),
        (["missing", "--k", "5"], "collection 'missing' does not exist"),
    ):
        code, out = cli("set-fusion", *bad)
        assert code == 2 and message in out and "Traceback" not in out, out
        assert stored() == [({"method": "convex", "alpha": 0.7},)]
    code, out = cli("set-fusion", "papers", "--k", "20")
    assert code == 0 and stored() == [({"method": "rrf", "k": 20},)], out
    code, out = cli("set-fusion", "papers", "--clear")
    assert code == 0 and "cleared" in out and stored() == [(None,)], out
