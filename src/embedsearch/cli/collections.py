"""`embedsearch collections list | create | drop | set-fusion`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from embedsearch.cli.common import app, fail, run
from embedsearch.core.constants import (
    DEFAULT_CONVEX_ALPHA,
    DEFAULT_HNSW_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    DEFAULT_RRF_K,
    DEFAULT_TEXT_CONFIG,
    MAX_SHARDS,
)
from embedsearch.core.distance import Distance
from embedsearch.core.errors import EmbedsearchError, InvalidInput
from embedsearch.core.fusion import Fusion, FusionMethod
from embedsearch.core.vector_index import IndexSpec, IndexType, Storage
from embedsearch.store.records import CollectionOptions

collections_app = typer.Typer(help="Manage collections.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")


@collections_app.command("list")
def list_collections(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Collections with their model, dimensions and chunk count."""
    from embedsearch.core.collections import list_all

    found = run(list_all)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"name": r.name, "model": r.model, "dimensions": r.dimensions, "count": n}
                    for r, n in found
                ]
            )
        )
        return
    for record, count in found:
        typer.echo(
            f"{record.name:<20} {record.model:<28} {record.dimensions:>5} dims"
            f"  {record.distance.value:<13} {count:>9} chunks"
        )


@collections_app.command("create")
def create_collection(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and _.")],
    embedder: Annotated[
        str | None, typer.Option(help="e.g. local:all-MiniLM-L6-v2 (default: the configured one).")
    ] = None,
    dimensions: Annotated[int | None, typer.Option(min=1, help="For OpenAI models.")] = None,
    distance: Annotated[Distance, typer.Option(help="Default distance.")] = Distance.COSINE,
    storage: Annotated[
        Storage, typer.Option(help="halfvec: float16, half the size, indexes up to 4000 dims.")
    ] = Storage.VECTOR,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Keep the model's vectors as they are (not unit length); the index "
            "then follows --distance.",
        ),
    ] = False,
    index: Annotated[
        IndexType, typer.Option(help="hnsw, or none (build IVFFlat after loading).")
    ] = IndexType.HNSW,
    m: Annotated[int, typer.Option(help="HNSW: links per node.")] = DEFAULT_HNSW_M,
    ef_construction: Annotated[
        int, typer.Option(help="HNSW: build beam width.")
    ] = DEFAULT_HNSW_EF_CONSTRUCTION,
    text_config: Annotated[
        str, typer.Option(help="Text search configuration for lexical search: english, simple, ...")
    ] = DEFAULT_TEXT_CONFIG,
    shards: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_SHARDS,
            help="Hash-distribute the chunks over a Citus cluster in this many shards (the "
            "database must be a Citus coordinator).",
        ),
    ] = None,
) -> None:
    """Create a collection."""
    options = CollectionOptions(
        distance, storage, not raw, IndexSpec(index, m, ef_construction), text_config, shards
    )
    from embedsearch.core import collections

    record = run(
        lambda deps: collections.create(
            deps, name, embedder=embedder, dimensions=dimensions, options=options
        )
    )
    sharded = f", {record.shards} shards on Citus" if record.shards is not None else ""
    typer.echo(f"created {record.name}: {record.model}, {record.dimensions} dims{sharded}")


@collections_app.command("drop")
def drop_collection(
    name: Annotated[str, typer.Argument(help="The collection to drop, with all its chunks.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop a collection and everything in it."""
    if not yes:
        typer.confirm(f"Drop collection {name!r} and all its chunks?", abort=True)
    from embedsearch.core.collections import drop

    run(lambda deps: drop(deps, name))
    typer.echo(f"dropped {name}")


@collections_app.command("compact")
def compact_collection(
    name: Annotated[str, typer.Argument(help="The collection to rewrite.")],
) -> None:
    """Rewrite a collection's table: vectors stored by releases before schema version 4 move
    from TOAST into the rows (faster searches), dead rows are dropped. Reads and writes of the
    collection wait while it runs."""
    from embedsearch.core.collections import compact

    before, after = run(lambda deps: compact(deps, name))
    typer.echo(f"compacted {name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")


@collections_app.command("set-fusion")
def set_fusion(
    name: Annotated[str, typer.Argument(help="The collection.")],
    method: Annotated[
        FusionMethod | None,
        typer.Option(help="convex (weighted scores) or rrf (ranks); implied by --alpha or --k."),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help=f"convex: the dense weight, 0 to 1 (default {DEFAULT_CONVEX_ALPHA})."),
    ] = None,
    k: Annotated[int | None, typer.Option(help=f"rrf: k (default {DEFAULT_RRF_K}).")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Forget the stored fusion: the built-in one again.")
    ] = False,
) -> None:
    """Store the fusion hybrid search uses for this collection when a request gives none
    (`embedsearch eval --sweep` finds the best one for your judgments)."""
    try:
        fusion = _fusion(method, alpha, k, clear)
    except EmbedsearchError as exc:
        fail(exc)
    from embedsearch.core import collections
    from embedsearch.core.evaluation import fusion_label

    record = run(lambda deps: collections.set_fusion(deps, name, fusion))
    if fusion is None:
        typer.echo(
            f"cleared the default fusion of {record.name}: hybrid searches use the built-in "
            f"{fusion_label(Fusion())}"
        )
    else:
        typer.echo(
            f"{record.name}: hybrid searches now fuse with {fusion_label(fusion)} by default"
        )


def _fusion(
    method: FusionMethod | None, alpha: float | None, k: int | None, clear: bool
) -> Fusion | None:
    """The options as a checked Fusion (None for --clear), before the database starts."""
    if clear:
        if method is not None or alpha is not None or k is not None:
            raise InvalidInput("--clear takes no --method, --alpha or --k", field="clear")
        return None
    if method is None:
        if alpha is not None and k is not None:
            raise InvalidInput("--alpha is for convex, --k for rrf: give one", field="method")
        if alpha is None and k is None:
            raise InvalidInput("give --method, --alpha or --k (or --clear)", field="method")
        method = FusionMethod.RRF if k is not None else FusionMethod.CONVEX
    if method is FusionMethod.CONVEX and k is not None:
        raise InvalidInput("--k applies to rrf, not convex", field="k")
    if method is FusionMethod.RRF and alpha is not None:
        raise InvalidInput("--alpha applies to convex, not rrf", field="alpha")
    fusion = Fusion(
        method,
        k=DEFAULT_RRF_K if k is None else k,
        alpha=DEFAULT_CONVEX_ALPHA if alpha is None else alpha,
    )
    return fusion.check()
