"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up and serving HTTP."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ErrorResponse}})
async def readyz(deps: DepsDep) -> ReadyResponse:
    """The database answers and the model is loaded."""
    version = await deps.store.pgvector_version()
    model = (await deps.embedders.default()).embedder  # loaded before the app is ready
    return ReadyResponse(
        status="ready", model=model.name, dimensions=model.dimensions, pgvector=version
    )
