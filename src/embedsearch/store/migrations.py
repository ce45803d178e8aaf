"""Numbered schema migrations, applied in order at start, each in its own transaction.

The schema version is recorded in `embedsearch_schema` (one row per applied migration). Each
step runs under the migration advisory lock and re-reads the version inside its transaction,
so processes starting together apply every step exactly once: the others wait, then see it
done. A database whose version is newer than the code is refused before anything is touched.
Add a step by appending to MIGRATIONS; never edit one that has shipped, and keep the SQL a
shipped step runs in its own statements (sql/schema.py), not in ones today's code may change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from embedsearch.core.constants import DEFAULT_TEXT_CONFIG
from embedsearch.core.errors import MigrationFailed, SchemaTooNew
from embedsearch.store.database import Connection, first_line
from embedsearch.store.sql import bm25 as bm25_sql
from embedsearch.store.sql import model_migrations as model_migrations_sql
from embedsearch.store.sql import schema as sql
from embedsearch.store.sql import sources as sources_sql

log = logging.getLogger(__name__)
_BACKFILL_BATCH = 10_000  # chunks counted per statement by migration 3


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], Awaitable[None]]


async def _m001_registry_and_documents(conn: Connection) -> None:
    """The layout of e9b6e60 and earlier releases. Idempotent: a database that release wrote
    is left as it is, and one written before it gets the columns and indexes added since."""
    await conn.execute(sql.CREATE_EXTENSION)
    await conn.execute(sql.V1_REGISTRY_AND_DOCUMENTS)
    for table, _ in await (await conn.execute(sql.REGISTERED_COLLECTIONS)).fetchall():
        await conn.execute(sql.v1_complete_chunk_table(table))


async def _m002_registry_checks(conn: Connection) -> None:
    await conn.execute(sql.V2_REGISTRY_CHECKS)


async def _m003_bm25(conn: Connection) -> None:
    """BM25 statistics for every collection, counted from the chunks already stored (a
    collection made before keeps its 'english' configuration)."""
    await conn.execute(sql.V3_REGISTRY_TEXT_OPTIONS)
    await conn.execute(bm25_sql.V3_FUNCTIONS_AND_TABLES)
    for table, name in await (await conn.execute(sql.REGISTERED_COLLECTIONS)).fetchall():
        await conn.execute(bm25_sql.add_length_column(table))
        await conn.execute(bm25_sql.create_triggers_v3(table, name, DEFAULT_TEXT_CONFIG))
        await _count_existing_chunks(conn, table, name)
        await conn.execute(bm25_sql.COMPACT, {"collection": name})


async def _count_existing_chunks(conn: Connection, table: str, collection: str) -> None:
    await _in_batches(
        conn, bm25_sql.backfill_batch(table), {"collection": collection}, "statistics", collection
    )


async def _in_batches(
    conn: Connection,
    statement: psycopg.sql.Composed,
    params: dict[str, str],
    what: str,
    collection: str,
) -> None:
    """Run a keyset-batched backfill (it returns each batch's last chunk id and size) to the
    end, logging progress: a large collection takes a while."""
    after, done = "", 0
    while True:
        batch = params | {"after": after, "size": _BACKFILL_BATCH}
        row = await (await conn.execute(statement, batch)).fetchone()
        if row is None or not row[1]:
            return
        after, done = str(row[0]), done + int(row[1])
        if row[1] == _BACKFILL_BATCH:
            log.info("BM25 %s for %s: %d chunks so far", what, collection, done)


async def _m004_vectors_inline(conn: Connection) -> None:
    for table, name in await (await conn.execute(sql.REGISTERED_COLLECTIONS)).fetchall():
        await conn.execute(sql.v4_vectors_inline(table))
        toasted = await (await conn.execute(sql.TOASTED_VECTORS, (table,))).fetchone()
        if toasted and toasted[0]:
            log.warning(
                "collection %s: vectors stored before may sit in TOAST (slower searches) until "
                "rewritten; `embedsearch collections compact %s` rewrites them now (the "
                "collection is locked while it runs)",
                name,
                name,
            )


async def _m005_bm25_postings(conn: Connection) -> None:
    """Postings for every collection, from the chunks already stored, in batches with progress
    (writes to the collection wait meanwhile; searches go on), then the index, built once."""
    await conn.execute(bm25_sql.V5_INDEX_FUNCTION)
    for table, name, config in await (await conn.execute(sql.REGISTERED_TEXT_CONFIGS)).fetchall():
        await conn.execute(bm25_sql.lock_for_backfill(table))
        await conn.execute(bm25_sql.create_postings_table(table, keyed=False))
        statement = bm25_sql.backfill_postings_batch(table, keyed=False)
        await _in_batches(conn, statement, {}, "postings", name)
        log.info("BM25 postings for %s: indexing", name)
        await conn.execute(bm25_sql.add_postings_key(table))
        await conn.execute(bm25_sql.create_triggers(table, name, config))


async def _m006_aliases(conn: Connection) -> None:
    await conn.execute(sql.V6_ALIASES)


async def _m007_sources(conn: Connection) -> None:
    await conn.execute(sources_sql.V7_SOURCE_REGISTRY)


async def _m008_sharded_collections(conn: Connection) -> None:
    await conn.execute(sql.V8_REGISTRY_SHARDS)


async def _m009_model_migrations(conn: Connection) -> None:
    await conn.execute(model_migrations_sql.V9_TABLES)


MIGRATIONS = (
    Migration(1, "collection registry and documents", _m001_registry_and_documents),
    Migration(
        2, "registry refuses unreadable distance, storage and dimensions", _m002_registry_checks
    ),
    Migration(
        3, "BM25 statistics; text search configuration and fusion per collection", _m003_bm25
    ),
    Migration(4, "vectors kept in the row, not in TOAST", _m004_vectors_inline),
    Migration(5, "BM25 postings per collection", _m005_bm25_postings),
    Migration(6, "aliases: other names for collections", _m006_aliases),
    Migration(7, "source registry: tables kept in sync as documents", _m007_sources),
    Migration(8, "collections sharded on Citus", _m008_sharded_collections),
    Migration(
        9, "model migrations: shadow collections and their change capture", _m009_model_migrations
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


async def schema_version(conn: Connection) -> int:
    """The version recorded in the database (0: none yet)."""
    exists = await (await conn.execute(sql.VERSION_TABLE_EXISTS)).fetchone()
    if not (exists and exists[0]):
        return 0
    row = await (await conn.execute(sql.SCHEMA_VERSION)).fetchone()
    return int(row[0]) if row else 0


def _refuse_newer(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database's schema is version {found}, newer than this release of embedsearch "
            f"knows (version {SCHEMA_VERSION}); upgrade embedsearch, or use another database. "
            "Nothing was changed"
        )


async def migrate(conn: Connection) -> int:
    """Bring the schema to SCHEMA_VERSION on an autocommit connection; returns the version
    found before. A failing step rolls back alone and raises MigrationFailed: earlier steps
    stay applied, and the caller must not start on the old schema."""
    before = await schema_version(conn)  # a first look, without the lock: nothing is written
    _refuse_newer(before)
    for migration in MIGRATIONS:
        if migration.version > before:
            await _apply(conn, migration)
    return before


async def _apply(conn: Connection, migration: Migration) -> None:
    # The lock is taken before the transaction begins: a transaction that began before another
    # process's migration committed would still see the catalog as it was (PostgreSQL reads
    # catalog changes at transaction start), and apply the same step again.
    await conn.execute(sql.LOCK_MIGRATIONS_SESSION, (sql.MIGRATION_LOCK_ID,))
    try:
        async with conn.transaction():
            current = await schema_version(conn)
            _refuse_newer(current)
            if current >= migration.version:  # another process applied it while we waited
                return
            log.info(
                "migrating the schema to version %d: %s", migration.version, migration.description
            )
            await conn.execute(sql.CREATE_VERSION_TABLE)
            await migration.apply(conn)
            await conn.execute(sql.RECORD_VERSION, (migration.version, migration.description))
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise  # the connection failed, not the step: "database unavailable"
    except psycopg.DatabaseError as exc:
        raise MigrationFailed(
            f"migrating the schema to version {migration.version} ({migration.description}) "
            f"failed and was rolled back: {first_line(exc)}. The database is unchanged at "
            f"version {migration.version - 1}; fix the cause and start again"
        ) from None
    finally:
        if not conn.closed:  # a lost connection took its lock with it
            await conn.execute(sql.UNLOCK_MIGRATIONS_SESSION, (sql.MIGRATION_LOCK_ID,))
