"""The one place that issues DDL for collections: chunk tables and their ANN indexes.

A collection's table is created, dropped and indexed only through `Ddl`, so a deployment whose
tables need other DDL changes this class and nothing else. A sharded collection's table is
hash-distributed by Citus (`layout.shards`): the same columns and indexes (each shard gets its
own), a shard key in the primary key, and no BM25 triggers (the write path keeps its
statistics, see store/bm25_changes.py).
"""

from __future__ import annotations

import logging

from embedsearch.core.vector_index import IndexSpec, IndexType
from embedsearch.store.database import Connection
from embedsearch.store.records import CitusInfo, CollectionOptions, TableLayout
from embedsearch.store.sql import bm25 as bm25_sql
from embedsearch.store.sql import citus as citus_sql
from embedsearch.store.sql import ddl as sql

log = logging.getLogger(__name__)


def index_name(table: str, index_type: IndexType) -> str:
    return f"{table}_embedding_{index_type.value}"


class Ddl:
    async def create_chunk_table(
        self,
        conn: Connection,
        collection: str,
        layout: TableLayout,
        dimensions: int,
        options: CollectionOptions,
    ) -> None:
        """The table (or complete one made by other code, e.g. the brief's script), its text,
        metadata and document indexes, its BM25 triggers, and the HNSW index when asked for
        and possible. Rows already there (the brief's table) are counted for BM25."""
        table, storage, spec, config = (
            layout.table,
            layout.storage,
            options.index,
            options.text_config,
        )
        if layout.distributed:
            await conn.execute(citus_sql.DISTRIBUTE_LENGTH_FUNCTION)
        await conn.execute(
            sql.create_chunk_table(
                table, dimensions, storage, config, distributed=layout.distributed
            )
        )
        await conn.execute(sql.complete_chunk_table(table, config))
        if layout.distributed:  # new and empty: nothing to count or post
            await conn.execute(citus_sql.DISTRIBUTE_TABLE, (table, layout.shards))
        else:
            await conn.execute(bm25_sql.create_postings_table(table))
            await conn.execute(bm25_sql.create_triggers(table, collection, config))
            await conn.execute(bm25_sql.count_all(table), {"collection": collection})
            statement = bm25_sql.backfill_postings_batch(table)
            await conn.execute(statement, {"after": "", "size": None})
        if spec.type is IndexType.HNSW and dimensions <= storage.max_indexed_dimensions:
            await self.create_vector_index(conn, index_name(table, spec.type), layout, spec)
        elif spec.type is IndexType.HNSW:
            log.warning("%d dimensions: too many for an index on %s", dimensions, storage.value)

    async def citus(self, conn: Connection) -> CitusInfo | None:
        """The Citus cluster behind this database; None when it is not a Citus coordinator."""
        row = await (await conn.execute(citus_sql.CITUS_VERSION)).fetchone()
        if row is None:
            return None
        workers = await (await conn.execute(citus_sql.ACTIVE_WORKERS)).fetchone()
        return CitusInfo(int(workers[0]) if workers else 0, int(row[1]))

    async def drop_chunk_table(self, conn: Connection, table: str) -> None:
        await conn.execute(sql.drop_table(table))
        await conn.execute(bm25_sql.drop_postings(table))

    async def create_vector_index(
        self,
        conn: Connection,
        name: str,
        layout: TableLayout,
        spec: IndexSpec,
        *,
        concurrently: bool = False,
    ) -> None:
        opclass = layout.storage.opclass(layout.index_distance)
        await conn.execute(
            sql.create_vector_index(name, layout.table, opclass, spec, concurrently=concurrently)
        )

    async def drop_index(self, conn: Connection, name: str, *, concurrently: bool = False) -> None:
        await conn.execute(sql.drop_index(name, concurrently=concurrently))

    async def rename_index(self, conn: Connection, name: str, new_name: str) -> None:
        await conn.execute(sql.rename_index(name, new_name))
