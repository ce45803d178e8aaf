"""The FastAPI application factory. Resources are built in the lifespan, from the settings given."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from embedsearch import __version__
from embedsearch.api.auth import install_access_control
from embedsearch.api.errors import install_error_handlers
from embedsearch.api.limits import BodySizeLimit
from embedsearch.api.metrics import Metrics, ObserveRequests
from embedsearch.api.read_your_writes import ReadYourWrites
from embedsearch.api.routes import (
    aliases,
    chunks,
    collections,
    documents,
    files,
    health,
    metrics,
    migrations,
    openai_compat,
    search,
    sources,
    ui,
)
from embedsearch.api.shutdown import InFlight, ShutdownGuard
from embedsearch.config import Settings
from embedsearch.core.model_migration import MigrationSupervisor, migration_options
from embedsearch.core.source_sync import SourceSupervisor, sync_options
from embedsearch.embedders import Embedder
from embedsearch.runtime import open_deps

log = logging.getLogger(__name__)
# After a shutdown's deadline: how long cancelled requests get to send their 503 (a query's
# cancel needs PostgreSQL's answer; psycopg waits up to 5 s for it).
_CANCELLED_REQUESTS_WAIT_S = 6.0


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app. `embedder` lets tests and embedding hosts share one loaded model."""
    settings = settings or Settings()
    observed = Metrics()
    inflight = InFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_deps(settings, embedder=embedder, preload=True) as deps:
            app.state.deps = deps
            observed.watch(deps.embedders)
            model = (await deps.embedders.default()).embedder
            log.info("embedsearch ready: model %s, %d dims", model.name, model.dimensions)
            # The sources' sync workers (one per source across processes: advisory locks).
            syncing = (
                SourceSupervisor(deps, sync_options(settings)) if settings.source_sync else None
            )
            # Model migrations (one worker per migration across processes: advisory locks).
            migrating = (
                MigrationSupervisor(deps, migration_options(settings))
                if settings.migration_worker
                else None
            )
            for worker in (syncing, migrating):
                if worker is not None:
                    worker.start()
            yield
            for worker in (syncing, migrating):
                if worker is not None:
                    await worker.stop()
            # Requests a shutdown cancelled finish their answer before the pool closes.
            await inflight.wait(_CANCELLED_REQUESTS_WAIT_S)
            app.state.deps = None

    app = FastAPI(
        title="embedsearch",
        version=__version__,
        description="Semantic search on PostgreSQL + pgvector.",
        lifespan=lifespan,
        # Starlette's redirect puts the Host header into Location; errors.py redirects instead.
        redirect_slashes=False,
    )
    app.state.metrics = observed
    install_error_handlers(app)
    routers = (
        chunks,
        documents,
        files,
        search,
        collections,
        aliases,
        migrations,
        sources,
        health,
        metrics,
        openai_compat,
    )
    for module in routers:
        app.include_router(module.router)
    ui.install(app)  # the search page at / and /ui/...
    # Innermost: a request cancelled by a shutdown's deadline answers 503 through the others.
    app.add_middleware(ShutdownGuard, inflight=inflight)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Which server a request's reads use, and the write's WAL position (after the key check).
    app.add_middleware(ReadYourWrites, deps=lambda: getattr(app.state, "deps", None))
    # Last, so the key check and CORS wrap every other middleware.
    install_access_control(app, settings)
    # After even that: outermost, so 401s and CORS answers carry the request id and count too.
    app.add_middleware(ObserveRequests, metrics=observed)
    return app
