"""The FastAPI application factory. Resources are built in the lifespan, from the settings given."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from embedsearch import __version__
from embedsearch.api.errors import install_error_handlers
from embedsearch.api.routes import (
    chunks,
    collections,
    documents,
    health,
    openai_compat,
    search,
)
from embedsearch.config import Settings
from embedsearch.embedders import Embedder
from embedsearch.runtime import open_deps

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app. `embedder` lets tests and embedding hosts share one loaded model."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_deps(settings, embedder=embedder, preload=True) as deps:
            app.state.deps = deps
            model = (await deps.embedders.default()).embedder
            log.info("embedsearch ready: model %s, %d dims", model.name, model.dimensions)
            yield
            app.state.deps = None

    app = FastAPI(
        title="embedsearch",
        version=__version__,
        description="Semantic search on PostgreSQL + pgvector.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (chunks, documents, search, collections, health, openai_compat):
        app.include_router(module.router)
    return app
