"""`embedsearch ingest PATH...`: files and BEIR corpora into a collection, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedsearch.cli.common import EXIT_FAILURE, app, run
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.vector_index import Storage

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.ingest.pipeline import Summary


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files and folders (.txt .md .html .pdf, BEIR .jsonl).")
    ],
    collection: Annotated[
        str | None,
        typer.Option(help="Collection (default: the brief's); created if it does not exist."),
    ] = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="For a new collection: e.g. local:all-MiniLM-L6-v2 (default: the configured one)."
        ),
    ] = None,
    dimensions: Annotated[
        int | None, typer.Option(min=1, help="For a new collection: OpenAI models' size.")
    ] = None,
    storage: Annotated[
        Storage | None, typer.Option(help="For a new collection: vector (float32) or halfvec.")
    ] = None,
    glob: Annotated[str, typer.Option(help="Which files to take inside folders.")] = "**/*",
    max_tokens: Annotated[
        int | None, typer.Option(min=8, help="Tokens per chunk (default: the model's window).")
    ] = None,
    overlap: Annotated[int, typer.Option(min=0, help="Tokens shared by neighbouring chunks.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Chunk, embed and store documents. Re-runs skip unchanged documents, so an interrupted
    run can simply be started again. A collection that does not exist is created first."""
    from embedsearch.core.collections import ensure
    from embedsearch.ingest.pipeline import ingest as run_ingest
    from embedsearch.ingest.readers import count_documents, discover

    sources, missing = discover(paths, glob)
    options = ChunkingOptions(max_tokens, overlap)

    async def work(deps: Deps) -> Summary:
        created = await ensure(
            deps, collection, embedder=embedder, dimensions=dimensions, storage=storage
        )
        if created is not None:
            typer.echo(
                f"created collection {created.name}: {created.model}, {created.dimensions} dims,"
                f" {created.storage.value}"
            )
        total = sum(count_documents(s) for s in sources)
        with _progress(quiet) as progress:
            task = progress.add_task("ingest", total=total, chunks=0)

            def advance(documents: int, chunks: int) -> None:
                done = progress.tasks[task].fields["chunks"] + chunks
                progress.update(task, advance=documents, chunks=done)

            summary = await run_ingest(
                deps,
                sources,
                collection=collection,
                options=options,
                on_progress=advance,
                expected_documents=total,
            )
        summary.failed[:0] = missing
        return summary

    summary = run(work)
    rate = summary.chunks_embedded / summary.seconds if summary.seconds else 0.0
    typer.echo(
        f"{summary.documents} documents: {summary.new} new, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {len(summary.failed)} failed; "
        f"{summary.chunks_embedded} chunks embedded in {summary.seconds:.1f} s ({rate:.1f} chunks/s)"
    )
    if summary.index_seconds is not None:
        typer.echo(f"built the deferred HNSW index in {summary.index_seconds:.1f} s")
    for failure in summary.failed:
        typer.echo(f"failed: {failure.source}: {failure.reason}", err=True)
    if summary.failed:
        raise typer.Exit(EXIT_FAILURE)


def _progress(quiet: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class ChunkRate(ProgressColumn):
        def render(self, task: Task) -> Text:
            chunks = task.fields.get("chunks", 0)
            rate = chunks / task.elapsed if task.elapsed else 0.0
            return Text(f"{chunks} chunks, {rate:.1f} chunks/s")

    return Progress(
        TextColumn("documents"),
        BarColumn(),
        MofNCompleteColumn(),
        ChunkRate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=quiet,
    )
