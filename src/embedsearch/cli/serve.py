"""`embedsearch serve`: the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from embedsearch.cli.common import app, fail, settings
from embedsearch.core.errors import EmbedsearchError
from embedsearch.logs import configure_logging


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
    configure_logging(config)  # EMBEDSEARCH_LOG_FORMAT, request ids, secrets masked
    try:  # a bad key file or origin list stops the start with one line, not a traceback
        api = create_app(config)
    except EmbedsearchError as exc:
        fail(exc)
    uvicorn.run(
        api,
        host=host or config.host,
        port=port or config.port,
        log_level="info",
        log_config=None,  # uvicorn's lines (access log too) go through our handler
        # SIGTERM: requests in flight may finish for this long; later, ShutdownGuard's 503.
        timeout_graceful_shutdown=config.shutdown_timeout_s,
    )
