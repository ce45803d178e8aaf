"""Prometheus metrics (api/metrics.py says what they are)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from embedsearch.api.metrics import Metrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    """Requests, latency, model batches and queue, database pool, rows per collection and
    index builds, in Prometheus text format."""
    observed: Metrics = request.app.state.metrics
    await observed.read(getattr(request.app.state, "deps", None))  # None while starting
    return Response(observed.render(), media_type=CONTENT_TYPE_LATEST)
