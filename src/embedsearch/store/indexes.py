"""Index administration: build, swap, defer and inspect a collection's ANN index."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedsearch.core.errors import Conflict
from embedsearch.core.vector_index import IndexSpec, IndexType, build_memory_bytes
from embedsearch.store.database import Connection, Database
from embedsearch.store.ddl import Ddl, index_name
from embedsearch.store.records import CollectionRecord, IndexBuildProgress, VectorIndexState
from embedsearch.store.registry import Registry
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import indexes as sql


class IndexAdmin:
    def __init__(self, database: Database, ddl: Ddl, registry: Registry) -> None:
        self._db = database
        self._ddl = ddl
        self._registry = registry

    async def build(
        self,
        record: CollectionRecord,
        spec: IndexSpec,
        *,
        rows: int,
        probes: int | None,
        memory_cap_bytes: int,
    ) -> None:
        """Build `spec` beside the current index (CREATE INDEX CONCURRENTLY: searches and
        writes go on meanwhile), then swap it in. One build per collection at a time."""
        table, layout = record.table, record.layout
        building = f"{table}_vec_build"
        memory = build_memory_bytes(
            spec,
            rows=rows,
            dimensions=record.dimensions,
            storage=record.storage,
            cap_bytes=memory_cap_bytes,
        )
        # Session-level lock and CONCURRENTLY: a connection of its own, outside transactions.
        async with self._db.dedicated() as conn:
            locked = await (await conn.execute(sql.TRY_LOCK_INDEX_BUILD, (record.name,))).fetchone()
            if not (locked and locked[0]):
                raise Conflict(
                    f"an index build on collection {record.name!r} is already running",
                    field="name",
                )
            await conn.execute(sql.SET_MAINTENANCE_WORK_MEM, (f"{memory // 1024}kB",))
            await self._ddl.drop_index(conn, building, concurrently=True)  # a failed build's
            try:
                if spec.type is not IndexType.NONE:
                    await self._ddl.create_vector_index(
                        conn, building, layout, spec, concurrently=True
                    )
                async with conn.transaction():
                    for existing in await _vector_indexes(conn, record):
                        if existing.name != building:
                            await self._ddl.drop_index(conn, existing.name)
                    if spec.type is not IndexType.NONE:
                        await self._ddl.rename_index(conn, building, index_name(table, spec.type))
                    await self._registry.record_index_build(
                        conn,
                        record.name,
                        probes=probes,
                        rows=rows if spec.type is not IndexType.NONE else None,
                    )
            except BaseException:
                await self._ddl.drop_index(conn, building, concurrently=True)
                raise

    async def defer(self, record: CollectionRecord) -> bool:
        """Before a bulk load into an empty collection: drop its HNSW index and record it, so
        it is built once at the end (a build is several times cheaper than maintaining the
        graph insert by insert, and those inserts would compete with the model for the CPU).
        False, and nothing changed, if the table has rows, the index is not one plain valid
        HNSW index, or an index build is running."""
        async with self._db.writing() as conn:
            locked = await (
                await conn.execute(sql.TRY_LOCK_INDEX_BUILD_XACT, (record.name,))
            ).fetchone()
            empty = await (await conn.execute(sql.is_empty(record.table))).fetchone()
            indexes = await _vector_indexes(conn, record)
            if not (locked and locked[0] and empty and empty[0]) or len(indexes) != 1:
                return False
            (index,) = indexes
            if index.type is not IndexType.HNSW or not index.valid:
                return False
            spec = {"type": index.type.value} | index.options
            await self._registry.record_deferred_index(conn, record.name, spec)
            await self._ddl.drop_index(conn, index.name)
            return True

    async def rewrite(self, record: CollectionRecord) -> None:
        """Rewrite the collection's table (it is locked meanwhile: reads and writes wait)."""
        async with self._db.dedicated() as conn:
            await conn.execute(sql.rewrite_table(record.table))

    async def progress(self, record: CollectionRecord) -> IndexBuildProgress | None:
        async with self._db.reading(primary=True) as conn:  # builds run on the primary
            cur = await conn.execute(sql.INDEX_BUILD_PROGRESS, (record.table,))
            row = await cur.fetchone()
        return IndexBuildProgress(*row) if row else None

    @retry_elsewhere
    async def vector_indexes(self, record: CollectionRecord) -> list[VectorIndexState]:
        async with self._db.reading() as conn:
            return await _vector_indexes(conn, record)

    @retry_elsewhere
    async def shared_buffers_bytes(self) -> int:
        async with self._db.reading() as conn:
            row = await (await conn.execute(sql.SHARED_BUFFERS)).fetchone()
            return int(row[0]) if row else 0

    @retry_elsewhere
    async def table_size(self, record: CollectionRecord) -> int:
        async with self._db.reading() as conn:
            statement = sql.table_size(distributed=record.layout.distributed)
            row = await (await conn.execute(statement, (record.table,))).fetchone()
            return int(row[0] or 0) if row else 0

    @retry_elsewhere
    async def sample_vectors(self, record: CollectionRecord, n: int, rows: int) -> Any:
        """About `n` stored vectors picked at random (a block sample: cheap on big tables)."""
        percent = min(100.0, 100.0 * 3 * n / max(rows, 1))
        async with self._db.reading() as conn:
            cur = await conn.execute(sql.sample_vectors(record.table), (percent, n))
            found = [np.asarray(r[0].to_numpy(), np.float32) for r in await cur.fetchall()]
        return np.stack(found) if found else np.zeros((0, 0), np.float32)


async def _vector_indexes(conn: Connection, record: CollectionRecord) -> list[VectorIndexState]:
    statement = sql.vector_indexes(distributed=record.layout.distributed)
    rows = await (await conn.execute(statement, (record.table,))).fetchall()
    return [
        VectorIndexState(
            name,
            IndexType(method),
            opclass,
            {k: int(v) for k, _, v in (option.partition("=") for option in options)},
            int(size),
            bool(valid),
        )
        for name, method, opclass, options, size, valid in rows
    ]
