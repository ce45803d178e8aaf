"""Command line: `embedsearch serve | embed | search | ingest | collections | aliases | index |
sources | migrate | eval`.

Heavy imports (torch, onnxruntime, the API) happen inside commands, so --help is instant."""

from __future__ import annotations

import sys

from embedsearch.cli import (
    aliases,
    chunks,
    collections,
    evaluate,
    index,
    ingest,
    migrate,
    serve,
    sources,
)
from embedsearch.cli.common import app

__all__ = [
    "aliases",
    "app",
    "chunks",
    "collections",
    "evaluate",
    "index",
    "ingest",
    "main",
    "migrate",
    "serve",
    "sources",
]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
