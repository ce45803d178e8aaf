"""`embedsearch eval DATASET_DIR`: retrieval quality and latency on a BEIR-format dataset;
with --sweep, hybrid search's fusion settings scored on it (--save-fusion keeps the best)."""

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
    from embedsearch.core.evaluation import EvalResult, SweepResult

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
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Also score hybrid fusions on these judgments (convex alpha 0.0 to 1.0, rrf "
            "k 60, each list alone) and name the best for the collection.",
        ),
    ] = False,
    save_fusion: Annotated[
        bool,
        typer.Option(
            "--save-fusion",
            help="With --sweep: store the best as the collection's default fusion (what "
            "hybrid searches without `fusion` use).",
        ),
    ] = False,
) -> None:
    """Ingest the corpus into a scratch collection (re-runs embed nothing new), run every query
    in each mode, and report nDCG@10, Recall@100, MRR@10, ANN recall@10 and latency. --sweep
    then scores hybrid search's fusion settings on the same judgments and names the best one
    for the collection; --save-fusion makes it the collection's default."""
    from rich.console import Console

    from embedsearch.core.collections import set_fusion
    from embedsearch.core.evaluation import EvalOptions, fusion_label
    from embedsearch.core.evaluation import evaluate as run_evaluation
    from embedsearch.core.evaluation import sweep as run_sweep
    from embedsearch.core.validation import check_collection_name
    from embedsearch.evaluation import load_dataset
    from embedsearch.evaluation.dataset import default_collection
    from embedsearch.evaluation.report import print_sweep, print_table, to_json, to_markdown

    started = time.perf_counter()
    # Everything about the input is checked before the database and the model start.
    try:
        if save_fusion and not sweep:
            raise InvalidInput("--save-fusion stores what --sweep finds: add --sweep")
        chosen = _modes(modes)
        for path in (out_json, out_markdown):
            if path is not None and path.is_dir():
                raise InvalidInput(f"{path} is a folder; give a file name")
        name = check_collection_name(collection or default_collection(dataset_dir))
        dataset = load_dataset(dataset_dir, split).head(max_queries)
    except EmbedsearchError as exc:
        fail(exc)

    options = EvalOptions(modes=chosen, collection=name)

    async def work(deps: Deps) -> tuple[EvalResult, SweepResult | None]:
        with _progress(quiet) as progress:
            ingesting = progress.add_task("ingest", total=dataset.documents)
            searching = progress.add_task("queries", total=len(dataset.queries) * len(chosen))
            sweeping = progress.add_task("sweep", total=len(dataset.queries), visible=sweep)
            result = await run_evaluation(
                deps,
                dataset,
                options,
                on_ingest=lambda docs, _chunks: progress.advance(ingesting, docs),
                on_query=lambda _mode: progress.advance(searching),
            )
            if not sweep:
                return result, None
            swept = await run_sweep(
                deps, dataset, name, on_query=lambda: progress.advance(sweeping)
            )
        if save_fusion:
            best = swept.best.fusion
            assert best is not None  # the best is a fusion, never a list alone
            await set_fusion(deps, name, best)
        return result, swept

    result, swept = run(work)
    console = Console()
    print_table(result, console)
    if swept is not None:
        console.print()
        print_sweep(swept, console)
        if save_fusion:
            assert swept.best.fusion is not None
            typer.echo(
                f"stored {fusion_label(swept.best.fusion)} as the default fusion of {name}: "
                "hybrid searches that give no fusion use it"
            )
    try:
        if out_json is not None:
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(to_json(result, swept), encoding="utf-8")
        if out_markdown is not None:
            out_markdown.parent.mkdir(parents=True, exist_ok=True)
            out_markdown.write_text(to_markdown(result, swept), encoding="utf-8")
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
