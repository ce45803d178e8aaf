"""Command line: `embedsearch serve | embed | search`. Heavy imports happen inside commands."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from embedsearch.config import Settings
from embedsearch.distance import Distance
from embedsearch.errors import EmbedsearchError, InvalidInput, NotFound, PayloadTooLarge
from embedsearch.validation import MAX_LIMIT

app = typer.Typer(
    help="Semantic search on PostgreSQL + pgvector.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
T = TypeVar("T")

# Exit codes: 2 for bad input (like a usage error), 1 for failures of the database or provider.
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the service, run one use case, close everything; errors become clear messages."""
    from embedsearch.runtime import open_service

    async def main() -> T:
        async with open_service(_settings()) as service:
            return await work(service)

    try:
        return asyncio.run(main())
    except EmbedsearchError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        bad_input = isinstance(exc, InvalidInput | NotFound | PayloadTooLarge)
        raise typer.Exit(EXIT_BAD_INPUT if bad_input else EXIT_FAILURE) from None


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

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


@app.command()
def embed(
    chunk_id: Annotated[str, typer.Argument(help="Id of the chunk (at most 255 characters).")],
    text: Annotated[str, typer.Argument(help="Text to embed and store.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Embed one chunk and store it (replacing a chunk with the same id)."""
    outcome = _run(lambda service: service.embed_chunk(chunk_id, text))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "chunkId": outcome.chunk_id,
                    "dimensions": outcome.dimensions,
                    "model": outcome.model,
                    "created": outcome.created,
                    "truncated": outcome.truncated,
                }
            )
        )
        return
    action = "stored" if outcome.created else "replaced"
    note = " (text truncated to the model's window)" if outcome.truncated else ""
    typer.echo(f"{action} {outcome.chunk_id}: {outcome.dimensions} dims, {outcome.model}{note}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="How many results.")] = 5,
    distance: Annotated[Distance, typer.Option(help="Distance metric.")] = Distance.COSINE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the stored chunks nearest to QUERY (score: distance, smaller is closer)."""
    outcome = _run(lambda service: service.search(query, limit=limit, distance=distance))
    if as_json:
        results = [{"chunkId": h.chunk_id, "score": h.score} for h in outcome.hits]
        typer.echo(json.dumps({"results": results}))
        return
    if not outcome.hits:
        typer.echo("no results")
    for rank, hit in enumerate(outcome.hits, 1):
        preview = " ".join((hit.text or "").split())[:80]
        typer.echo(f"{rank:>3}  {hit.score:.4f}  {hit.chunk_id}  {preview}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
