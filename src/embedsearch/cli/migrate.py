"""`embedsearch migrate COLLECTION --embedder NEW`: embed a collection again with another model
into a new collection, compare the rankings, and switch the name to it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedsearch.cli.common import app, run, settings

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.store.model_migrations import MigrationRecord

_PROGRESS_EVERY_S = 2.0


@app.command("migrate")
def migrate(
    collection: Annotated[str, typer.Argument(help="The collection, or an alias of it.")],
    embedder: Annotated[
        str | None, typer.Option(help="The new model, e.g. openai:text-embedding-3-small.")
    ] = None,
    dimensions: Annotated[int | None, typer.Option(help="The new model's size.")] = None,
    switch: Annotated[
        bool, typer.Option("--switch", help="Switch the name to the new collection when done.")
    ] = False,
    judgments: Annotated[
        Path | None,
        typer.Option(help="A BEIR folder (queries.jsonl, qrels/test.tsv): nDCG@10 of both."),
    ] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show the migration; change nothing.")
    ] = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Stop the migration and drop its new collection.")
    ] = False,
    background: Annotated[
        bool,
        typer.Option(
            "--background", help="Only start it: a running `embedsearch serve` carries it on."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build COLLECTION again with another model while it keeps serving (writes made meanwhile
    reach the new one too), compare the rankings, and with --switch move the name and its
    aliases to the new collection. Run again to resume or to switch; the old collection is
    kept until dropped."""
    from embedsearch.core import model_migration

    async def work(deps: Deps) -> MigrationRecord:
        if status:
            return await model_migration.status(deps, collection)
        if cancel:
            return await model_migration.cancel(deps, collection)
        if embedder is None:  # switch (or resume) the running migration
            record = await model_migration.status(deps, collection)
            if switch:
                record = await model_migration.ask_switch(deps, collection)
        else:
            record, _ = await model_migration.start(
                deps,
                collection,
                embedder=embedder,
                dimensions=dimensions,
                switch=switch,
                judgments=_judgments(judgments) if judgments else None,
            )
        if background or not record.active:
            return record
        return await _carry_on(deps, record)

    record = run(work)
    if as_json:
        typer.echo(json.dumps(model_migration.describe(record), default=str))
        return
    _print(record)


async def _carry_on(deps: Deps, record: MigrationRecord) -> MigrationRecord:
    """Run the migration here until it is complete (and switched, if asked), printing progress."""
    from embedsearch.core.model_migration import MigrationRunner, migration_options

    runner = MigrationRunner(deps, record.id, migration_options(settings()), until_ready=True)
    task = asyncio.create_task(runner.run())
    while not task.done():
        await asyncio.wait([task], timeout=_PROGRESS_EVERY_S)
        now = await deps.store.migrations.get(record.id)
        if now is not None and not task.done():
            typer.echo(
                f"{now.state}: {now.backfill_done}/{now.backfill_total} chunks,"
                f" {now.pending} writes pending",
                err=True,
            )
    return task.result()


def _judgments(folder: Path) -> dict[str, Any]:
    from embedsearch.evaluation.dataset import load_dataset

    dataset = load_dataset(folder)
    return {"queries": dataset.queries, "qrels": dataset.qrels}


def _print(record: MigrationRecord) -> None:
    typer.echo(
        f"migration {record.id}: {record.source} -> {record.target} ({record.embedder}),"
        f" {record.state}; backfill {record.backfill_done}/{record.backfill_total},"
        f" {record.pending} writes pending"
    )
    comparison = record.comparison or {}
    if comparison.get("overlapAt10") is not None:
        typer.echo(
            f"top-10 overlap on {comparison['queries']} sample queries:"
            f" {comparison['overlapAt10']:.3f} (min {comparison['minOverlapAt10']:.2f})"
        )
    ndcg = comparison.get("ndcgAt10")
    if ndcg:
        typer.echo(
            f"nDCG@10 old {ndcg['old']:.4f}, new {ndcg['new']:.4f} ({ndcg['queries']} queries)"
        )
    if record.state == "switched":
        old = f"; the old collection is {record.archived_as}" if record.archived_as else ""
        typer.echo(f"{record.name} now reaches {record.target}{old}")
    elif record.state == "ready":
        typer.echo(f"switch with: embedsearch migrate {record.name} --switch")
    if record.last_error:
        typer.echo(f"last error: {record.last_error}", err=True)
