"""PostgreSQL + pgvector storage: the collection registry, chunk tables, documents, search."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector_async
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from embedsearch.distance import Distance
from embedsearch.errors import Conflict, DatabaseUnavailable, InvalidInput, ModelMismatch
from embedsearch.store import sql
from embedsearch.store.filters import compile_filter
from embedsearch.store.records import (
    ChunkRecord,
    ChunkRows,
    CollectionOptions,
    CollectionRecord,
    DocumentRecord,
    DocumentState,
    DocumentWrite,
    IndexBuildProgress,
    SearchHit,
    TableLayout,
    VectorIndexState,
    concat_rows,
)
from embedsearch.vector_index import IndexSpec, IndexType, Storage, build_memory_bytes

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
DEFAULT_TABLE = "chunk_embeddings"  # the brief's table
DEFAULT_LAYOUT = TableLayout(DEFAULT_TABLE)
# Rows at or below this go through INSERTs; above, through binary COPY into a staging table.
_COPY_THRESHOLD = 8
# pgvector's own hnsw.ef_search default: what a transaction has unless we set it.
_PG_EF_SEARCH = 40
# Ours: ANN recall@10 >= 0.98 against exact search at 100k chunks with pgvector's default
# m=16, ef_construction=64, p50 ~2.7 ms (40 gave 0.92, 100 gave 0.97; benchmarks/search.py).
DEFAULT_EF_SEARCH = 200
# Length of the dense and lexical lists that hybrid search fuses (at least 4x the limit).
_HYBRID_CANDIDATES = 100
_HNSW_MAX_EF_SEARCH = 1000
Connection = psycopg.AsyncConnection[Any]


class StaleDocument(Conflict):
    """A chunk assumed unchanged was rewritten by someone else meanwhile; redo the write
    (callers retry; after that it reaches the client as 409)."""

    def __init__(self, document_id: str) -> None:
        super().__init__(
            f"document {document_id!r} was changed by another writer at the same time; retry",
            field="documentId",
        )


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


def table_for(collection: str) -> str:
    return DEFAULT_TABLE if collection == DEFAULT_COLLECTION else f"c_{collection}"


class PgStore:
    """Owns a connection pool to one database; every call is scoped by its collection's table."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> None:
        self._conninfo = conninfo
        self.ef_search = ef_search  # HNSW candidate list when a request does not set one
        self._timeout_s = timeout_s
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

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with _database_errors(), self._pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    # Schema and collections.

    async def open(self, *, model: str, dimensions: int, embedder: str | None = None) -> None:
        """Create the schema if needed, refuse a default table filled by another model, and
        open the pool."""
        async with _database_errors():
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=max(1, round(self._timeout_s))
            )
            async with conn, conn.transaction():
                await conn.execute(sql.LOCK_MIGRATIONS, (sql.MIGRATION_LOCK_ID,))
                await conn.execute(sql.CREATE_EXTENSION)
                await conn.execute(sql.CREATE_COLLECTIONS)
                existing = await _collection(conn, DEFAULT_COLLECTION)
                if existing is not None:
                    _check_same_model(existing, model, dimensions)
                    await conn.execute(sql.FILL_EMBEDDER, (embedder, DEFAULT_COLLECTION))
                else:
                    await _check_unregistered_table(conn, DEFAULT_TABLE, model, dimensions)
                await _create_collection(
                    conn, DEFAULT_COLLECTION, model, dimensions, embedder, CollectionOptions()
                )
            await self._pool.open(wait=True, timeout=self._timeout_s)

    async def create_collection(
        self, name: str, *, model: str, dimensions: int, embedder: str, options: CollectionOptions
    ) -> CollectionRecord:
        async with self._transaction() as conn:
            await conn.execute(sql.LOCK_MIGRATIONS, (sql.MIGRATION_LOCK_ID,))
            if await _collection(conn, name) is not None:
                raise Conflict(f"collection {name!r} already exists", field="name")
            await _create_collection(conn, name, model, dimensions, embedder, options)
            record = await _collection(conn, name)
        assert record is not None
        return record

    async def get_collection(self, name: str) -> CollectionRecord | None:
        async with self._connection() as conn:
            return await _collection(conn, name)

    async def list_collections(self) -> list[CollectionRecord]:
        async with self._connection() as conn:
            rows = await (await conn.execute(sql.LIST_COLLECTIONS)).fetchall()
        return [_collection_record(row) for row in rows]

    async def drop_collection(self, name: str) -> bool:
        async with self._transaction() as conn:
            await conn.execute(sql.LOCK_MIGRATIONS, (sql.MIGRATION_LOCK_ID,))
            record = await _collection(conn, name)
            if record is None:
                return False
            await conn.execute(sql.drop_table(record.table))
            await conn.execute(sql.UNREGISTER_COLLECTION, (name,))
            return True

    async def close(self) -> None:
        await self._pool.close()

    async def pgvector_version(self) -> str:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.EXTENSION_VERSION)).fetchone()
            return str(row[0]) if row else "unknown"

    async def count(self, table: str = DEFAULT_TABLE) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.count_rows(table))).fetchone()
            return int(row[0]) if row else 0

    # ANN indexes.

    async def build_index(
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
        table = record.table
        building = f"{table}_vec_build"
        memory = build_memory_bytes(
            spec,
            rows=rows,
            dimensions=record.dimensions,
            storage=record.storage,
            cap_bytes=memory_cap_bytes,
        )
        async with _database_errors():
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, round(self._timeout_s))
            )
        async with conn, _database_errors():
            locked = await (await conn.execute(sql.TRY_LOCK_INDEX_BUILD, (record.name,))).fetchone()
            if not (locked and locked[0]):
                raise Conflict(
                    f"an index build on collection {record.name!r} is already running",
                    field="name",
                )
            await conn.execute(sql.SET_MAINTENANCE_WORK_MEM, (f"{memory // 1024}kB",))
            await conn.execute(sql.drop_index(building, concurrently=True))  # a failed build's
            try:
                if spec.type is not IndexType.NONE:
                    opclass = record.storage.opclass(record.layout.index_distance)
                    await conn.execute(
                        sql.create_vector_index(building, table, opclass, spec, concurrently=True)
                    )
                async with conn.transaction():
                    for existing in await _vector_indexes(conn, table):
                        if existing.name != building:
                            await conn.execute(sql.drop_index(existing.name))
                    if spec.type is not IndexType.NONE:
                        await conn.execute(sql.rename_index(building, index_name(table, spec.type)))
                    await conn.execute(
                        sql.RECORD_INDEX_BUILD,
                        (probes, rows if spec.type is not IndexType.NONE else None, record.name),
                    )
            except BaseException:
                await conn.execute(sql.drop_index(building, concurrently=True))
                raise

    async def defer_index(self, record: CollectionRecord) -> bool:
        """Before a bulk load into an empty collection: drop its HNSW index and record it, so
        it is built once at the end (a build is several times cheaper than maintaining the
        graph insert by insert, and those inserts would compete with the model for the CPU).
        False, and nothing changed, if the table has rows, the index is not one plain valid
        HNSW index, or an index build is running."""
        async with self._transaction() as conn:
            locked = await (
                await conn.execute(sql.TRY_LOCK_INDEX_BUILD_XACT, (record.name,))
            ).fetchone()
            empty = await (await conn.execute(sql.is_empty(record.table))).fetchone()
            indexes = await _vector_indexes(conn, record.table)
            if not (locked and locked[0] and empty and empty[0]) or len(indexes) != 1:
                return False
            (index,) = indexes
            if index.type is not IndexType.HNSW or not index.valid:
                return False
            spec = {"type": index.type.value} | index.options
            await conn.execute(sql.DEFER_INDEX, (Jsonb(spec), record.name))
            await conn.execute(sql.drop_index(index.name))
            return True

    async def index_build_progress(self, table: str) -> IndexBuildProgress | None:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.INDEX_BUILD_PROGRESS, (table,))).fetchone()
        return IndexBuildProgress(*row) if row else None

    async def vector_indexes(self, table: str) -> list[VectorIndexState]:
        async with self._connection() as conn:
            return await _vector_indexes(conn, table)

    async def shared_buffers_bytes(self) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.SHARED_BUFFERS)).fetchone()
            return int(row[0]) if row else 0

    async def table_size(self, table: str) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.TABLE_SIZE, (table,))).fetchone()
            return int(row[0] or 0) if row else 0

    async def sample_vectors(self, table: str, n: int, rows: int) -> Any:
        """About `n` stored vectors picked at random (a block sample: cheap on big tables)."""
        percent = min(100.0, 100.0 * 3 * n / max(rows, 1))
        async with self._connection() as conn:
            cur = await conn.execute(sql.sample_vectors(table), (percent, n))
            found = [np.asarray(r[0].to_numpy(), np.float32) for r in await cur.fetchall()]
        return np.stack(found) if found else np.zeros((0, 0), np.float32)

    # Chunks.

    async def upsert(self, rows: ChunkRows, layout: TableLayout = DEFAULT_LAYOUT) -> list[bool]:
        """Insert or update rows in one transaction. Returns, per row, True if it was new."""
        if len(set(rows.chunk_ids)) != len(rows.chunk_ids):
            raise InvalidInput("the same chunkId appears twice in one request", field="chunkId")
        async with self._transaction() as conn:
            returned = await _write_rows(conn, layout, rows)
        inserted = {chunk_id: bool(flag) for chunk_id, flag in returned}
        return [inserted[chunk_id] for chunk_id in rows.chunk_ids]

    async def search(
        self,
        query: np.ndarray[Any, Any],
        *,
        limit: int,
        distance: Distance,
        layout: TableLayout = DEFAULT_LAYOUT,
        filter_: dict[str, Any] | None = None,
        exact: bool = False,
        ef_search: int | None = None,
        probes: int | None = None,
    ) -> list[SearchHit]:
        """Nearest chunks. `exact` scans every row (ground truth); `ef_search` sets HNSW's
        candidate list (never below `limit`: HNSW returns at most ef_search rows); `probes`
        sets the IVFFlat lists scanned."""
        condition, params = compile_filter(filter_)
        params |= {"query": query, "limit": limit}
        order_by = layout.order_by(distance, exact=exact)
        statement = sql.search(
            layout.table, distance, condition, order_by=order_by, storage=layout.storage
        )
        async with self._transaction() as conn:
            if exact:
                await conn.execute(sql.DISABLE_INDEX_SCANS)
            else:
                await _tune_index_scan(
                    conn, layout, limit, ef_search or self.ef_search, probes, filter_ is not None
                )
            rows = await (await conn.execute(statement, params)).fetchall()
        hits = [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]
        # Ordered through the index; for unit vectors every metric agrees, and a stable sort
        # keeps ties in index order while guaranteeing smallest score first.
        hits.sort(key=lambda hit: hit.score)
        return hits

    async def search_text(
        self,
        text: str,
        query: np.ndarray[Any, Any] | None,
        *,
        limit: int,
        layout: TableLayout = DEFAULT_LAYOUT,
        filter_: dict[str, Any] | None = None,
        rrf_k: int = 60,
    ) -> list[SearchHit]:
        """Lexical search (query None) or hybrid search (dense + lexical, fused with RRF).
        Scores: larger is better."""
        condition, params = compile_filter(filter_)
        candidates = min(max(limit * 4, _HYBRID_CANDIDATES), _HNSW_MAX_EF_SEARCH)
        params |= {"text": text, "limit": limit, "query": query, "k": candidates, "rrf_k": rrf_k}
        statement = (
            sql.lexical_search(layout.table, condition)
            if query is None
            else sql.hybrid_search(
                layout.table,
                condition,
                order_by=layout.index_distance,
                storage=layout.storage,
            )
        )
        async with self._transaction() as conn:
            if query is not None:
                await _tune_index_scan(
                    conn, layout, candidates, self.ef_search, None, filter_ is not None
                )
            rows = await (await conn.execute(statement, params)).fetchall()
        return [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]

    async def vectors(self, chunk_ids: Sequence[str], table: str = DEFAULT_TABLE) -> dict[str, Any]:
        """Stored vectors (float32 arrays, also from halfvec) by chunk id."""
        async with self._connection() as conn:
            cur = await conn.execute(sql.chunk_vectors(table), (list(chunk_ids),))
            return {
                r[0]: np.asarray(r[1].to_numpy(), dtype=np.float32) for r in await cur.fetchall()
            }

    async def get_chunk(self, chunk_id: str, table: str = DEFAULT_TABLE) -> ChunkRecord | None:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.get_chunk(table), (chunk_id,))).fetchone()
        return ChunkRecord(*row) if row else None

    async def delete_chunk(self, collection: str, chunk_id: str) -> bool:
        async with self._transaction() as conn:
            row = await (
                await conn.execute(sql.delete_chunk(table_for(collection)), (chunk_id,))
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                await conn.execute(sql.DECREMENT_DOCUMENT_CHUNKS, (collection, row[0]))
            return True

    # Documents.

    async def document_states(
        self, collection: str, document_ids: Sequence[str]
    ) -> dict[str, DocumentState]:
        async with self._connection() as conn:
            cur = await conn.execute(sql.DOCUMENT_STATES, (collection, list(document_ids)))
            return {r[0]: DocumentState(r[1], r[2]) for r in await cur.fetchall()}

    async def chunk_hashes(self, table: str, document_ids: Sequence[str]) -> dict[str, str]:
        async with self._connection() as conn:
            cur = await conn.execute(sql.chunk_hashes_of_documents(table), (list(document_ids),))
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def write_documents(
        self, collection: str, layout: TableLayout, writes: Sequence[DocumentWrite]
    ) -> list[bool]:
        """Replace each document's chunks with its new version, all in one transaction: no
        orphans and no half documents. Returns, per document, True if it was new."""
        table = layout.table
        async with self._transaction() as conn:
            created = []
            for write in writes:
                await conn.execute(sql.LOCK_DOCUMENT, (collection, write.document_id))
            ids = [w.document_id for w in writes]
            cur = await conn.execute(sql.chunk_hashes_of_documents(table, for_update=True), (ids,))
            stored = {r[0]: r[1] for r in await cur.fetchall()}
            for write in writes:
                if any(stored.get(cid) != digest for cid, digest in write.reused.items()):
                    raise StaleDocument(write.document_id)
                await conn.execute(
                    sql.delete_document_chunks_except(table), (write.document_id, write.chunk_ids)
                )
                if write.reused:
                    metadata = Jsonb(write.metadata)
                    await conn.execute(
                        sql.update_chunk_metadata(table), (metadata, list(write.reused), metadata)
                    )
                row = await (
                    await conn.execute(
                        sql.UPSERT_DOCUMENT,
                        (
                            collection,
                            write.document_id,
                            write.content_hash,
                            Jsonb(write.metadata),
                            len(write.chunk_ids),
                        ),
                    )
                ).fetchone()
                created.append(bool(row and row[0]))
            rows = concat_rows([w.rows for w in writes if len(w.rows)])
            if rows is not None:
                await _write_rows(conn, layout, rows)
        return created

    async def get_document(self, collection: str, document_id: str) -> DocumentRecord | None:
        async with self._connection() as conn:
            row = await (await conn.execute(sql.GET_DOCUMENT, (collection, document_id))).fetchone()
            if row is None:
                return None
            cur = await conn.execute(sql.document_chunks(table_for(collection)), (document_id,))
            chunk_ids = [r[0] for r in await cur.fetchall()]
        document_id, digest, metadata, chunk_count, created_at, updated_at = row
        return DocumentRecord(
            document_id, digest, metadata, chunk_count, created_at, updated_at, chunk_ids
        )

    async def delete_document(self, collection: str, document_id: str) -> bool:
        async with self._transaction() as conn:
            await conn.execute(sql.LOCK_DOCUMENT, (collection, document_id))
            found = await (
                await conn.execute(sql.DELETE_DOCUMENT, (collection, document_id))
            ).fetchone()
            await conn.execute(sql.delete_document_chunks(table_for(collection)), (document_id,))
            return found is not None


async def _collection(conn: Connection, name: str) -> CollectionRecord | None:
    row = await (await conn.execute(sql.GET_COLLECTION, (name,))).fetchone()
    return _collection_record(row) if row else None


def _collection_record(row: Sequence[Any]) -> CollectionRecord:
    name, table, model, dimensions, embedder, distance, created_at, storage, *index = row
    return CollectionRecord(
        name,
        table,
        model,
        dimensions,
        embedder,
        Distance(distance),
        created_at,
        Storage(storage),
        *index,
    )


async def _vector_indexes(conn: Connection, table: str) -> list[VectorIndexState]:
    rows = await (await conn.execute(sql.VECTOR_INDEXES, (table,))).fetchall()
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


def index_name(table: str, index_type: IndexType) -> str:
    return f"{table}_embedding_{index_type.value}"


async def _create_collection(
    conn: Connection,
    name: str,
    model: str,
    dimensions: int,
    embedder: str | None,
    options: CollectionOptions,
) -> None:
    table = table_for(name)
    storage, spec = options.storage, options.index
    await conn.execute(sql.create_chunk_table(table, dimensions, storage))
    await conn.execute(sql.upgrade_chunk_table(table))
    if spec.type is IndexType.HNSW and dimensions <= storage.max_indexed_dimensions:
        layout = TableLayout(table, storage, options.normalized, options.distance)
        opclass = storage.opclass(layout.index_distance)
        await conn.execute(
            sql.create_vector_index(index_name(table, spec.type), table, opclass, spec)
        )
    elif spec.type is IndexType.HNSW:
        log.warning("%d dimensions: too many for an index on %s", dimensions, storage.value)
    await conn.execute(
        sql.REGISTER_COLLECTION,
        (
            name,
            table,
            model,
            dimensions,
            embedder,
            options.distance.value,
            storage.value,
            options.normalized,
        ),
    )


async def _tune_index_scan(
    conn: Connection,
    layout: TableLayout,
    limit: int,
    ef_search: int,
    probes: int | None,
    filtered: bool,
) -> None:
    """Per-transaction index settings: HNSW's candidate list, IVFFlat's lists to scan, and
    iterative scans so a filter still yields `limit` rows."""
    ef = min(max(limit, ef_search), _HNSW_MAX_EF_SEARCH)
    if ef != _PG_EF_SEARCH:
        await conn.execute(sql.SET_EF_SEARCH, (str(ef),))
    probes = probes or layout.probes
    if probes is not None:
        await conn.execute(sql.SET_PROBES, (str(probes),))
    if filtered:
        await conn.execute(sql.SET_ITERATIVE_SCAN)


async def _write_rows(
    conn: Connection, layout: TableLayout, rows: ChunkRows
) -> list[tuple[Any, ...]]:
    n, table = len(rows), layout.table
    vectors: Any = rows.vectors
    if layout.storage is Storage.HALFVEC:
        vectors = [HalfVector(v) for v in rows.vectors]
    records = list(
        zip(
            rows.chunk_ids,
            vectors,
            [rows.model] * n,
            rows.contents,
            rows.content_hashes,
            [Jsonb(m) for m in (rows.metadata or [{}] * n)],
            rows.document_ids or [None] * n,
            strict=True,
        )
    )
    if n <= _COPY_THRESHOLD:
        returned = []
        for record in records:
            cur = await conn.execute(sql.upsert_row(table), record)
            returned.extend(await cur.fetchall())
        return returned
    await conn.execute(sql.create_staging(table))
    async with conn.cursor().copy(sql.copy_into_staging(table)) as copy:
        copy.set_types(sql.copy_types(layout.storage))
        for record in records:
            await copy.write_row(record)
    cur = await conn.execute(sql.upsert_from_staging(table))
    return await cur.fetchall()


async def _check_unregistered_table(
    conn: Connection, table: str, model: str, dimensions: int
) -> None:
    """A table made by other code (e.g. the brief's script): adopt it only if it matches."""
    row = await (await conn.execute(sql.VECTOR_COLUMN_DIMENSIONS, (table,))).fetchone()
    if row is None:
        return
    if row[0] != dimensions:
        raise ModelMismatch(
            f"table {table} holds {row[0]}-dimensional vectors but the configured "
            f"embedder makes {dimensions}; use another database or the matching embedder"
        )
    cur = await conn.execute(sql.other_models(table), (model,))
    others = [r[0] for r in await cur.fetchall()]
    if others:
        raise ModelMismatch(f"table {table} holds vectors from {', '.join(others)}, not {model}")


def _check_same_model(stored: CollectionRecord, model: str, dimensions: int) -> None:
    if (stored.model, stored.dimensions) != (model, dimensions):
        raise ModelMismatch(
            f"this database was filled by {stored.model} ({stored.dimensions} dims) but the "
            f"configured embedder is {model} ({dimensions} dims); vectors from different models "
            "cannot be mixed. Use the same EMBEDSEARCH_EMBEDDER/EMBEDSEARCH_DIMENSIONS, or another "
            "database"
        )
