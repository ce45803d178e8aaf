"""`embedsearch aliases set | list | drop`: other names for collections."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from embedsearch.cli.common import app, run

aliases_app = typer.Typer(help="Other names for collections.", no_args_is_help=True)
app.add_typer(aliases_app, name="aliases")


@aliases_app.command("set")
def set_alias(
    name: Annotated[str, typer.Argument(help="The alias: lowercase letters, digits and _.")],
    collection: Annotated[str, typer.Argument(help="The collection it names.")],
) -> None:
    """Make an alias, or point it at another collection (atomically)."""
    from embedsearch.core.aliases import set_alias as set_

    alias, previous = run(lambda deps: set_(deps, name, collection))
    moved = f" (was {previous})" if previous and previous != alias.collection else ""
    typer.echo(f"{alias.name} -> {alias.collection}{moved}")


@aliases_app.command("list")
def list_aliases(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Aliases and the collections they name."""
    from embedsearch.core.aliases import list_aliases as list_

    found = run(list_)
    if as_json:
        typer.echo(json.dumps([{"name": a.name, "collection": a.collection} for a in found]))
        return
    for alias in found:
        typer.echo(f"{alias.name} -> {alias.collection}")


@aliases_app.command("drop")
def drop_alias(name: Annotated[str, typer.Argument(help="The alias to remove.")]) -> None:
    """Remove an alias; its collection stays."""
    from embedsearch.core.aliases import drop_alias as drop

    collection = run(lambda deps: drop(deps, name))
    typer.echo(f"dropped alias {name} (collection {collection} kept)")
