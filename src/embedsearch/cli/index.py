"""`embedsearch index build | check`: ANN index management and health."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedsearch.cli.common import app, run
from embedsearch.core.constants import DEFAULT_HNSW_EF_CONSTRUCTION, DEFAULT_HNSW_M
from embedsearch.core.vector_index import IndexSpec, IndexType

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.core.indexing import IndexReport

index_app = typer.Typer(help="Build and check a collection's ANN index.", no_args_is_help=True)
app.add_typer(index_app, name="index")

_POLL_S = 0.5


@index_app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="The collection.")],
    index_type: Annotated[IndexType, typer.Option("--type", help="none drops it.")] = (
        IndexType.HNSW
    ),
    m: Annotated[int, typer.Option(help="HNSW: links per node.")] = DEFAULT_HNSW_M,
    ef_construction: Annotated[
        int, typer.Option(help="HNSW: build beam width.")
    ] = DEFAULT_HNSW_EF_CONSTRUCTION,
    lists: Annotated[
        int | None, typer.Option(help="IVFFlat: clusters (default: from the row count).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Build or rebuild the index beside the current one (searches go on meanwhile)."""
    from embedsearch.core import indexing

    spec = IndexSpec(index_type, m, ef_construction, lists)

    async def work(deps: Deps) -> IndexReport:
        building = asyncio.create_task(indexing.build(deps, name, spec))
        with _progress(quiet) as progress:
            task = progress.add_task("starting", total=None)
            while not building.done():
                await asyncio.wait({building}, timeout=_POLL_S)
                state = await indexing.progress(deps, name)
                if state is not None:
                    total = state.blocks_total or None
                    progress.update(
                        task, description=state.phase, total=total, completed=state.blocks_done
                    )
        return building.result()

    report = run(work)
    params = ", ".join(f"{k}={v}" for k, v in report.options.items())
    typer.echo(
        f"{report.collection}: {report.type.value} ({params or 'no parameters'}) on "
        f"{report.rows} rows, {report.index_bytes / 2**20:.1f} MiB"
    )


@index_app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="The collection.")],
    sample: Annotated[int, typer.Option(min=0, help="Stored vectors used as queries.")] = 50,
    k: Annotated[int, typer.Option(min=1, max=100, help="Recall@k.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Index type, parameters, size, a live recall estimate and advice."""
    from embedsearch.core import indexing

    report = run(lambda deps: indexing.report(deps, name, sample=sample, k=k))
    if as_json:
        typer.echo(json.dumps(asdict(report), default=str))
        return
    params = ", ".join(f"{key}={value}" for key, value in report.options.items())
    recall = (
        f"{report.recall_at_k:.3f} (recall@{report.k} over {report.sample} stored vectors)"
        if report.recall_at_k is not None
        else "not measured"
    )
    lines = [
        f"collection  {report.collection} ({report.dimensions} dims, {report.storage.value})",
        f"index       {report.type.value} {params}".rstrip(),
        f"rows        {report.rows}"
        + (f" (index built on {report.index_rows})" if report.index_rows is not None else ""),
        f"size        index {report.index_bytes / 2**20:.1f} MiB, "
        f"table {report.table_bytes / 2**20:.1f} MiB",
        f"recall      {recall}",
    ]
    if report.build is not None:
        lines.append(f"building    {report.build.phase}")
    lines += [f"advice      {item}" for item in report.advice] or ["advice      none"]
    typer.echo("\n".join(lines))


def _progress(quiet: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        disable=quiet,
    )
