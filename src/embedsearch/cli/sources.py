"""`embedsearch sources add | list | show | delete | run`: tables kept in sync as documents."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from embedsearch.cli.common import app, run, settings

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.core.sources import SourceStatus

sources_app = typer.Typer(help="Keep PostgreSQL tables in sync as documents.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and _.")],
    table: Annotated[str, typer.Option(help="'table' or 'schema.table'.")],
    id_column: Annotated[str, typer.Option(help="Its primary key (or a unique column).")],
    text_column: Annotated[
        list[str], typer.Option(help="A text column; repeat for several (joined by blank lines).")
    ],
    collection: Annotated[str, typer.Option(help="Target collection, created if absent.")],
    metadata_column: Annotated[
        list[str] | None, typer.Option(help="A column kept as metadata; repeat for several.")
    ] = None,
    where: Annotated[
        str | None, typer.Option(help="Row filter: one SQL expression over the table's columns.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="EMBEDSEARCH_SOURCE_URL",
            help="The source database (default: the service's own). Prefer the environment"
            " variable: a command line is visible to other users.",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    """Add a source: change capture is created in its database and its rows are backfilled by
    the sync worker (`embedsearch serve`, or `embedsearch sources run`)."""
    from embedsearch.core import sources

    given = sources.SourceInput(
        name=name,
        table=table,
        id_column=id_column,
        text_columns=text_column,
        collection=collection,
        url=url,
        metadata_columns=metadata_column or [],
        row_filter=where,
    )
    record = run(lambda deps: sources.add(deps, given))
    spec = record.spec
    typer.echo(
        f"added source {spec.name}: {spec.schema}.{spec.table} -> collection {spec.collection}"
        f" ({record.backfill_total} rows to backfill)"
    )


def _as_dict(found: SourceStatus) -> dict[str, object]:
    from embedsearch.core.sources import masked_url

    record, spec = found.record, found.record.spec
    return {
        "name": spec.name,
        "url": masked_url(spec),
        "table": f"{spec.schema}.{spec.table}",
        "collection": spec.collection,
        "state": found.state,
        "pending": found.pending,
        "lagSeconds": found.lag_seconds,
        "lastError": found.error,
        "backfill": {"done": record.backfill_done, "total": record.backfill_total},
        "rowsSynced": record.rows_synced,
        "rowsDeleted": record.rows_deleted,
        "chunksEmbedded": record.chunks_embedded,
        "rowsPerSecond": record.rows_per_second,
    }


def _line(found: SourceStatus) -> str:
    record = found.record
    pending = "?" if found.pending is None else str(found.pending)
    lag = "" if not found.lag_seconds else f", lag {found.lag_seconds:.1f} s"
    progress = (
        f"backfill {record.backfill_done}/{record.backfill_total}"
        if record.phase == "backfill"
        else f"{record.rows_synced} rows synced"
    )
    error = f"  error: {found.error}" if found.state == "error" else ""
    return (
        f"{record.spec.name:<20} {found.state:<11} {progress}, {pending} pending{lag}"
        f" -> {record.spec.collection}{error}"
    )


@sources_app.command("list")
def list_sources(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Sources with their state, pending changes and lag."""
    from embedsearch.core.sources import list_all

    found = run(list_all)
    if as_json:
        typer.echo(json.dumps([_as_dict(s) for s in found], default=str))
        return
    for status in found:
        typer.echo(_line(status))


@sources_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The source.")],
) -> None:
    """One source's state, pending changes, lag, progress and last error, as JSON."""
    from embedsearch.core.sources import get

    typer.echo(json.dumps(_as_dict(run(lambda deps: get(deps, name))), default=str, indent=2))


@sources_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The source.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Forget it even if its database cannot be reached (objects stay)."
        ),
    ] = False,
) -> None:
    """Remove the source's trigger, function and queue from its database (the table and the
    collection stay)."""
    from embedsearch.core.sources import delete as delete_source

    if run(lambda deps: delete_source(deps, name, force=force)):
        typer.echo(f"deleted source {name}")
    else:
        typer.echo(
            f"forgot source {name}; its database did not answer, so its trigger, function and"
            f" queue (embedsearch_capture_{name}, embedsearch_queue_{name}) are still there"
        )


@sources_app.command("run")
def run_workers(
    names: Annotated[
        list[str] | None, typer.Argument(help="Sources to sync (default: all, and new ones).")
    ] = None,
) -> None:
    """Run the sync workers without the HTTP API, until interrupted (Ctrl-C or SIGTERM). Any
    number may run beside `embedsearch serve`: each source is synced by one at a time."""
    from embedsearch.core.source_sync import SourceSupervisor, sync_options
    from embedsearch.logs import configure_logging

    config = settings()
    configure_logging(config)

    async def work(deps: Deps) -> None:
        supervisor = SourceSupervisor(deps, sync_options(config), only=names or ())
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        supervisor.start()
        try:
            await stopping.wait()
        finally:
            await supervisor.stop()  # a batch cut short rolls back; it is done again next time
        typer.echo("stopped", err=True)

    run(work)
