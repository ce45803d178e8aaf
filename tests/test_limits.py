"""Request limits and HTTP-level defects (issue 15): every one a clear JSON 4xx in our error
shape, never a 500, with nothing stored."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core.constants import DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_METADATA_BYTES
from embedsearch.embedders.local import LocalEmbedder
from tests.servers import LiveServer, live_server, rows

CHUNKS = "SELECT chunk_id, content, metadata, updated_at FROM chunk_embeddings ORDER BY chunk_id"
DOCUMENTS = "SELECT count(*) FROM embedsearch_documents"
COLLECTIONS = "SELECT name FROM embedsearch_collections ORDER BY name"
JSON = {"content-type": "application/json"}


def state(database_url: str) -> tuple[Any, ...]:
    """Everything a bad request could have written."""
    return (
        rows(database_url, CHUNKS),
        rows(database_url, DOCUMENTS),
        rows(database_url, COLLECTIONS),
    )


@pytest.fixture
def seeded(client: httpx.Client, database_url: str) -> tuple[Any, ...]:
    assert client.post("/embed", json={"chunkId": "keep", "text": "unchanged"}).status_code == 200
    return state(database_url)


def raw_json(payload: Any) -> bytes:
    """What a client whose JSON encoder is lax sends: NaN, Infinity, lone surrogates as \\u
    escapes (Python's json.dumps defaults)."""
    return json.dumps(payload).encode()


def assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    assert body["error"].get("field") == field, body


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """An object `depth` levels deep: {"a": {"a": ... leaf}}."""
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    return dict(value)


def nested_and(levels: int) -> dict[str, Any]:
    """$and nested `levels` times around {"a": 1}: JSON depth 2 * levels + 1."""
    value: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        value = {"$and": [value]}
    return value


def embed(metadata: Any) -> dict[str, Any]:
    return {"chunkId": "new", "text": "some text", "metadata": metadata}


def batch(metadata: Any) -> dict[str, Any]:
    return {
        "items": [
            {"chunkId": "b0", "text": "t"},
            {"chunkId": "b1", "text": "t", "metadata": metadata},
        ]
    }


def document(metadata: Any) -> dict[str, Any]:
    return {"documentId": "doc", "text": "some text", "metadata": metadata}


# Where metadata goes in each write endpoint, and the field name errors give for it.
WRITES = [
    pytest.param("/embed", embed, "metadata", id="embed"),
    pytest.param("/embed/batch", batch, "items[1].metadata", id="batch"),
    pytest.param("/documents", document, "metadata", id="documents"),
]
SEARCHES = ["/search", "/search/pgvector"]


# Non-finite numbers: Python's json (and so starlette) reads them; they are not JSON.

NOT_FINITE = [
    pytest.param(float("nan"), id="NaN"),
    pytest.param(float("inf"), id="Infinity"),
    pytest.param(float("-inf"), id="-Infinity"),
]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(("path", "make", "where"), WRITES)
def test_non_finite_metadata_is_invalid_json(
    client: httpx.Client,
    database_url: str,
    seeded: Any,
    path: str,
    make: Any,
    where: str,
    value: float,
) -> None:
    response = client.post(path, content=raw_json(make({"x": value})), headers=JSON)
    assert_error(response, 400, "invalid_json", "body")
    assert state(database_url) == seeded


@pytest.mark.parametrize("number", [b"1e309", b"-1e309", b"1" * 400 + b".5", b"1E+999"])
def test_numbers_beyond_float_range_are_invalid_json(
    client: httpx.Client, database_url: str, seeded: Any, number: bytes
) -> None:
    body = b'{"chunkId": "new", "text": "t", "metadata": {"x": %s}}' % number
    assert_error(client.post("/embed", content=body, headers=JSON), 400, "invalid_json", "body")
    assert state(database_url) == seeded


@pytest.mark.parametrize("path", SEARCHES)
@pytest.mark.parametrize(
    "filter_",
    [b'{"x": NaN}', b'{"y": {"$gt": Infinity}}', b'{"y": {"$lt": -Infinity}}', b'{"x": 1e309}'],
    ids=["NaN", "gt-Infinity", "lt--Infinity", "1e309"],
)
def test_non_finite_numbers_in_filters_are_invalid_json(
    client: httpx.Client, seeded: Any, path: str, filter_: bytes
) -> None:
    body = b'{"query": "q", "filter": %s}' % filter_
    assert_error(client.post(path, content=body, headers=JSON), 400, "invalid_json", "body")


def test_non_finite_numbers_anywhere_are_invalid_json(client: httpx.Client) -> None:
    body = b'{"query": "q", "mode": "hybrid", "fusion": {"alpha": NaN}}'
    assert_error(client.post("/search", content=body, headers=JSON), 400, "invalid_json", "body")


# Lone surrogates: JSON's \u escapes can spell them; no UTF-8 text (nor jsonb) can hold them.


@pytest.mark.parametrize(
    ("metadata", "suffix"),
    [
        pytest.param({"x": "\ud800"}, ".x", id="value"),
        pytest.param({"x": ["ok", "a\udfffb"]}, ".x[1]", id="in-list"),
        pytest.param({"\ud800": 1}, '["\\ud800"]', id="key"),
        pytest.param({"k": {"\udc00x": True}}, '.k["\\udc00x"]', id="nested-key"),
    ],
)
@pytest.mark.parametrize(("path", "make", "where"), WRITES)
def test_lone_surrogates_in_metadata_are_rejected(
    client: httpx.Client,
    database_url: str,
    seeded: Any,
    path: str,
    make: Any,
    where: str,
    metadata: Any,
    suffix: str,
) -> None:
    response = client.post(path, content=raw_json(make(metadata)), headers=JSON)
    assert_error(response, 422, "invalid_input", where + suffix)
    assert state(database_url) == seeded


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"chunkId": "a\ud800", "text": "t"}, "chunkId"),
        ({"chunkId": "new", "text": "bad \udc00 text"}, "text"),
    ],
)
def test_lone_surrogates_in_other_fields_are_rejected(
    client: httpx.Client, database_url: str, seeded: Any, payload: dict[str, Any], field: str
) -> None:
    response = client.post("/embed", content=raw_json(payload), headers=JSON)
    assert_error(response, 422, "invalid_input", field)
    assert state(database_url) == seeded


@pytest.mark.parametrize("path", SEARCHES)
@pytest.mark.parametrize(
    ("filter_", "field"),
    [({"x": "\ud800"}, "filter.x"), ({"\ud800": 1}, 'filter["\\ud800"]')],
    ids=["value", "key"],
)
def test_lone_surrogates_in_filters_are_rejected(
    client: httpx.Client, seeded: Any, path: str, filter_: dict[str, Any], field: str
) -> None:
    response = client.post(path, content=raw_json({"query": "q", "filter": filter_}), headers=JSON)
    assert_error(response, 422, "invalid_input", field)


def test_lone_surrogates_in_openai_input_are_rejected(client: httpx.Client) -> None:
    payload = {"model": "all-MiniLM-L6-v2", "input": ["fine", "x\ud800"]}
    response = client.post("/v1/embeddings", content=raw_json(payload), headers=JSON)
    assert_error(response, 422, "invalid_input", "input[1]")


def test_surrogate_pairs_are_characters_and_round_trip(client: httpx.Client) -> None:
    # json.dumps escapes an emoji as a pair; the pair is one valid character.
    payload = {"chunkId": "emoji", "text": "smile \U0001f600", "metadata": {"e": "\U0001f600"}}
    response = client.post("/embed", content=raw_json(payload), headers=JSON)
    assert response.status_code == 200, response.text
    stored = client.get("/chunks/emoji").json()
    assert stored["text"] == "smile \U0001f600" and stored["metadata"] == {"e": "\U0001f600"}


# Depth.


@pytest.mark.parametrize("depth", [DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_JSON_DEPTH - 1])
def test_metadata_at_the_depth_limit_is_stored(client: httpx.Client, depth: int) -> None:
    response = client.post("/embed", json=embed(nested(depth)))  # the metadata object is level 1
    assert response.status_code == 200, response.text
    assert client.get("/chunks/new").json()["metadata"] == nested(depth)


@pytest.mark.parametrize("depth", [DEFAULT_MAX_JSON_DEPTH + 1, 500])
@pytest.mark.parametrize(("path", "make", "where"), WRITES)
def test_metadata_nested_too_deep_is_rejected(
    client: httpx.Client,
    database_url: str,
    seeded: Any,
    path: str,
    make: Any,
    where: str,
    depth: int,
) -> None:
    response = client.post(path, json=make(nested(depth)))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == where + ".a" * 32, error
    assert "deeper than 32" in error["message"]
    assert state(database_url) == seeded


def test_metadata_lists_count_as_levels(
    client: httpx.Client, database_url: str, seeded: Any
) -> None:
    value: Any = 1
    for _ in range(DEFAULT_MAX_JSON_DEPTH):
        value = [value]
    response = client.post("/embed", json=embed({"x": value}))  # 33 levels with the object
    assert_error(response, 422, "invalid_input", "metadata.x" + "[0]" * 31)
    assert state(database_url) == seeded


@pytest.mark.parametrize("path", SEARCHES)
@pytest.mark.parametrize("levels", [16, 300])
def test_filters_nested_too_deep_are_rejected(
    client: httpx.Client, seeded: Any, path: str, levels: int
) -> None:
    response = client.post(path, json={"query": "q", "filter": nested_and(levels)})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"].startswith("filter.$and[0]")
    assert "deeper than 32" in error["message"]


@pytest.mark.parametrize("path", SEARCHES)
def test_filters_within_the_depth_limit_work(client: httpx.Client, seeded: Any, path: str) -> None:
    response = client.post(path, json={"query": "q", "filter": nested_and(15)})  # 31 levels
    assert response.status_code == 200, response.text


def test_bodies_too_deep_to_parse_are_invalid_json(
    client: httpx.Client, database_url: str, seeded: Any
) -> None:
    body = (
        b'{"chunkId": "new", "text": "t", "metadata": {"a": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}"
    )
    assert_error(client.post("/embed", content=body, headers=JSON), 400, "invalid_json", "body")
    assert state(database_url) == seeded


# Metadata size: its compact JSON in UTF-8 bytes.


def sized(size: int, char: str = "a") -> dict[str, str]:
    """Metadata whose compact JSON ({"x":"..."}) is `size` bytes."""
    return {"x": char * ((size - 8) // len(char.encode()))}


@pytest.mark.parametrize(("path", "make", "where"), WRITES)
def test_metadata_over_the_size_limit_is_rejected(
    client: httpx.Client, database_url: str, seeded: Any, path: str, make: Any, where: str
) -> None:
    response = client.post(path, json=make(sized(DEFAULT_MAX_METADATA_BYTES + 1)))
    assert_error(response, 413, "payload_too_large", where)
    assert state(database_url) == seeded


def test_metadata_of_a_megabyte_is_rejected(
    client: httpx.Client, database_url: str, seeded: Any
) -> None:
    response = client.post("/embed", json=embed({"x": "v" * 2**20}))
    assert_error(response, 413, "payload_too_large", "metadata")
    assert state(database_url) == seeded


def test_metadata_size_is_counted_in_utf8_bytes(
    client: httpx.Client, database_url: str, seeded: Any
) -> None:
    metadata = sized(DEFAULT_MAX_METADATA_BYTES + 2, "\u00e9")  # fewer characters than the limit
    assert len(json.dumps(metadata, ensure_ascii=False)) < DEFAULT_MAX_METADATA_BYTES
    assert_error(client.post("/embed", json=embed(metadata)), 413, "payload_too_large", "metadata")
    assert state(database_url) == seeded


def test_metadata_at_the_size_limit_is_stored(client: httpx.Client) -> None:
    metadata = sized(DEFAULT_MAX_METADATA_BYTES)
    assert len(json.dumps(metadata, separators=(",", ":"))) == DEFAULT_MAX_METADATA_BYTES
    assert client.post("/embed", json=embed(metadata)).status_code == 200
    assert client.get("/chunks/new").json()["metadata"] == metadata


# Request body size, enforced while the body is read.

SMALL_BODY = 4096


@pytest.fixture
def small(database_url: str, tmp_path: Path, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path / "small", max_body_bytes=SMALL_BODY
    )
    with live_server(create_app(settings, embedder=local_embedder)) as server:
        yield server


def padded(size: int) -> bytes:
    """An /embed body of exactly `size` bytes."""
    head = b'{"chunkId": "big", "text": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_body_over_the_limit_with_content_length_is_413(
    small: LiveServer, database_url: str
) -> None:
    with httpx.Client(base_url=small.url, timeout=30) as http:
        before = state(database_url)
        response = http.post("/embed", content=padded(SMALL_BODY + 1), headers=JSON)
        assert_error(response, 413, "payload_too_large", "body")
        assert state(database_url) == before
        assert http.post("/embed", content=padded(SMALL_BODY), headers=JSON).status_code == 200


def test_chunked_body_over_the_limit_is_413(small: LiveServer, database_url: str) -> None:
    body = padded(SMALL_BODY + 100)

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield body[:3000]
        yield body[3000:]

    with httpx.Client(base_url=small.url, timeout=30) as http:
        before = state(database_url)
        response = http.post("/embed", content=chunks(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large", "body")
        assert state(database_url) == before


def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: LiveServer,
) -> None:
    # Headers only: the answer must come without waiting for (or reading) 100 MB.
    request = (
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert json.loads(payload)["error"]["code"] == "payload_too_large"


# Strict types.


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "q", "limit": "5"}, "limit"),
        ({"query": "q", "limit": True}, "limit"),
        ({"query": "q", "limit": 5.0}, "limit"),
        ({"query": 5}, "query"),
        ({"query": "q", "collection": 1}, "collection"),
    ],
)
@pytest.mark.parametrize("path", SEARCHES)
def test_search_fields_are_not_coerced(
    client: httpx.Client, path: str, payload: dict[str, Any], field: str
) -> None:
    assert_error(client.post(path, json=payload), 422, "invalid_input", field)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "q", "exact": "true"}, "exact"),
        ({"query": "q", "exact": 1}, "exact"),
        ({"query": "q", "efSearch": "40"}, "efSearch"),
        ({"query": "q", "mode": "hybrid", "fusion": {"k": "60"}}, "fusion.k"),
        ({"query": "q", "mmr": {"fetchK": "20"}}, "mmr.fetchK"),
    ],
)
def test_search_options_are_not_coerced(
    client: httpx.Client, payload: dict[str, Any], field: str
) -> None:
    assert_error(client.post("/search", json=payload), 422, "invalid_input", field)


def test_enums_as_strings_and_ints_as_floats_still_work(client: httpx.Client, seeded: Any) -> None:
    payload = {
        "query": "q",
        "mode": "hybrid",
        "distance": "l2",
        "fusion": {"method": "convex", "alpha": 1},
        "mmr": {"lambda": 0, "fetchK": 10},
    }
    response = client.post("/search", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "hybrid"
    assert (
        client.post(
            "/search/pgvector", json={"query": "q", "distance": "inner_product"}
        ).status_code
        == 200
    )
    created = client.post(
        "/collections",
        json={"name": "strict", "distance": "l2", "storage": "halfvec", "index": {"type": "hnsw"}},
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/embed", {"chunkId": 5, "text": "t"}, "chunkId"),
        ("/embed", {"chunkId": "new", "text": 5}, "text"),
        ("/embed/batch", {"items": [{"chunkId": "new", "text": True}]}, "items[0].text"),
        (
            "/documents",
            {"documentId": "d", "text": "t", "chunking": {"maxTokens": "9"}},
            "chunking.maxTokens",
        ),
        ("/collections", {"name": "c1", "dimensions": "384"}, "dimensions"),
        ("/collections", {"name": "c1", "normalize": "false"}, "normalize"),
        ("/collections", {"name": "c1", "index": {"m": 16.0}}, "index.m"),
    ],
)
def test_write_fields_are_not_coerced(
    client: httpx.Client,
    database_url: str,
    seeded: Any,
    path: str,
    payload: dict[str, Any],
    field: str,
) -> None:
    assert_error(client.post(path, json=payload), 422, "invalid_input", field)
    assert state(database_url) == seeded


def test_openai_fields_are_not_coerced(client: httpx.Client) -> None:
    payload = {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": "64"}
    assert_error(client.post("/v1/embeddings", json=payload), 422, "invalid_input", "dimensions")


def test_query_parameters_are_still_parsed(client: httpx.Client, seeded: Any) -> None:
    response = client.get("/collections/default/index", params={"sample": "5", "k": "3"})
    assert response.status_code == 200, response.text


# Unknown fields.


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/search/pgvector", {"query": "q", "distnce": "l2"}, "distnce"),
        ("/search", {"query": "q", "mode": "hybrid", "fusion": {"methd": "rrf"}}, "fusion.methd"),
        ("/search", {"query": "q", "mmr": {"lambda": 0.5, "fetch_k": 5}}, "mmr.fetch_k"),
        ("/embed", {"chunkId": "new", "text": "t", "meta": {}}, "meta"),
        ("/embed/batch", {"items": [{"chunkId": "new", "text": "t", "tags": []}]}, "items[0].tags"),
        ("/documents", {"documentId": "d", "text": "t", "chunking": {"size": 9}}, "chunking.size"),
        ("/collections", {"name": "c1", "model": "x"}, "model"),
        ("/collections", {"name": "c1", "index": {"ef_construction": 9}}, "index.ef_construction"),
        ("/collections/default/index", {"type": "hnsw", "lists_": 4}, "lists_"),
        ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "x", "truncate": 1}, "truncate"),
    ],
)
def test_unknown_fields_are_named(
    client: httpx.Client,
    database_url: str,
    seeded: Any,
    path: str,
    payload: dict[str, Any],
    field: str,
) -> None:
    response = client.post(path, json=payload)
    assert_error(response, 422, "invalid_input", field)
    assert f"unknown field '{field}'" in response.json()["error"]["message"]
    assert state(database_url) == seeded


def test_official_openai_client_sends_only_known_fields(server: LiveServer) -> None:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
        # Every argument embeddings.create takes; base64 (asked for) comes back as sent.
        response = sdk.embeddings.create(
            model="all-MiniLM-L6-v2",
            input=["a", "b"],
            dimensions=64,
            encoding_format="float",
            user="someone",
        )
        assert len(response.data) == 2 and len(response.data[0].embedding) == 64
        encoded = sdk.embeddings.create(
            model="all-MiniLM-L6-v2", input="a", dimensions=64, encoding_format="base64"
        )
        assert len(base64.b64decode(str(encoded.data[0].embedding))) == 64 * 4
        # The SDK's defaults (it sends encoding_format base64 and decodes it itself).
        assert (
            len(sdk.embeddings.create(model="all-MiniLM-L6-v2", input="a").data[0].embedding) == 384
        )
        with pytest.raises(openai.UnprocessableEntityError) as info:
            sdk.embeddings.create(model="all-MiniLM-L6-v2", input="a", extra_body={"truncate": 1})
        assert "unknown field 'truncate'" in str(info.value)


# 405 and Allow.


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/embed", {"POST"}),
        ("DELETE", "/search", {"POST"}),
        ("POST", "/chunks/x", {"GET", "DELETE"}),
        ("PUT", "/collections/default", {"GET", "PATCH", "DELETE"}),
        ("PUT", "/collections", {"GET", "POST"}),
    ],
)
def test_method_not_allowed_lists_the_allowed_methods(
    client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert_error(response, 405, "method_not_allowed", None)
    assert set(response.headers["allow"].split(", ")) == allowed
    for other in allowed - {"GET"}:  # each one listed is served (GET needs no path change)
        assert client.request(other, path).status_code != 405


# Unreadable bodies.

UNREADABLE = [
    pytest.param(b"not json", id="text"),
    pytest.param(b'{"chunkId": "new",', id="truncated"),
    pytest.param(b"", id="empty"),
    pytest.param(b"   ", id="whitespace"),
    pytest.param(b'{"chunkId": "new", "text": "\xff\xfe"}', id="bad-utf8"),
    pytest.param(b'{"chunkId": "new", "text": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
    pytest.param(
        b'{"chunkId": "new", "text": "t", "metadata": {"n": ' + b"9" * 5000 + b"}}",
        id="int-5000-digits",
    ),
    pytest.param(b'{"chunkId": "new", "text": "t"} trailing', id="trailing-garbage"),
]


@pytest.mark.parametrize("raw", UNREADABLE)
@pytest.mark.parametrize("path", ["/embed", "/documents", "/search/pgvector", "/v1/embeddings"])
def test_unreadable_bodies_are_invalid_json(
    client: httpx.Client, database_url: str, seeded: Any, path: str, raw: bytes
) -> None:
    assert_error(client.post(path, content=raw, headers=JSON), 400, "invalid_json", "body")
    assert state(database_url) == seeded


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {}, {"content-type": "application/x-www-form-urlencoded"}],
)
@pytest.mark.parametrize("path", ["/embed", "/search/pgvector"])
def test_bodies_that_are_not_declared_json_are_415(
    client: httpx.Client, database_url: str, seeded: Any, path: str, headers: dict[str, str]
) -> None:
    body = json.dumps({"chunkId": "new", "text": "t", "query": "q"}).encode()
    response = client.post(path, content=body, headers=headers)
    assert_error(response, 415, "unsupported_media_type", "body")
    assert state(database_url) == seeded


def test_json_with_a_bom_and_a_json_subtype_is_read(client: httpx.Client) -> None:
    body = b"\xef\xbb\xbf" + json.dumps({"query": "q"}).encode()
    response = client.post(
        "/search/pgvector", content=body, headers={"content-type": "application/merge+json"}
    )
    assert response.status_code == 200, response.text


# The trailing-slash redirect.


def test_trailing_slash_redirect_is_relative(client: httpx.Client, seeded: Any) -> None:
    response = client.post(
        "/search/pgvector/?collection=default",
        json={"query": "q"},
        headers={"host": "evil.example"},
    )
    assert response.status_code == 307, response.text
    assert response.headers["location"] == "/search/pgvector?collection=default"
    followed = client.post(response.headers["location"], json={"query": "q"})
    assert followed.status_code == 200, followed.text


def test_missing_trailing_slash_redirect_is_relative_too(client: httpx.Client) -> None:
    response = client.get("/healthz/", headers={"host": "evil.example", "x-forwarded-host": "evil"})
    assert response.status_code == 307
    assert response.headers["location"] == "/healthz"


def test_redirect_location_is_percent_encoded(client: httpx.Client) -> None:
    response = client.get("/collections/a%20b%0d%0aSet-Cookie:%20x/")
    assert response.status_code == 307
    assert response.headers["location"] == "/collections/a%20b%0D%0ASet-Cookie%3A%20x"
    assert "set-cookie" not in response.headers


def test_paths_matching_nothing_either_way_are_404(client: httpx.Client) -> None:
    assert_error(client.get("/nope/"), 404, "not_found", None)


# Collection names.


@pytest.mark.parametrize("name", ["nlcoll\n", "nlcoll\r\n", "\nnlcoll", "nl coll"])
def test_collection_names_with_newlines_are_rejected(
    client: httpx.Client, database_url: str, seeded: Any, name: str
) -> None:
    assert_error(client.post("/collections", json={"name": name}), 422, "invalid_input", "name")
    assert state(database_url) == seeded
    assert not rows(database_url, "SELECT 1 FROM pg_class WHERE relname LIKE 'nl%'")


def test_every_route_with_a_body_reads_it_as_strict_json(tmp_path: Path) -> None:
    from fastapi.routing import APIRoute, iter_route_contexts

    from embedsearch.api.limits import JsonRoute

    app = create_app(Settings(database_url="postgresql://unused/x", data_dir=tmp_path))
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    with_body = [r for r in routes if isinstance(r, APIRoute) and r.body_field is not None]
    assert len(with_body) >= 8
    assert [r.path for r in with_body if not isinstance(r, JsonRoute)] == []


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        (nested_and(300), "filter" + ".$and[0]" * 16),
        ({"x": float("nan")}, "filter.x"),
        ({"y": {"$gt": float("inf")}}, "filter.y.$gt"),
        ({"x": {"$in": [1, float("-inf")]}}, "filter.x.$in"),
        ({"x": "\ud800"}, "filter.x"),
        ({"lang\n": "en"}, 'filter["lang\\n"]'),
    ],
)
def test_the_filter_compiler_checks_what_the_api_checks_before(
    filter_: dict[str, Any], field: str
) -> None:
    # The CLI and library reach it without the API's checks.
    from embedsearch.core.errors import InvalidInput
    from embedsearch.store.filters import compile_filter

    with pytest.raises(InvalidInput) as info:
        compile_filter(filter_)
    assert info.value.field == field
