"""Bad input: a clear 4xx in one JSON shape, naming the field, and stored data left as it was."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.servers import rows

SNAPSHOT = "SELECT chunk_id, content, metadata, updated_at FROM chunk_embeddings ORDER BY chunk_id"


@pytest.fixture
def seeded(client: httpx.Client, database_url: str) -> list[tuple[Any, ...]]:
    assert (
        client.post("/embed", json={"chunkId": "keep", "text": "unchanged text"}).status_code == 200
    )
    return rows(database_url, SNAPSHOT)


def assert_error(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] and body["error"]["message"]
    assert body["error"].get("field") == field


EMBED_CASES = [
    pytest.param({"text": "no id"}, 422, "chunkId", id="missing-chunkId"),
    pytest.param({"chunkId": "x"}, 422, "text", id="missing-text"),
    pytest.param({"chunkId": "", "text": "t"}, 422, "chunkId", id="empty-chunkId"),
    pytest.param({"chunkId": "   ", "text": "t"}, 422, "chunkId", id="blank-chunkId"),
    pytest.param({"chunkId": "keep", "text": ""}, 422, "text", id="empty-text"),
    pytest.param({"chunkId": "keep", "text": " \n\t "}, 422, "text", id="blank-text"),
    pytest.param({"chunkId": "x" * 256, "text": "t"}, 422, "chunkId", id="chunkId-256-chars"),
    pytest.param({"chunkId": "keep", "text": "a\x00b"}, 422, "text", id="nul-in-text"),
    pytest.param({"chunkId": "a\x00b", "text": "t"}, 422, "chunkId", id="nul-in-chunkId"),
    pytest.param({"chunkId": 5, "text": "t"}, 422, "chunkId", id="chunkId-not-string"),
    pytest.param({"chunkId": "keep", "text": ["a"]}, 422, "text", id="text-not-string"),
    pytest.param(
        {"chunkId": "keep", "text": "t", "metadata": [1]}, 422, "metadata", id="metadata-not-object"
    ),
    pytest.param(
        {"chunkId": "keep", "text": "t", "metadata": {"k": "a\x00"}},
        422,
        "metadata.k",
        id="nul-in-metadata",
    ),
    pytest.param({"chunkId": "keep", "text": "word " * 30_000}, 413, "text", id="text-too-large"),
]


@pytest.mark.parametrize(("payload", "status", "field"), EMBED_CASES)
def test_bad_embed_requests(
    client: httpx.Client,
    database_url: str,
    seeded: list[Any],
    payload: dict[str, Any],
    status: int,
    field: str,
) -> None:
    assert_error(client.post("/embed", json=payload), status, field)
    assert rows(database_url, SNAPSHOT) == seeded


SEARCH_CASES = [
    pytest.param({}, 422, "query", id="missing-query"),
    pytest.param({"query": ""}, 422, "query", id="empty-query"),
    pytest.param({"query": "   "}, 422, "query", id="blank-query"),
    pytest.param({"query": "q\x00"}, 422, "query", id="nul-in-query"),
    pytest.param({"query": "q", "distance": "dot"}, 422, "distance", id="unknown-distance"),
    pytest.param({"query": "q", "limit": 0}, 422, "limit", id="limit-0"),
    pytest.param({"query": "q", "limit": 1001}, 422, "limit", id="limit-1001"),
    pytest.param({"query": "q", "limit": "many"}, 422, "limit", id="limit-not-number"),
    pytest.param({"query": "q", "limit": -3}, 422, "limit", id="limit-negative"),
]


@pytest.mark.parametrize(("payload", "status", "field"), SEARCH_CASES)
def test_bad_search_requests(
    client: httpx.Client, payload: dict[str, Any], status: int, field: str
) -> None:
    assert_error(client.post("/search/pgvector", json=payload), status, field)


@pytest.mark.parametrize("path", ["/embed", "/search/pgvector", "/v1/embeddings"])
@pytest.mark.parametrize(
    "raw",
    [b'{"chunkId": "x",', b"not json", b"", b"[1, 2]", b'"a string"'],
    ids=["truncated", "text", "empty", "array", "string"],
)
def test_malformed_bodies(
    client: httpx.Client, database_url: str, seeded: list[Any], path: str, raw: bytes
) -> None:
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert set(response.json()["error"]) >= {"code", "message"}
    assert rows(database_url, SNAPSHOT) == seeded


def test_unknown_route_and_method_use_the_error_shape(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, None)
    assert_error(client.get("/embed"), 405, None)


OPENAI_CASES = [
    pytest.param({"model": "all-MiniLM-L6-v2", "input": []}, 422, "input", id="empty-list"),
    pytest.param({"model": "all-MiniLM-L6-v2", "input": ""}, 422, "input[0]", id="empty-string"),
    pytest.param(
        {"model": "all-MiniLM-L6-v2", "input": ["ok", ""]}, 422, "input[1]", id="empty-item"
    ),
    pytest.param(
        {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 4096},
        422,
        "dimensions",
        id="too-many-dims",
    ),
    pytest.param(
        {"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "hex"},
        422,
        "encoding_format",
        id="bad-format",
    ),
    pytest.param({"model": "gpt-unknown", "input": "x"}, 404, "model", id="unknown-model"),
    pytest.param({"input": "x"}, 422, "model", id="missing-model"),
]


@pytest.mark.parametrize(("payload", "status", "field"), OPENAI_CASES)
def test_bad_openai_requests(
    client: httpx.Client, payload: dict[str, Any], status: int, field: str
) -> None:
    assert_error(client.post("/v1/embeddings", json=payload), status, field)
