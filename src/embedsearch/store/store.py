"""The store: one database, its schema brought up to date at open, and the parts by job."""

from __future__ import annotations

from embedsearch.core.constants import DEFAULT_EF_SEARCH, DEFAULT_WRITE_RETRIES
from embedsearch.store.aliases import Aliases
from embedsearch.store.bm25 import Compactions
from embedsearch.store.collection import CollectionHandle
from embedsearch.store.database import Database
from embedsearch.store.ddl import Ddl
from embedsearch.store.indexes import IndexAdmin
from embedsearch.store.migrations import migrate
from embedsearch.store.model_migrations import ModelMigrations
from embedsearch.store.records import CollectionRecord
from embedsearch.store.registry import Registry
from embedsearch.store.replicas import ReplicaOptions
from embedsearch.store.sources import SourceRegistry
from embedsearch.store.sql import schema as sql


class Store:
    """`registry` (collections), `indexes` (ANN index administration), `sources` (the source
    registry) and `collection(record)` (a handle on one collection's chunks, search and
    documents)."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        ef_search: int = DEFAULT_EF_SEARCH,
        write_retries: int = DEFAULT_WRITE_RETRIES,
        replicas: ReplicaOptions | None = None,
    ) -> None:
        self.database = Database(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout_s=timeout_s,
            write_retries=write_retries,
            # Every session starts at the default: a search with it sets nothing.
            session_settings={"hnsw.ef_search": str(ef_search)},
            replicas=replicas,
        )
        self.ef_search = ef_search
        ddl = Ddl()
        self.registry = Registry(self.database, ddl)
        self.aliases = Aliases(self.database)
        self.indexes = IndexAdmin(self.database, ddl, self.registry)
        self.sources = SourceRegistry(self.database)
        self.migrations = ModelMigrations(self.database, self.registry)
        self._compactions = Compactions()

    async def open(self) -> None:
        """Migrate the schema (refusing one newer than this code; on the primary only, replicas
        replay it), then open the pools."""
        async with self.database.dedicated() as conn:
            await migrate(conn)
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    def collection(self, record: CollectionRecord) -> CollectionHandle:
        return CollectionHandle(
            self.database,
            record.table,
            record.name,
            record.layout,
            self.ef_search,
            record.text_config,
            self._compactions,
        )

    async def pgvector_version(self) -> str:
        """The primary's (/readyz reports it: a replica down does not make us unready)."""
        async with self.database.reading(primary=True) as conn:
            row = await (await conn.execute(sql.EXTENSION_VERSION)).fetchone()
            return str(row[0]) if row else "unknown"
