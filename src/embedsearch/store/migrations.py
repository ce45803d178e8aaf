"""Numbered schema migrations, applied in order at start, each in its own transaction.

The schema version is recorded in `embedsearch_schema` (one row per applied migration). Each
step runs under the migration advisory lock and re-reads the version inside its transaction,
so processes starting together apply every step exactly once: the others wait, then see it
done. A database whose version is newer than the code is refused before anything is touched.
Add a step by appending to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from embedsearch.core.errors import MigrationFailed, SchemaTooNew
from embedsearch.store.database import Connection, first_line
from embedsearch.store.sql import ddl as ddl_sql
from embedsearch.store.sql import registry as registry_sql
from embedsearch.store.sql import schema as sql

log = logging.getLogger(__name__)


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
    tables = await (await conn.execute(registry_sql.REGISTERED_TABLES)).fetchall()
    for (table,) in tables:
        await conn.execute(ddl_sql.upgrade_chunk_table(table))


async def _m002_registry_checks(conn: Connection) -> None:
    await conn.execute(sql.V2_REGISTRY_CHECKS)


MIGRATIONS = (
    Migration(1, "collection registry and documents", _m001_registry_and_documents),
    Migration(
        2, "registry refuses unreadable distance, storage and dimensions", _m002_registry_checks
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
