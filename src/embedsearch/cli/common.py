"""The typer app and what every command shares: settings, running a use case, exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from embedsearch.config import Settings
from embedsearch.errors import Conflict, EmbedsearchError, InvalidInput, NotFound, PayloadTooLarge

app = typer.Typer(
    help="Semantic search on PostgreSQL + pgvector.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
T = TypeVar("T")

# Exit codes: 2 for bad input (like a usage error), 1 for failures of the database or provider
# (and for an ingest in which some files failed).
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the service, run one use case, close everything; errors become clear messages."""
    from embedsearch.runtime import open_service

    async def main() -> T:
        async with open_service(settings()) as service:
            return await work(service)

    try:
        return asyncio.run(main())
    except EmbedsearchError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        bad_input = isinstance(exc, InvalidInput | NotFound | PayloadTooLarge | Conflict)
        raise typer.Exit(EXIT_BAD_INPUT if bad_input else EXIT_FAILURE) from None
