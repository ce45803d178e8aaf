# ruff: noqa: RUF001  (the ambiguous-looking characters are the point)
"""Unicode round-trips: emoji (ZWJ sequences, skin tones, flags, a variation selector), RTL
scripts (Arabic, Hebrew, with a bidi mark), combining marks, CJK and astral characters, in chunk
ids, texts and metadata keys and values.

Proves that each is stored and returned byte-identical (same code points, so the same UTF-8)
through /embed, GET /chunks/{id} (the id percent-encoded), /search/pgvector results (also
filtered on a Unicode value) and /documents, and as the database holds it; nothing is
normalized: "é" precomposed and "e" + U+0301 are two different ids. A 255-character id of
4-byte characters fits (the limit counts characters, not bytes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.servers import rows

SAMPLES = {
    "emoji": "👩🏽‍💻 codes; 👨‍👩‍👧‍👦 family; 🏳️‍🌈 flag; 👍🏿 thumbs; ❤️ heart; 🇯🇵 Japan",
    "arabic": "مرحبا بالعالم، هذا نص عربي",
    "hebrew": "\u200fשלום עולם, זהו טקסט בעברית",
    "combining": "cafe\u0301 nai\u0308ve Z\u0335\u0321a\u0336l\u0334g\u0337o",
    "precomposed": "caf\u00e9 na\u00efve",
    "cjk": "中文文本，日本語のテキスト，한국어 텍스트",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 𠜎𠜱",
}


def _chunk_id(name: str) -> str:
    return f"{name}:{SAMPLES[name][:12]}"


def _metadata(name: str) -> dict[str, Any]:
    value = SAMPLES[name]
    return {value[:8]: value, "ключ 🔑": [value, {"وسم": "תג"}], "sample": name, "value": value}


def _path(chunk_id: str) -> str:
    return "/chunks/" + quote(chunk_id, safe="")


@pytest.fixture
def stored(client: httpx.Client) -> dict[str, str]:
    """Every sample stored as a chunk; returns chunk id -> sample name."""
    ids = {}
    for name, text in SAMPLES.items():
        chunk_id = _chunk_id(name)
        response = client.post(
            "/embed", json={"chunkId": chunk_id, "text": text, "metadata": _metadata(name)}
        )
        assert response.status_code == 200, response.text
        assert response.json()["chunkId"] == chunk_id
        ids[chunk_id] = name
    return ids


def test_chunks_round_trip_byte_identical(
    client: httpx.Client, stored: dict[str, str], database_url: str
) -> None:
    assert len(stored) == len(SAMPLES)
    for chunk_id, name in stored.items():
        found = client.get(_path(chunk_id))
        assert found.status_code == 200, (chunk_id, found.text)
        body = found.json()
        assert body["chunkId"] == chunk_id
        assert body["text"] == SAMPLES[name]
        assert body["metadata"] == _metadata(name)
        assert body["text"].encode() == SAMPLES[name].encode()
    in_db = rows(database_url, "SELECT chunk_id, content, metadata FROM chunk_embeddings")
    assert {r[0]: (r[1], r[2]) for r in in_db} == {
        chunk_id: (SAMPLES[name], _metadata(name)) for chunk_id, name in stored.items()
    }


def test_search_results_carry_unicode_unchanged(
    client: httpx.Client, stored: dict[str, str]
) -> None:
    for chunk_id, name in stored.items():
        found = client.post(
            "/search/pgvector", json={"query": SAMPLES[name], "limit": len(SAMPLES)}
        )
        assert found.status_code == 200, found.text
        results = {r["chunkId"]: r for r in found.json()["results"]}
        assert set(results) == set(stored)
        assert results[chunk_id]["text"] == SAMPLES[name]
        assert results[chunk_id]["metadata"] == _metadata(name)
        # On a Unicode value (filter field names are ASCII by design: letters, digits, _, -).
        filtered = client.post(
            "/search/pgvector", json={"query": "anything", "filter": {"value": SAMPLES[name]}}
        )
        assert filtered.status_code == 200, filtered.text
        assert [r["chunkId"] for r in filtered.json()["results"]] == [chunk_id]


def test_unicode_ids_are_not_normalized(client: httpx.Client, stored: dict[str, str]) -> None:
    nfd, nfc = "e\u0301", "\u00e9"
    for chunk_id, text in ((nfd, "decomposed"), (nfc, "precomposed")):
        assert client.post("/embed", json={"chunkId": chunk_id, "text": text}).status_code == 200
    assert client.get(_path(nfd)).json()["text"] == "decomposed"
    assert client.get(_path(nfc)).json()["text"] == "precomposed"
    longest = "🙂" * 255  # 255 characters, 1020 bytes of UTF-8
    stored_long = client.post("/embed", json={"chunkId": longest, "text": "long id"})
    assert stored_long.status_code == 200, stored_long.text
    assert client.get(_path(longest)).json()["chunkId"] == longest
    assert client.post("/embed", json={"chunkId": longest + "🙂", "text": "x"}).status_code == 422


def test_documents_round_trip(client: httpx.Client, database_url: str) -> None:
    document_id = "דוח-报告-👩🏽‍💻-cafe\u0301"
    text = " ".join(SAMPLES.values())
    metadata = {"作者": "مؤلف", "🏷️": ["e\u0301", "\u00e9"]}
    put = client.post(
        "/documents", json={"documentId": document_id, "text": text, "metadata": metadata}
    )
    assert put.status_code == 200, put.text
    assert put.json()["documentId"] == document_id
    chunk_ids = put.json()["chunkIds"]
    assert chunk_ids == [f"{document_id}#0"]
    document = client.get("/documents/" + quote(document_id, safe=""))
    assert document.status_code == 200, document.text
    assert document.json()["documentId"] == document_id
    assert document.json()["metadata"] == metadata
    assert document.json()["chunkIds"] == chunk_ids
    chunk = client.get(_path(chunk_ids[0]))  # "#" must be percent-encoded too
    assert chunk.status_code == 200, chunk.text
    assert chunk.json()["text"] == text and chunk.json()["documentId"] == document_id
    found = client.post("/search/pgvector", json={"query": SAMPLES["cjk"], "limit": 1})
    assert found.json()["results"][0]["chunkId"] == chunk_ids[0]
    assert found.json()["results"][0]["text"] == text
    assert rows(database_url, "SELECT content FROM chunk_embeddings") == [(text,)]
    deleted = client.delete("/documents/" + quote(document_id, safe=""))
    assert deleted.status_code == 204
