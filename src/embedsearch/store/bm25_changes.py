"""BM25 statistics of a collection sharded on Citus, kept by the write path itself.

A plain chunk table keeps its statistics by statement triggers with transition tables. On a
distributed table those would run on the workers' shards, where the statistics are not: they
stay on the coordinator (embedsearch_bm25_stats/_deltas, plain tables there, read by every
lexical search), one global set for all shards. So each write to a sharded table returns what
it replaced and wrote (its rows are locked meanwhile: the old side is exactly the version it
replaced, even with concurrent writers) and appends the deltas in the same transaction: they
commit, or roll back, with the chunks. Compaction and reads are the same as for plain tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from embedsearch.store.database import Connection
from embedsearch.store.sql import bm25 as sql


class Bm25Changes:
    """Chunks removed and added by one write, as (tsvector text, length) pairs."""

    def __init__(self) -> None:
        self._tsvectors: list[str] = []
        self._lengths: list[int] = []
        self._signs: list[int] = []

    def removed(self, rows: Iterable[Sequence[Any]]) -> Bm25Changes:
        """Rows ending in (content_tsv, bm25_length) of chunks deleted or overwritten; rows
        without a tsvector (an upsert that inserted) are skipped."""
        return self._add(rows, -1)

    def added(self, rows: Iterable[Sequence[Any]]) -> Bm25Changes:
        return self._add(rows, 1)

    def _add(self, rows: Iterable[Sequence[Any]], sign: int) -> Bm25Changes:
        for *_, tsvector, length in rows:
            if tsvector is not None:
                self._tsvectors.append(tsvector)
                self._lengths.append(int(length))
                self._signs.append(sign)
        return self

    async def record(self, conn: Connection, collection: str) -> None:
        """Append the deltas inside the caller's transaction (nothing for no change)."""
        if not self._signs:
            return
        params = {
            "collection": collection,
            "tsvectors": self._tsvectors,
            "lengths": self._lengths,
            "signs": self._signs,
        }
        await conn.execute(sql.RECORD_CHANGES, params)
