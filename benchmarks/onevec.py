"""One vector per text on onnx-int8 (issue 14 item 3): each text in a model call of its own,
against the length-sorted batches of 16 it replaced, measured in the same run and process.

    python -m benchmarks.onevec [--long 96] [--runs 5] [--threads 2]

Prints texts/s (medians, rounds interleaved) for SciFact abstracts (title + text, ~256
tokens after truncation) and claims (~21 tokens): batches of 16 (the baseline), the server's
token-budget batches (2048 tokens, 64 texts), one text per call in turn, and the default (one
text per call, `threads` calls at once on the same session); then cosines: each text alone vs
in the batches (old and new), alone twice (bit-identical?), and int8 vs fp32 ONNX. The load
average is printed before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import beir
from benchmarks.harness import report, seconds
from embedsearch.embedders.alone import OneTextPerCall
from embedsearch.embedders.base import Vectors
from embedsearch.embedders.local import LocalEmbedder

MODEL = "all-MiniLM-L6-v2"
# Texts per timed piece: a few batches of 16.
CHUNK = 48


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--long", type=int, default=96, help="abstracts per run")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="data dir cache (default: a fresh one)")
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="onevec-") as scratch:
        cache = args.cache or Path(scratch)
        run(args, cache)
    print(f"load average after: {load_average()}")


def run(args: argparse.Namespace, cache: Path) -> None:
    data = beir.load(args.dataset)
    sets = {"abstracts": data.doc_texts[: args.long], "claims": data.query_texts}

    def embedder(**kwargs: Any) -> LocalEmbedder:
        return LocalEmbedder(
            MODEL, backend="onnx-int8", cache_dir=cache, threads=args.threads, **kwargs
        )

    embedder(one_text_per_call=False)  # builds the export once; later loads are light
    batched16 = embedder(one_text_per_call=False, batch_tokens=1 << 30, batch_size=16)
    budget = embedder(one_text_per_call=False)
    default = embedder()
    assert default.one_text_per_call and default.light, "expected the light one-text path"
    in_turn = OneTextPerCall(default._model_call)  # one after another, all threads each

    ways: dict[str, Callable[[list[str]], Vectors]] = {
        "batches of 16 (baseline)": lambda texts: batched16.embed(texts).vectors,
        "token-budget batches": lambda texts: budget.embed(texts).vectors,
        "one per call, in turn": lambda texts: in_turn.embed(texts)[0],
        "one per call (default)": lambda texts: default.embed(texts).vectors,
    }
    for name, texts in sets.items():
        for call in ways.values():  # warm-up
            call(texts)
        # Interleaved chunk by chunk, so the other work on a shared machine hits every way alike.
        chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
        rates: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.runs):
            spent = dict.fromkeys(ways, 0.0)
            for chunk in chunks:
                for way, call in ways.items():
                    spent[way] += seconds(partial(call, chunk))
            for way in ways:
                rates[way].append(len(texts) / spent[way])
        medians = {way: statistics.median(r) for way, r in rates.items()}
        tokens = statistics.median(min(n, default.max_tokens) for n in default.count_tokens(texts))
        print(f"{name}: {len(texts)} texts, median {tokens:.0f} tokens, texts/s")
        base = medians["batches of 16 (baseline)"]
        report([(way, f"{m:.1f}", f"{m / base:.2f}x") for way, m in medians.items()])
    query_latency(default, sets["claims"])
    fidelity(sets, batched16, default, cache, args.threads)


def query_latency(embedder: LocalEmbedder, claims: list[str]) -> None:
    latencies = []
    for claim in claims[:200]:
        start = time.perf_counter()
        embedder.embed([claim])
        latencies.append(time.perf_counter() - start)
    print(f"one claim alone: {statistics.median(latencies) * 1000:.2f} ms median")


def fidelity(
    sets: dict[str, list[str]],
    batched16: LocalEmbedder,
    default: LocalEmbedder,
    cache: Path,
    threads: int,
) -> None:
    fp32 = LocalEmbedder(MODEL, backend="onnx", cache_dir=cache, threads=threads)
    texts = [*sets["abstracts"], *sets["claims"]]
    alone = np.concatenate([default.embed([text]).vectors for text in texts])
    again = np.concatenate([default.embed([text]).vectors for text in texts])
    reference = np.concatenate([fp32.embed([text]).vectors for text in texts])

    def lowest(a: Vectors, b: Vectors) -> str:
        cosines = np.einsum("ij,ij->i", a, b)
        return f"min {cosines.min():.5f}, mean {cosines.mean():.5f}"

    shuffled = np.random.default_rng(0).permutation(len(texts))
    mixed = np.empty_like(alone)
    mixed[shuffled] = default.embed([texts[i] for i in shuffled]).vectors
    batched = batched16.embed(texts).vectors
    print("cosines:")
    report(
        [
            ("alone vs batches of 16 (old)", lowest(alone, batched), ""),
            ("alone vs one shuffled request (new)", lowest(alone, mixed), ""),
            (
                "alone vs alone again",
                lowest(alone, again),
                f"identical: {np.array_equal(alone, again)}",
            ),
            ("new request vs alone", "", f"identical: {np.array_equal(alone, mixed)}"),
            ("int8 alone vs fp32 ONNX", lowest(alone, reference), ""),
            ("int8 batches of 16 vs fp32 ONNX", lowest(batched, reference), ""),
        ]
    )


if __name__ == "__main__":
    main()
