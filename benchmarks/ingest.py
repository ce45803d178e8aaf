"""Ingesting a BEIR corpus with the CLI, against the model's own speed on the same chunks.

    python -m benchmarks.ingest [--dataset DIR]

Runs `embedsearch ingest corpus.jsonl` on a fresh embedded database, then embeds the very
chunk texts it stored with the model alone (same backend and settings) and prints the ratio;
then runs the same ingest again (nothing changed) and prints its time against the first.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import beir
from benchmarks.harness import median_of, report, run_cli
from embedsearch.config import Settings
from embedsearch.embedders import build_embedder
from embedsearch.store.embedded import EmbeddedPostgres

SUMMARY = re.compile(r"(\d+) chunks embedded in ([\d.]+) s \(([\d.]+) chunks/s\)")


def run_ingest(corpus: Path, data_dir: Path) -> tuple[float, float, int]:
    """(wall seconds, pipeline chunks/s, chunks embedded) of one CLI ingest."""
    start = time.perf_counter()
    result = run_cli(data_dir, "ingest", str(corpus), "--quiet")
    wall = time.perf_counter() - start
    for line in result.stdout.strip().splitlines():
        print("   ", line)
    match = SUMMARY.search(result.stdout)
    assert match, result.stdout
    return wall, float(match.group(3)), int(match.group(1))


def stored_chunks(data_dir: Path) -> list[str]:
    import psycopg

    server = EmbeddedPostgres(data_dir / "pgdata")
    try:
        with psycopg.connect(server.url) as conn:
            return [
                r[0] for r in conn.execute("SELECT content FROM chunk_embeddings ORDER BY chunk_id")
            ]
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--sample", type=int, default=2000, help="chunks for the model-only run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedsearch-ingest-"))
    try:
        data_dir = work / "data"
        # Build the default backend's cached export first, so it is not timed as ingestion.
        embedder = build_embedder(Settings(data_dir=data_dir))
        print(f"ingesting {args.dataset / 'corpus.jsonl'} (backend {Settings().backend}):")
        first_wall, pipeline_rate, chunks = run_ingest(args.dataset / "corpus.jsonl", data_dir)
        again_wall, _, again_chunks = run_ingest(args.dataset / "corpus.jsonl", data_dir)
        texts = stored_chunks(data_dir)
        sample = texts[:: max(1, len(texts) // args.sample)][: args.sample]
        model_rate = len(sample) / median_of(1, lambda: embedder.embed(sample))
        print()
        report(
            [
                ("model alone, same chunk texts", f"{model_rate:.1f} chunks/s", "baseline"),
                (
                    "ingest pipeline (read, chunk, embed, write)",
                    f"{pipeline_rate:.1f} chunks/s",
                    f"{pipeline_rate / model_rate:.2f}x model",
                ),
                ("first ingest, whole command", f"{first_wall:.1f} s", f"{chunks} chunks embedded"),
                (
                    "re-run, nothing changed",
                    f"{again_wall:.1f} s",
                    f"{again_wall / first_wall:.2f}x first run, {again_chunks} embedded",
                ),
            ]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
