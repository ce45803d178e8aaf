"""The typer app and what every command shares: settings, running a use case, exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from embedsearch.config import Settings
from embedsearch.core.errors import (
    Conflict,
    EmbedsearchError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps

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


def run(work: Callable[[Deps], Awaitable[T]]) -> T:
    """Open the database, run one use case, close everything; errors become clear messages.
    A model is loaded only if the use case embeds."""
    from embedsearch.runtime import open_deps

    async def main() -> T:
        async with open_deps(settings()) as deps:
            return await work(deps)

    try:
        return asyncio.run(main())
    except EmbedsearchError as exc:
        fail(exc)


def fail(exc: EmbedsearchError) -> NoReturn:
    """Print a domain error as one line and exit: 2 for bad input, 1 for the rest."""
    typer.echo(f"error: {exc.message}", err=True)
    bad_input = isinstance(exc, InvalidInput | NotFound | PayloadTooLarge | Conflict)
    raise typer.Exit(EXIT_BAD_INPUT if bad_input else EXIT_FAILURE) from None
