"""A handle on one collection's chunks: writes, reads and search, bound to its table and layout.

Resolved once from the registry (`Store.collection(record)`), so nothing downstream rebuilds a
table name or passes one around. Two handles on the same table compare equal (group commit
keys its queues by handle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg.types.json import Jsonb

from embedsearch.core.constants import DEFAULT_TEXT_CONFIG, HNSW_MAX_EF_SEARCH
from embedsearch.core.distance import Distance
from embedsearch.core.errors import InvalidInput
from embedsearch.core.vector_index import Storage
from embedsearch.store.bm25 import Bm25, Compactions
from embedsearch.store.bm25_changes import Bm25Changes
from embedsearch.store.citus import shard_key
from embedsearch.store.database import Connection, Database, Statement
from embedsearch.store.documents import DocumentStore
from embedsearch.store.filters import compile_filter
from embedsearch.store.records import ChunkRecord, ChunkRows, SearchHit, TableLayout
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import chunks as sql
from embedsearch.store.sql import documents as documents_sql
from embedsearch.store.sql import search as search_sql

# Rows at or below this go through INSERTs; above, through binary COPY into a staging table.
_COPY_THRESHOLD = 8


@dataclass(frozen=True)
class CollectionHandle:
    database: Database
    table: str
    name: str = field(compare=False)
    layout: TableLayout = field(compare=False)
    ef_search: int = field(compare=False)  # HNSW candidate list when a request sets none
    text_config: str = field(compare=False, default=DEFAULT_TEXT_CONFIG)
    compactions: Compactions = field(compare=False, default_factory=Compactions)

    @property
    def documents(self) -> DocumentStore:
        return DocumentStore(self)

    @property
    def bm25(self) -> Bm25:
        """Lexical search ranked by BM25."""
        return Bm25(self)

    # Writes.

    async def upsert(self, rows: ChunkRows) -> list[bool]:
        """Insert or update rows in one transaction. Returns, per row, True if it was new."""
        if len(set(rows.chunk_ids)) != len(rows.chunk_ids):
            raise InvalidInput("the same chunkId appears twice in one request", field="chunkId")
        returned = await self.database.transaction(lambda conn: self.write_rows(conn, rows))
        await self.compactions.wrote(self)
        inserted = {chunk_id: bool(flag) for chunk_id, flag in returned}
        return [inserted[chunk_id] for chunk_id in rows.chunk_ids]

    async def write_rows(self, conn: Connection, rows: ChunkRows) -> list[tuple[Any, ...]]:
        """Upsert rows inside the caller's transaction; returns (chunk_id, inserted) rows."""
        n, table, distributed = len(rows), self.table, self.layout.distributed
        vectors: Any = rows.vectors
        if self.layout.storage is Storage.HALFVEC:
            vectors = [HalfVector(v) for v in rows.vectors]
        columns: list[Sequence[Any]] = [
            rows.chunk_ids,
            vectors,
            [rows.model] * n,
            rows.contents,
            rows.content_hashes,
            [Jsonb(m) for m in (rows.metadata or [{}] * n)],
            rows.document_ids or [None] * n,
        ]
        if distributed:
            columns.append([shard_key(chunk_id) for chunk_id in rows.chunk_ids])
        # In chunk id order: concurrent writes of overlapping chunks then lock their rows in
        # the same order, and wait for one another instead of deadlocking.
        records = sorted(zip(*columns, strict=True), key=lambda record: record[0])
        if n <= _COPY_THRESHOLD:
            returned = []
            for record in records:
                cur = await conn.execute(sql.upsert_row(table, distributed=distributed), record)
                returned.extend(await cur.fetchall())
        else:
            await conn.execute(sql.create_staging(table))
            copy_into = sql.copy_into_staging(table, distributed=distributed)
            async with conn.cursor().copy(copy_into) as copy:
                copy.set_types(sql.copy_types(self.layout.storage, distributed=distributed))
                for record in records:
                    await copy.write_row(record)
            cur = await conn.execute(sql.upsert_from_staging(table, distributed=distributed))
            returned = await cur.fetchall()
        if not distributed:
            return returned
        # (chunk_id, inserted, old tsvector, old length, new tsvector, new length)
        changes = Bm25Changes().removed(r[2:4] for r in returned).added(r[4:6] for r in returned)
        await changes.record(conn, self.name)
        return [r[:2] for r in returned]

    async def delete_chunk(self, chunk_id: str) -> bool:
        distributed = self.layout.distributed

        async def delete(conn: Connection) -> bool:
            statement = sql.delete_chunk(self.table, distributed=distributed)
            row = await (await conn.execute(statement, (chunk_id,))).fetchone()
            if row is None:
                return False
            if distributed:
                await Bm25Changes().removed([row]).record(conn, self.name)
            if row[0] is not None:
                await conn.execute(documents_sql.DECREMENT_DOCUMENT_CHUNKS, (self.name, row[0]))
            return True

        deleted = await self.database.transaction(delete)
        if deleted:
            await self.compactions.wrote(self)
        return deleted

    # Reads.

    @retry_elsewhere
    async def count(self) -> int:
        async with self.database.reading() as conn:
            row = await (await conn.execute(sql.count_rows(self.table))).fetchone()
            return int(row[0]) if row else 0

    @retry_elsewhere
    async def get_chunk(self, chunk_id: str) -> ChunkRecord | None:
        async with self.database.reading() as conn:
            row = await (await conn.execute(sql.get_chunk(self.table), (chunk_id,))).fetchone()
        return ChunkRecord(*row) if row else None

    @retry_elsewhere
    async def vectors(self, chunk_ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors (float32 arrays, also from halfvec) by chunk id."""
        async with self.database.reading() as conn:
            cur = await conn.execute(sql.chunk_vectors(self.table), (list(chunk_ids),))
            return {
                r[0]: np.asarray(r[1].to_numpy(), dtype=np.float32) for r in await cur.fetchall()
            }

    # Search.

    @retry_elsewhere
    async def search(
        self,
        query: np.ndarray[Any, Any],
        *,
        limit: int,
        distance: Distance,
        filter_: dict[str, Any] | None = None,
        exact: bool = False,
        ef_search: int | None = None,
        probes: int | None = None,
        lexemes_of: str | None = None,
    ) -> list[SearchHit]:
        """Nearest chunks. `exact` scans every row (ground truth); `ef_search` sets HNSW's
        candidate list (never below `limit`: HNSW returns at most ef_search rows); `probes`
        sets the IVFFlat lists scanned. With `lexemes_of`, nothing is found if that text
        has no lexemes in the collection's text search configuration."""
        condition, params = compile_filter(filter_)
        params |= {"query": query, "limit": limit}
        if lexemes_of is not None:
            condition = search_sql.and_has_lexemes(condition)
            params |= {"config": self.text_config, "text": lexemes_of}
        layout = self.layout
        statement = search_sql.search(
            self.table,
            distance,
            condition,
            order_by=layout.order_by(distance, exact=exact),
            storage=layout.storage,
        )
        settings = self._scan_settings(
            limit, ef_search or self.ef_search, probes, filter_ is not None, exact
        )
        async with self.database.reading(settings) as conn:
            rows = await (await conn.execute(statement, params)).fetchall()
        hits = [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]
        # Ordered through the index; for unit vectors every metric agrees, and a stable sort
        # keeps ties in index order while guaranteeing smallest score first.
        hits.sort(key=lambda hit: hit.score)
        return hits

    def _scan_settings(
        self, limit: int, ef_search: int, probes: int | None, filtered: bool, exact: bool
    ) -> list[Statement]:
        """Transaction-local index settings: exact scans, HNSW's candidate list, IVFFlat's
        lists to scan, and iterative scans so a filter still yields `limit` rows. Empty for a
        plain search with the defaults (the session has them): one round trip then."""
        values = self._scan_values(limit, ef_search, probes, filtered, exact)
        if self.layout.distributed:
            # As SET LOCAL statements, every value every time: Citus passes those (not
            # set_config calls) on to the workers' transactions, whose sessions lack our
            # defaults.
            return [(search_sql.set_local_on_workers(values), None)]
        if values.get(search_sql.EF_SEARCH) == str(self.ef_search):
            del values[search_sql.EF_SEARCH]  # the pooled sessions start at the default
        if not values:
            return []
        return [
            (search_sql.set_config_local(len(values)), [x for kv in values.items() for x in kv])
        ]

    def _scan_values(
        self, limit: int, ef_search: int, probes: int | None, filtered: bool, exact: bool
    ) -> dict[str, str]:
        if exact:
            return dict(search_sql.NO_INDEX_SCANS)
        values = {search_sql.EF_SEARCH: str(min(max(limit, ef_search), HNSW_MAX_EF_SEARCH))}
        probes = probes or self.layout.probes
        if probes is not None:
            values[search_sql.PROBES] = str(probes)
        if filtered:
            values |= search_sql.ITERATIVE_SCAN
        return values
