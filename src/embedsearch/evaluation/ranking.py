"""From chunk hits to a document ranking: judgments are per document, hits are per chunk."""

from __future__ import annotations

from collections.abc import Iterable

from embedsearch.store import SearchHit


def document_of(hit: SearchHit) -> str:
    # Chunks written by the document pipeline carry their document id; a chunk stored on its
    # own falls back to the `docId#n` naming of documents.chunk_id.
    if hit.document_id:
        return hit.document_id
    head, sep, _ = hit.chunk_id.rpartition("#")
    return head if sep else hit.chunk_id


def documents(hits: Iterable[SearchHit]) -> list[str]:
    """Distinct documents, best first: a document ranks where its best chunk does."""
    return list(dict.fromkeys(document_of(hit) for hit in hits))
