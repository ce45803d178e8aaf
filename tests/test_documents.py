"""Documents: token-aware chunks, atomic replacement, unchanged chunks not re-embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.pdfs import write_blank_pdf, write_text_pdf
from tests.servers import rows

PARAGRAPHS = [
    "Photosynthesis converts light energy into chemical energy in chloroplasts. " * 6,
    "The Krebs cycle oxidizes acetyl-CoA to carbon dioxide in the mitochondria. " * 6,
    "Transformers use self-attention to relate every token to every other token. " * 6,
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria. " * 6,
]
TEXT = "\n\n".join(PARAGRAPHS)


def post(client: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"documentId": "notes/biology.md", "text": TEXT, "chunking": {"maxTokens": 80}} | body
    return client.post("/documents", json=payload)


def test_document_is_chunked_and_stored(client: httpx.Client, database_url: str) -> None:
    response = post(client, metadata={"source": "notes", "year": 2024})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "new" and body["collection"] == "default"
    n = len(body["chunkIds"])
    assert n >= 4 and body["chunkIds"] == [f"notes/biology.md#{i}" for i in range(n)]
    assert body["embedded"] == n
    stored = rows(
        database_url, "SELECT chunk_id, document_id, metadata, content FROM chunk_embeddings"
    )
    assert len(stored) == n
    assert all(
        r[1] == "notes/biology.md" and r[2] == {"source": "notes", "year": 2024} for r in stored
    )
    document = client.get("/documents/notes/biology.md").json()
    assert document["chunkIds"] == body["chunkIds"] and document["chunkCount"] == n
    chunk = client.get("/chunks/" + quote("notes/biology.md#1", safe="")).json()
    assert chunk["documentId"] == "notes/biology.md" and chunk["model"] == "all-MiniLM-L6-v2"
    assert chunk["text"] and chunk["dimensions"] == 384
    hit = client.post("/search/pgvector", json={"query": "sourdough yeast", "limit": 1}).json()[
        "results"
    ][0]
    assert hit["documentId"] == "notes/biology.md" and "Sourdough" in hit["text"]


def test_reposting_replaces_atomically_and_reembeds_only_changes(
    client: httpx.Client, database_url: str
) -> None:
    first = post(client).json()
    again = post(client).json()
    assert again["status"] == "unchanged" and again["embedded"] == 0
    before = dict(rows(database_url, "SELECT chunk_id, updated_at FROM chunk_embeddings"))

    changed = PARAGRAPHS.copy()
    changed[3] = "Rye bread needs a stronger sour starter and a long, slow proof. " * 6
    updated = post(client, text="\n\n".join(changed)).json()
    assert updated["status"] == "updated"
    assert 0 < updated["embedded"] < len(updated["chunkIds"])
    after = dict(rows(database_url, "SELECT chunk_id, updated_at FROM chunk_embeddings"))
    unchanged = [cid for cid in first["chunkIds"] if after.get(cid) == before[cid]]
    assert len(unchanged) >= len(first["chunkIds"]) - updated["embedded"] - 1

    shorter = post(client, text=PARAGRAPHS[0]).json()
    assert len(shorter["chunkIds"]) < len(first["chunkIds"])
    stored_ids = sorted(r[0] for r in rows(database_url, "SELECT chunk_id FROM chunk_embeddings"))
    assert stored_ids == sorted(shorter["chunkIds"])  # no orphans left behind
    assert client.get("/documents/notes/biology.md").json()["chunkCount"] == len(
        shorter["chunkIds"]
    )


def test_metadata_change_alone_updates_chunks_without_embedding(
    client: httpx.Client, database_url: str
) -> None:
    post(client, metadata={"v": 1})
    response = post(client, metadata={"v": 2}).json()
    assert response["status"] == "updated" and response["embedded"] == 0
    assert {r[0]["v"] for r in rows(database_url, "SELECT metadata FROM chunk_embeddings")} == {2}


def test_delete_document_and_chunk(client: httpx.Client, database_url: str) -> None:
    ids = post(client).json()["chunkIds"]
    assert client.delete("/chunks/" + quote(ids[0], safe="")).status_code == 204
    assert client.get("/chunks/" + quote(ids[0], safe="")).status_code == 404
    assert client.get("/documents/notes/biology.md").json()["chunkCount"] == len(ids) - 1
    assert client.delete("/documents/notes/biology.md").status_code == 204
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]
    assert client.get("/documents/notes/biology.md").status_code == 404
    assert client.delete("/documents/notes/biology.md").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"text": ""}, 422, "text"),
        ({"text": "   "}, 422, "text"),
        ({"documentId": ""}, 422, "documentId"),
        ({"documentId": "x" * 201}, 422, "documentId"),
        ({"collection": "Nope!"}, 422, "collection"),
        ({"collection": "missing"}, 404, "collection"),
        ({"chunking": {"maxTokens": 100000}}, 422, "chunking.maxTokens"),
        ({"chunking": {"maxTokens": 50, "overlap": 50}}, 422, "chunking.overlap"),
        ({"metadata": "x"}, 422, "metadata"),
    ],
)
def test_bad_documents(
    client: httpx.Client, database_url: str, body: dict[str, Any], status: int, field: str
) -> None:
    response = post(client, **body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM embedsearch_documents") == [(0,)]


def test_the_text_of_a_pdf_is_read_and_nothing_is_stored(
    client: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    """POST /text/pdf: the page's way to store PDFs (it stores the text as a document next)."""
    pdf, blank = tmp_path / "a.pdf", tmp_path / "blank.pdf"
    write_text_pdf(pdf, ["Tidal energy from the sea.", "Second line."])
    write_blank_pdf(blank)
    headers = {"content-type": "application/pdf"}
    read = client.post("/text/pdf", content=pdf.read_bytes(), headers=headers)
    assert read.status_code == 200, read.text
    assert "Tidal energy from the sea." in read.json()["text"]
    for body, kind, status in (
        (b"%PDF-1.4 not really", "application/pdf", 422),
        (blank.read_bytes(), "application/pdf", 422),
        (pdf.read_bytes(), "application/json", 415),
        (b"", "application/pdf", 422),
    ):
        refused = client.post("/text/pdf", content=body, headers={"content-type": kind})
        assert refused.status_code == status, refused.text
        assert refused.json()["error"]["field"] == "body"
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]
