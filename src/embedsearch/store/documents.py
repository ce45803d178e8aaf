"""Documents of one collection: each version replaces all its chunks in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from embedsearch.core.errors import StaleDocument
from embedsearch.store.bm25_changes import Bm25Changes
from embedsearch.store.database import Connection
from embedsearch.store.records import DocumentRecord, DocumentState, DocumentWrite, concat_rows
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import documents as sql

if TYPE_CHECKING:
    from embedsearch.store.collection import CollectionHandle


class DocumentStore:
    def __init__(self, collection: CollectionHandle) -> None:
        self._chunks = collection
        self._db = collection.database
        self._name = collection.name
        self._table = collection.table
        self._distributed = collection.layout.distributed

    async def states(self, document_ids: Sequence[str]) -> dict[str, DocumentState]:
        async with self._db.reading() as conn:
            cur = await conn.execute(sql.DOCUMENT_STATES, (self._name, list(document_ids)))
            return {r[0]: DocumentState(r[1], r[2]) for r in await cur.fetchall()}

    async def chunk_hashes(self, document_ids: Sequence[str]) -> dict[str, str]:
        async with self._db.reading() as conn:
            statement = sql.chunk_hashes_of_documents(self._table)
            cur = await conn.execute(statement, (list(document_ids),))
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def write(self, writes: Sequence[DocumentWrite]) -> list[bool]:
        """Replace each document's chunks with its new version, all in one transaction: no
        orphans and no half documents. Returns, per document, True if it was new."""
        # In document id order: concurrent writes of overlapping documents take their locks
        # in the same order and wait for one another instead of deadlocking.
        order = sorted(range(len(writes)), key=lambda i: writes[i].document_id)
        created = await self._db.transaction(
            lambda conn: self._write(conn, [writes[i] for i in order])
        )
        await self._chunks.compactions.wrote(self._chunks)
        by_position = dict(zip(order, created, strict=True))
        return [by_position[i] for i in range(len(writes))]

    async def _write(self, conn: Connection, writes: Sequence[DocumentWrite]) -> list[bool]:
        table = self._table
        created = []
        for write in writes:
            await conn.execute(sql.LOCK_DOCUMENT, (self._name, write.document_id))
        stored = await self._lock_chunks(conn, [w.document_id for w in writes])
        removed = Bm25Changes()
        for write in writes:
            if any(stored.get(cid) != digest for cid, digest in write.reused.items()):
                raise StaleDocument(write.document_id)
            cur = await conn.execute(
                sql.delete_document_chunks_except(table, distributed=self._distributed),
                (write.document_id, write.chunk_ids),
            )
            if self._distributed:
                removed.removed(await cur.fetchall())
            if write.reused:
                metadata = Jsonb(write.metadata)
                await conn.execute(
                    sql.update_chunk_metadata(table), (metadata, list(write.reused), metadata)
                )
            row = await (
                await conn.execute(
                    sql.UPSERT_DOCUMENT,
                    (
                        self._name,
                        write.document_id,
                        write.content_hash,
                        Jsonb(write.metadata),
                        len(write.chunk_ids),
                    ),
                )
            ).fetchone()
            created.append(bool(row and row[0]))
        await removed.record(conn, self._name)
        rows = concat_rows([w.rows for w in writes if len(w.rows)])
        if rows is not None:
            await self._chunks.write_rows(conn, rows)
        return created

    async def _lock_chunks(self, conn: Connection, document_ids: list[str]) -> dict[str, str]:
        """The stored chunks of these documents (chunk id -> content hash), locked until the
        transaction ends; on a sharded table one statement per document (one shard each)."""
        if not self._distributed:
            statement = sql.chunk_hashes_of_documents(self._table, for_update=True)
            cur = await conn.execute(statement, (document_ids,))
            return {r[0]: r[1] for r in await cur.fetchall()}
        stored: dict[str, str] = {}
        statement = sql.chunk_hashes_of_document_locked(self._table)
        for document_id in document_ids:
            cur = await conn.execute(statement, (document_id, document_id))
            stored |= {r[0]: r[1] for r in await cur.fetchall()}
        return stored

    @retry_elsewhere
    async def get(self, document_id: str) -> DocumentRecord | None:
        async with self._db.reading() as conn, conn.transaction():  # one snapshot for both
            row = await (await conn.execute(sql.GET_DOCUMENT, (self._name, document_id))).fetchone()
            if row is None:
                return None
            cur = await conn.execute(sql.document_chunks(self._table), (document_id,))
            chunk_ids = [r[0] for r in await cur.fetchall()]
        document_id, digest, metadata, chunk_count, created_at, updated_at = row
        return DocumentRecord(
            document_id, digest, metadata, chunk_count, created_at, updated_at, chunk_ids
        )

    async def delete(self, document_id: str) -> bool:
        async def delete(conn: Connection) -> bool:
            await conn.execute(sql.LOCK_DOCUMENT, (self._name, document_id))
            found = await (
                await conn.execute(sql.DELETE_DOCUMENT, (self._name, document_id))
            ).fetchone()
            cur = await conn.execute(
                sql.delete_document_chunks(self._table, distributed=self._distributed),
                (document_id,),
            )
            if self._distributed:
                await Bm25Changes().removed(await cur.fetchall()).record(conn, self._name)
            return found is not None

        deleted = await self._db.transaction(delete)
        await self._chunks.compactions.wrote(self._chunks)
        return deleted
