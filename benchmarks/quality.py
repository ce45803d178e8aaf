"""Retrieval quality per local backend on a BEIR dataset: nDCG@10, Recall@100 (exact search),
and how much each backend's top-10 overlaps torch fp32's.

    python -m benchmarks.quality [--dataset DIR] [--max-docs N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import beir
from embedsearch.embedders.local import BACKENDS, LocalEmbedder


def rank(doc_vectors: np.ndarray, query_vectors: np.ndarray, k: int) -> np.ndarray:
    scores = query_vectors @ doc_vectors.T  # unit vectors: cosine similarity
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--max-docs", type=int, default=None, help="use the first N documents")
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args()
    data = beir.load(args.dataset)
    doc_ids, doc_texts = data.doc_ids[: args.max_docs], data.doc_texts[: args.max_docs]
    cache = Path(tempfile.mkdtemp(prefix="embedsearch-quality-"))
    results: dict[str, dict[str, float]] = {}
    rankings: dict[str, np.ndarray] = {}
    for backend in BACKENDS:
        embedder = LocalEmbedder("all-MiniLM-L6-v2", backend=backend, cache_dir=cache)
        start = time.perf_counter()
        docs = embedder.embed(doc_texts).vectors
        seconds = time.perf_counter() - start
        queries = embedder.embed(data.query_texts).vectors
        top = rank(docs, queries, 100)
        rankings[backend] = top
        ranked = [[doc_ids[i] for i in row] for row in top]
        ndcg = np.mean(
            [beir.ndcg_at(r, data.qrels[q]) for q, r in zip(data.query_ids, ranked, strict=True)]
        )
        recall = np.mean(
            [beir.recall_at(r, data.qrels[q]) for q, r in zip(data.query_ids, ranked, strict=True)]
        )
        overlap = np.mean(
            [
                len(set(a[:10]) & set(b[:10])) / 10
                for a, b in zip(top, rankings["torch"], strict=True)
            ]
        )
        results[embedder.backend] = {
            "ndcg@10": round(float(ndcg), 4),
            "recall@100": round(float(recall), 4),
            "top10_overlap_with_torch": round(float(overlap), 4),
            "corpus_texts_per_s": round(len(doc_texts) / seconds, 1),
        }
        print(embedder.backend, json.dumps(results[embedder.backend]), flush=True)
    base = results["torch"]["ndcg@10"]
    for backend, figures in results.items():
        change = (figures["ndcg@10"] - base) / base * 100
        print(
            f"{backend:10s} nDCG@10 {figures['ndcg@10']:.4f} ({change:+.2f}% vs torch)  "
            f"Recall@100 {figures['recall@100']:.4f}  top-10 overlap {figures['top10_overlap_with_torch']:.3f}  "
            f"corpus {figures['corpus_texts_per_s']:.1f} texts/s ({figures['corpus_texts_per_s'] / results['torch']['corpus_texts_per_s']:.2f}x torch)"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
