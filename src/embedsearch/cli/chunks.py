"""`embedsearch embed` and `embedsearch search`: the brief's two operations."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from embedsearch.cli.common import app, run
from embedsearch.core.constants import DEFAULT_LIMIT, MAX_LIMIT
from embedsearch.core.distance import Distance
from embedsearch.core.errors import InvalidInput


@app.command()
def embed(
    chunk_id: Annotated[str, typer.Argument(help="Id of the chunk (at most 255 characters).")],
    text: Annotated[str, typer.Argument(help="Text to embed and store.")],
    collection: Annotated[
        str | None, typer.Option(help="Collection (default: the brief's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Embed one chunk and store it (replacing a chunk with the same id)."""
    from embedsearch.core.chunks import embed_chunk

    outcome = run(lambda deps: embed_chunk(deps, chunk_id, text, collection=collection))
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
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, help="How many results.")
    ] = DEFAULT_LIMIT,
    distance: Annotated[
        Distance | None, typer.Option(help="Distance metric (default: the collection's).")
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Collection (default: the brief's).")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"lang": "en"}\'.'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the stored chunks nearest to QUERY (score: distance, smaller is closer)."""
    from embedsearch.core.search import search as search_chunks

    outcome = run(
        lambda deps: search_chunks(
            deps,
            query,
            limit=limit,
            distance=distance,
            collection=collection,
            filter_=_filter(where),
        )
    )
    if as_json:
        results = [{"chunkId": h.chunk_id, "score": h.score} for h in outcome.hits]
        typer.echo(json.dumps({"results": results}))
        return
    if not outcome.hits:
        typer.echo("no results")
    for rank, hit in enumerate(outcome.hits, 1):
        preview = " ".join((hit.text or "").split())[:80]
        typer.echo(f"{rank:>3}  {hit.score:.4f}  {hit.chunk_id}  {preview}")


def _filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--filter is not valid JSON: {exc.msg}", field="filter") from None
    if not isinstance(value, dict):
        raise InvalidInput("--filter must be a JSON object", field="filter")
    return value
