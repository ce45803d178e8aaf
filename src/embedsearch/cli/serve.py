"""`embedsearch serve`: the HTTP API."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from embedsearch.cli.common import app, settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: EMBEDSEARCH_PORT or 8000).")
    ] = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from embedsearch.api.app import create_app

    config = settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(config),
        host=host or config.host,
        port=port or config.port,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
