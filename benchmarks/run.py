"""Speed of the local model and of ingestion, each against a baseline measured in the same run.

    make bench            (or: python -m benchmarks.run [--long N] [--runs R] [--quality])

Prints medians: model texts/s per backend (short and long texts), single-query latency,
end-to-end ingest over HTTP (/embed/batch) against the brief's code path (torch, one INSERT
and one commit per chunk) and against the same server on torch, and 32 concurrent /embed calls
against the same calls one by one. --quality adds nDCG@10 per backend (benchmarks.quality).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import beir, loadgen
from benchmarks.harness import Server, median_of, report
from embedsearch.config import Settings
from embedsearch.embedders.local import BACKENDS, LocalEmbedder

DEFAULT_BACKEND = Settings.model_fields["backend"].default
# Where `python -m benchmarks.<name>` finds the package: the sub-benchmarks run from here.
ROOT = Path(__file__).resolve().parents[1]
# A round of 32 calls takes 0.1-0.5 s, and single rounds vary by +-20% on a shared machine:
# many rounds make the median hold.
CONCURRENCY_ROUNDS = 25


def backend_speed(
    backend: str,
    long_texts: list[str],
    short_texts: list[str],
    cache: Path,
    runs: int,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Texts/s (long, short) and single-query latency of one backend, in this process.
    `batch_size`: model batches of at most that many texts of any length (else the server's
    token budget)."""
    sizes = (2048, 64) if batch_size is None else (1 << 30, batch_size)
    start = time.perf_counter()
    embedder = LocalEmbedder(
        "all-MiniLM-L6-v2",
        backend=backend,
        cache_dir=cache,
        batch_tokens=sizes[0],
        batch_size=sizes[1],
    )
    load_s = time.perf_counter() - start
    medium_texts = [" ".join(text.split()[:110]) for text in long_texts]
    long_s = median_of(runs, lambda: embedder.embed(long_texts))
    medium_s = median_of(runs, lambda: embedder.embed(medium_texts))
    short_s = median_of(runs, lambda: embedder.embed(short_texts))
    latencies = []
    for query in short_texts[:200]:
        start = time.perf_counter()
        embedder.embed([query])
        latencies.append(time.perf_counter() - start)
    return {
        "long_texts_per_s": len(long_texts) / long_s,
        "medium_texts_per_s": len(medium_texts) / medium_s,
        "short_texts_per_s": len(short_texts) / short_s,
        "query_ms": statistics.median(latencies) * 1000,
        "load_s": load_s,
    }


def same_process_speed(
    backends: list[str], args: argparse.Namespace, cache: Path
) -> dict[str, dict[str, float]]:
    """The backends one after another in this process (as issue 14 measured them), batches of
    16 length-sorted texts; a warm-up load first, so every load timed finds its cache built."""
    data = beir.load(args.dataset)
    long_texts, short_texts = data.doc_texts[: args.long], data.query_texts
    for backend in backends:
        LocalEmbedder("all-MiniLM-L6-v2", backend=backend, cache_dir=cache)
    return {
        backend: backend_speed(backend, long_texts, short_texts, cache, args.runs, batch_size=16)
        for backend in backends
    }


def model_speed(args: argparse.Namespace, cache: Path) -> dict[str, dict[str, float]]:
    """Each backend in a fresh process, so one backend's threads never slow another's."""
    figures = {}
    for backend in BACKENDS:
        command = [sys.executable, "-m", "benchmarks.run", "--backend-only", backend]
        command += ["--cache", str(cache)]
        command += [
            "--long",
            str(args.long),
            "--runs",
            str(args.runs),
            "--dataset",
            str(args.dataset),
        ]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        figures[backend] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def brief_ingest(url: str, ids: list[str], texts: list[str]) -> float:
    """The brief's code path: torch, one INSERT and one commit per chunk. Returns chunks/s."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.brief_baseline", url],
        cwd=ROOT,
        input=json.dumps([ids, texts]),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def http_batch_ingest(server: Server, ids: list[str], texts: list[str], batch: int) -> float:
    with httpx.Client(base_url=server.url, timeout=600) as http:
        start = time.perf_counter()
        for i in range(0, len(ids), batch):
            items = [
                {"chunkId": c, "text": t}
                for c, t in zip(ids[i : i + batch], texts[i : i + batch], strict=True)
            ]
            http.post("/embed/batch", json={"items": items}).raise_for_status()
        return len(ids) / (time.perf_counter() - start)


def concurrent_vs_sequential(
    server: Server, texts: list[str], runs: int
) -> tuple[float, float, float]:
    """Throughput (calls/s) of len(texts) single /embed calls one by one on one keep-alive
    connection and all at once on one connection each (see loadgen for the client), and the
    median of their ratios. The two alternate, round by round: every write adds entries to the
    table's HNSW index (an update is a new row version), so the index grows during the run and
    whichever mode ran later would pay more per write."""
    bodies: list[dict[str, object]] = [
        {"chunkId": f"s{i}", "text": text} for i, text in enumerate(texts)
    ]
    requests = loadgen.encode_posts(server.url, "/embed", bodies)
    loadgen.timed_run(server.url, requests, len(requests))  # warm-up
    seq, conc = [], []
    for _ in range(runs):
        seq.append(loadgen.timed_run(server.url, requests, 1))
        conc.append(loadgen.timed_run(server.url, requests, len(requests)))
    ratio = statistics.median(s / c for s, c in zip(seq, conc, strict=True))
    return len(texts) / statistics.median(seq), len(texts) / statistics.median(conc), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--long", type=int, default=256, help="long texts per model run")
    parser.add_argument("--ingest", type=int, default=512, help="chunks per ingest run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--quality", action="store_true", help="also run benchmarks.quality")
    parser.add_argument("--backend-only", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--same-process",
        metavar="BACKEND,...",
        help="only the model speed of these backends, in this process, batches of 16",
    )
    args = parser.parse_args()
    if args.same_process:
        with tempfile.TemporaryDirectory(prefix="embedsearch-bench-") as scratch:
            cache = args.cache or Path(scratch)
            print(json.dumps(same_process_speed(args.same_process.split(","), args, cache)))
        return

    data = beir.load(args.dataset)
    long_texts = data.doc_texts[: args.long]
    short_texts = data.query_texts
    if args.backend_only:
        figures = backend_speed(args.backend_only, long_texts, short_texts, args.cache, args.runs)
        print(json.dumps(figures))
        return
    words = np.mean([len(t.split()) for t in long_texts])
    work = Path(tempfile.mkdtemp(prefix="embedsearch-bench-"))
    try:
        print(
            f"model: all-MiniLM-L6-v2; long texts: {len(long_texts)} (~{words:.0f} words), short: {len(short_texts)}"
        )
        speed = model_speed(args, work / "cache")
        base = speed["torch"]
        rows = []
        for backend, f in speed.items():
            rows.append(
                (
                    f"{backend} long texts/s",
                    f"{f['long_texts_per_s']:.1f}",
                    f"{f['long_texts_per_s'] / base['long_texts_per_s']:.2f}x torch",
                )
            )
            rows.append(
                (
                    f"{backend} ~110-word texts/s",
                    f"{f['medium_texts_per_s']:.1f}",
                    f"{f['medium_texts_per_s'] / base['medium_texts_per_s']:.2f}x torch",
                )
            )
            rows.append(
                (
                    f"{backend} short texts/s",
                    f"{f['short_texts_per_s']:.1f}",
                    f"{f['short_texts_per_s'] / base['short_texts_per_s']:.2f}x torch",
                )
            )
            rows.append(
                (
                    f"{backend} one query (median)",
                    f"{f['query_ms']:.2f} ms",
                    f"{base['query_ms'] / f['query_ms']:.2f}x faster than torch",
                )
            )
        print("\nModel alone (medians):")
        report(rows)

        ids = [f"doc-{i}" for i in range(args.ingest)]
        texts = [data.doc_texts[i % len(data.doc_texts)] for i in range(args.ingest)]
        default = Server(work / "default", EMBEDSEARCH_DATA_DIR=str(work / "default" / "data"))
        try:
            brief = brief_ingest(default_db_url(work / "default" / "data"), ids, texts)
            batch_default = statistics.median(
                http_batch_ingest(default, ids, texts, 64) for _ in range(args.runs)
            )
            sample = data.doc_texts[1000:1032]
            seq, conc, ratio = concurrent_vs_sequential(default, sample, CONCURRENCY_ROUNDS)
            short_sample = data.query_texts[:32]
            short_seq, short_conc, short_ratio = concurrent_vs_sequential(
                default, short_sample, CONCURRENCY_ROUNDS
            )
        finally:
            default.close()
        torch_server = Server(
            work / "torch",
            EMBEDSEARCH_BACKEND="torch",
            EMBEDSEARCH_DATA_DIR=str(work / "torch" / "data"),
        )
        try:
            batch_torch = statistics.median(
                http_batch_ingest(torch_server, ids, texts, 64) for _ in range(args.runs)
            )
        finally:
            torch_server.close()
        print(
            f"\nEnd to end over HTTP, {args.ingest} long chunks (default backend: {DEFAULT_BACKEND}):"
        )
        report(
            [
                (
                    "brief's path (torch, INSERT+commit per row)",
                    f"{brief:.1f} chunks/s",
                    "baseline",
                ),
                (
                    "/embed/batch on torch",
                    f"{batch_torch:.1f} chunks/s",
                    f"{batch_torch / brief:.2f}x brief",
                ),
                (
                    f"/embed/batch on {DEFAULT_BACKEND}",
                    f"{batch_default:.1f} chunks/s",
                    f"{batch_default / brief:.2f}x brief, {batch_default / batch_torch:.2f}x torch server",
                ),
            ]
        )
        print(
            f"\n{len(sample)} single /embed calls (default backend; rounds alternate, "
            "ratio = median of the rounds' ratios):"
        )
        report(
            [
                ("long chunks, one by one", f"{seq:.1f} calls/s", "baseline"),
                ("long chunks, all at once", f"{conc:.1f} calls/s", f"{ratio:.2f}x"),
                ("short texts, one by one", f"{short_seq:.1f} calls/s", "baseline"),
                ("short texts, all at once", f"{short_conc:.1f} calls/s", f"{short_ratio:.2f}x"),
            ]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.quality:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.quality",
                "--dataset",
                str(args.dataset),
            ],
            cwd=ROOT,
            check=True,
        )


def default_db_url(data_dir: Path) -> str:
    """The URL of the embedded server a running `embedsearch serve` started for data_dir."""
    from embedsearch.store.embedded import EmbeddedPostgres

    return EmbeddedPostgres(data_dir / "pgdata").url


if __name__ == "__main__":
    main()
