"""Wiring: start (or connect to) PostgreSQL, migrate its schema, and hand out the use cases'
dependencies. Models load on first use (or at once with `preload`, as the server does).

Used by the API's lifespan, the CLI and library users; everything it opens it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from embedsearch.config import Settings
from embedsearch.core.deps import Deps, Limits
from embedsearch.embedders import Embedder
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.store import Store
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.replicas import ReplicaOptions, replica_names

log = logging.getLogger(__name__)


async def _database_url(settings: Settings, stack: AsyncExitStack) -> str:
    if settings.database_url is not None:
        log.info("using external PostgreSQL")
        return settings.database_url.get_secret_value()
    embedded = await asyncio.to_thread(EmbeddedPostgres, settings.pgdata)
    stack.push_async_callback(asyncio.to_thread, embedded.stop)  # pg_ctl stop: off the loop
    return embedded.url


def _replicas(settings: Settings) -> ReplicaOptions | None:
    urls = settings.replica_urls
    if not urls:
        return None
    log.info("read replicas: %d (%s)", len(urls), ", ".join(replica_names(urls)))
    return ReplicaOptions(
        urls,
        max_lag_s=settings.replica_max_lag_s,
        check_interval_s=settings.replica_check_interval_s,
        min_lsn_wait_s=settings.min_lsn_wait_s,
    )


@asynccontextmanager
async def open_deps(
    settings: Settings, *, embedder: Embedder | None = None, preload: bool = False
) -> AsyncIterator[Deps]:
    """Open what the use cases need. `embedder`: one already loaded model to share (the
    caller owns it). `preload`: load the default model now, while PostgreSQL starts."""
    async with AsyncExitStack() as stack:
        embedders = EmbedderRegistry(settings, embedder)
        stack.callback(embedders.close)
        loading = asyncio.create_task(embedders.default()) if preload else None
        try:
            store = Store(
                await _database_url(settings, stack),
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                timeout_s=settings.db_timeout_s,
                ef_search=settings.ef_search,
                write_retries=settings.write_retries,
                replicas=_replicas(settings),
            )
            stack.push_async_callback(store.close)
            await store.open()
            default = await embedders.describe(None, settings.dimensions)
            await store.registry.ensure_default(
                model=default.name, dimensions=default.dimensions, embedder=settings.embedder
            )
            if loading is not None:
                await loading
        except BaseException:
            if loading is not None:  # a failed start must not leave the model loading
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
            raise
        yield Deps(store, embedders, Limits.from_settings(settings))
