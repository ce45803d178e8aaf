"""Wiring: start (or connect to) PostgreSQL, load the embedder, and hand out a SearchService.

Used by the API's lifespan, the CLI and library users; everything it opens it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from embedsearch.config import Settings
from embedsearch.embedders import Embedder, build_embedder
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.service import SearchService
from embedsearch.store import PgStore
from embedsearch.store.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)


async def _database_url(settings: Settings, stack: AsyncExitStack) -> str:
    if settings.database_url is not None:
        log.info("using external PostgreSQL")
        return settings.database_url.get_secret_value()
    embedded = await asyncio.to_thread(EmbeddedPostgres, settings.pgdata)
    stack.callback(embedded.stop)
    return embedded.url


async def _embedder(settings: Settings, shared: Embedder | None, stack: AsyncExitStack) -> Embedder:
    if shared is not None:
        return shared  # the caller owns it
    embedder = await asyncio.to_thread(build_embedder, settings)
    stack.callback(embedder.close)
    return embedder


@asynccontextmanager
async def open_service(
    settings: Settings, *, embedder: Embedder | None = None
) -> AsyncIterator[SearchService]:
    """Open everything the service needs. Pass `embedder` to share one already loaded model."""
    async with AsyncExitStack() as stack:
        # Start PostgreSQL and load the model at the same time: both take a moment.
        url_task = asyncio.create_task(_database_url(settings, stack))
        embedder_task = asyncio.create_task(_embedder(settings, embedder, stack))
        await asyncio.wait([url_task, embedder_task])
        url, active = url_task.result(), embedder_task.result()

        embedders = EmbedderRegistry(settings, active)
        stack.callback(embedders.close)
        store = PgStore(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout_s=settings.db_timeout_s,
            ef_search=settings.ef_search,
        )
        stack.push_async_callback(store.close)
        await store.open(
            model=active.name, dimensions=active.dimensions, embedder=settings.embedder
        )
        yield SearchService(
            embedders,
            store,
            max_text_chars=settings.max_text_chars,
            max_batch_items=settings.max_batch_items,
            max_document_chars=settings.max_document_chars,
            index_build_memory_bytes=settings.index_build_memory_mb * 2**20,
            defer_index_min_documents=settings.defer_index_min_documents,
        )
