"""PostgreSQL + pgvector storage for chunks: schema, guarded start, upserts and search."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from embedsearch.distance import Distance
from embedsearch.errors import DatabaseUnavailable, InvalidInput, ModelMismatch
from embedsearch.store import sql
from embedsearch.store.records import ChunkRows, SearchHit

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
DEFAULT_TABLE = "chunk_embeddings"  # the brief's table
# Rows at or below this go through one INSERT; above, through binary COPY into a staging table.
_COPY_THRESHOLD = 8
_HNSW_DEFAULT_EF_SEARCH = 40
_HNSW_MAX_EF_SEARCH = 1000


@asynccontextmanager
async def _database_errors() -> AsyncIterator[None]:
    """Turn connection-level failures into DatabaseUnavailable (HTTP 503)."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class PgStore:
    """Owns a connection pool to one database and the chunk table of the default collection."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        table: str = DEFAULT_TABLE,
    ) -> None:
        self._conninfo = conninfo
        self._timeout_s = timeout_s
        self.table = table
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            configure=register_vector_async,
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, round(timeout_s))},
        )

    async def open(self, *, model: str, dimensions: int) -> None:
        """Create the schema if needed, refuse a table filled by another model, open the pool."""
        async with _database_errors():
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=max(1, round(self._timeout_s))
            )
            async with conn:
                await self._migrate(conn, model=model, dimensions=dimensions)
            await self._pool.open(wait=True, timeout=self._timeout_s)

    async def _migrate(
        self, conn: psycopg.AsyncConnection[Any], *, model: str, dimensions: int
    ) -> None:
        async with conn.transaction():
            await conn.execute(sql.LOCK_MIGRATIONS, (sql.MIGRATION_LOCK_ID,))
            await conn.execute(sql.CREATE_EXTENSION)
            await conn.execute(sql.CREATE_COLLECTIONS)
            row = await (await conn.execute(sql.GET_COLLECTION, (DEFAULT_COLLECTION,))).fetchone()
            if row is not None:
                _check_same_model(row[1], row[2], model, dimensions)
            else:
                await self._check_unregistered_table(conn, model=model, dimensions=dimensions)
            await conn.execute(sql.create_chunk_table(self.table, dimensions))
            await conn.execute(sql.upgrade_chunk_table(self.table))
            if dimensions <= sql.MAX_INDEXED_DIMENSIONS:
                await conn.execute(sql.create_hnsw_index(self.table))
            else:
                log.warning(
                    "%d dimensions: too many for an HNSW index; searches scan exactly", dimensions
                )
            await conn.execute(
                sql.REGISTER_COLLECTION, (DEFAULT_COLLECTION, self.table, model, dimensions)
            )

    async def _check_unregistered_table(
        self, conn: psycopg.AsyncConnection[Any], *, model: str, dimensions: int
    ) -> None:
        """A table made by other code (e.g. the brief's script): adopt it only if it matches."""
        cur = await conn.execute(sql.VECTOR_COLUMN_DIMENSIONS, (self.table,))
        row = await cur.fetchone()
        if row is None:
            return
        if row[0] != dimensions:
            raise ModelMismatch(
                f"table {self.table} holds {row[0]}-dimensional vectors but the configured "
                f"embedder makes {dimensions}; use another database or the matching embedder"
            )
        others = [
            r[0]
            for r in await (await conn.execute(sql.other_models(self.table), (model,))).fetchall()
        ]
        if others:
            raise ModelMismatch(
                f"table {self.table} holds vectors from {', '.join(others)}, not {model}"
            )

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        async with _database_errors(), self._pool.connection() as conn:
            await conn.execute(sql.PING)

    async def pgvector_version(self) -> str:
        async with _database_errors(), self._pool.connection() as conn:
            row = await (await conn.execute(sql.EXTENSION_VERSION)).fetchone()
            return str(row[0]) if row else "unknown"

    async def count(self) -> int:
        async with _database_errors(), self._pool.connection() as conn:
            row = await (await conn.execute(sql.count_rows(self.table))).fetchone()
            return int(row[0]) if row else 0

    async def upsert(self, rows: ChunkRows) -> list[bool]:
        """Insert or update rows in one transaction. Returns, per row, True if it was new."""
        if len(set(rows.chunk_ids)) != len(rows.chunk_ids):
            raise InvalidInput("the same chunkId appears twice in one request", field="chunkId")
        metadata = rows.metadata or [{} for _ in rows.chunk_ids]
        records = list(
            zip(
                rows.chunk_ids,
                rows.vectors,
                [rows.model] * len(rows),
                rows.contents,
                rows.content_hashes,
                [Jsonb(m) for m in metadata],
                strict=True,
            )
        )
        async with _database_errors(), self._pool.connection() as conn, conn.transaction():
            if len(records) <= _COPY_THRESHOLD:
                returned = []
                for record in records:
                    cur = await conn.execute(sql.upsert_row(self.table), record)
                    returned.extend(await cur.fetchall())
            else:
                returned = await self._copy_upsert(conn, records)
        inserted = {chunk_id: bool(flag) for chunk_id, flag in returned}
        return [inserted[chunk_id] for chunk_id in rows.chunk_ids]

    async def _copy_upsert(
        self, conn: psycopg.AsyncConnection[Any], records: Sequence[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        await conn.execute(sql.create_staging(self.table))
        async with conn.cursor().copy(sql.copy_into_staging(self.table)) as copy:
            copy.set_types(list(sql.COPY_TYPES))
            for record in records:
                await copy.write_row(record)
        cur = await conn.execute(sql.upsert_from_staging(self.table))
        return await cur.fetchall()

    async def search(
        self, query: np.ndarray[Any, Any], *, limit: int, distance: Distance
    ) -> list[SearchHit]:
        params = {"query": query, "limit": limit}
        async with _database_errors(), self._pool.connection() as conn, conn.transaction():
            if limit > _HNSW_DEFAULT_EF_SEARCH:
                # HNSW returns at most ef_search rows: widen it to the requested limit.
                ef_search = min(limit, _HNSW_MAX_EF_SEARCH)
                await conn.execute(sql.SET_EF_SEARCH, (str(ef_search),))
            cur = await conn.execute(sql.search(self.table, distance), params)
            rows = await cur.fetchall()
        hits = [SearchHit(r[0], float(r[1]), r[2], r[3] or {}) for r in rows]
        # Ordered by cosine through the index; for unit vectors every metric agrees, and a
        # stable sort keeps ties in index order while guaranteeing smallest score first.
        hits.sort(key=lambda hit: hit.score)
        return hits


def _check_same_model(stored_model: str, stored_dims: int, model: str, dimensions: int) -> None:
    if (stored_model, stored_dims) != (model, dimensions):
        raise ModelMismatch(
            f"this database was filled by {stored_model} ({stored_dims} dims) but the configured "
            f"embedder is {model} ({dimensions} dims); vectors from different models cannot be "
            "mixed. Use the same EMBEDSEARCH_EMBEDDER/EMBEDSEARCH_DIMENSIONS, or another database"
        )
