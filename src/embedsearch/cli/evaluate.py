"""`embedsearch eval DATASET_DIR`: retrieval quality and latency on a BEIR-format dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedsearch.cli.common import EXIT_FAILURE, app, fail, run
from embedsearch.core.errors import EmbedsearchError, InvalidInput
from embedsearch.core.search_mode import SearchMode

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.core.evaluation import EvalResult

_ALL_MODES = ",".join(mode.value for mode in SearchMode)  # also the --modes default


@app.command("eval")
def evaluate(
    dataset_dir: Annotated[
        Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
    ],
    collection: Annotated[
        str | None,
        typer.Option(help="Collection to ingest into and search (default: eval_<folder name>)."),
    ] = None,
    modes: Annotated[str, typer.Option(help="Comma-separated search modes.")] = _ALL_MODES,
    max_queries: Annotated[
        int | None, typer.Option(min=1, help="Only the first N judged queries.")
    ] = None,
    out_json: Annotated[Path | None, typer.Option(help="Also write the results as JSON.")] = None,
    out_markdown: Annotated[
        Path | None, typer.Option(help="Also write the results as a markdown table.")
    ] = None,
    split: Annotated[str, typer.Option(help="Which qrels file: qrels/<split>.tsv.")] = "test",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Ingest the corpus into a scratch collection (re-runs embed nothing new), run every query
    in each mode, and report nDCG@10, Recall@100, MRR@10, ANN recall@10 and latency."""
    from rich.console import Console

    from embedsearch.core.evaluation import EvalOptions
    from embedsearch.core.evaluation import evaluate as run_evaluation
    from embedsearch.core.validation import check_collection_name
    from embedsearch.evaluation import load_dataset
    from embedsearch.evaluation.dataset import default_collection
    from embedsearch.evaluation.report import print_table, to_json, to_markdown

    started = time.perf_counter()
    # Everything about the input is checked before the database and the model start.
    try:
        chosen = _modes(modes)
        for path in (out_json, out_markdown):
            if path is not None and path.is_dir():
                raise InvalidInput(f"{path} is a folder; give a file name")
        name = check_collection_name(collection or default_collection(dataset_dir))
        dataset = load_dataset(dataset_dir, split).head(max_queries)
    except EmbedsearchError as exc:
        fail(exc)

    options = EvalOptions(modes=chosen, collection=name)

    async def work(deps: Deps) -> EvalResult:
        with _progress(quiet) as progress:
            ingesting = progress.add_task("ingest", total=dataset.documents)
            searching = progress.add_task("queries", total=len(dataset.queries) * len(chosen))
            return await run_evaluation(
                deps,
                dataset,
                options,
                on_ingest=lambda docs, _chunks: progress.advance(ingesting, docs),
                on_query=lambda _mode: progress.advance(searching),
            )

    result = run(work)
    print_table(result, Console())
    try:
        if out_json is not None:
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(to_json(result), encoding="utf-8")
        if out_markdown is not None:
            out_markdown.parent.mkdir(parents=True, exist_ok=True)
            out_markdown.write_text(to_markdown(result), encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write the results: {exc}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    typer.echo(f"done in {time.perf_counter() - started:.1f} s (database and model start included)")


def _modes(raw: str) -> tuple[SearchMode, ...]:
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not names:
        raise InvalidInput(f"--modes is empty; choose from {_ALL_MODES}", field="modes")
    for name in names:
        if name not in {mode.value for mode in SearchMode}:
            raise InvalidInput(f"unknown mode {name!r}; choose from {_ALL_MODES}", field="modes")
    return tuple(SearchMode(name) for name in dict.fromkeys(names))


def _progress(quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # On stderr: stdout carries only the results table.
    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
