"""BEIR-format data (corpus.jsonl, queries.jsonl, qrels/test.tsv) and ranking metrics."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


@dataclass(frozen=True)
class Dataset:
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]


def load(directory: Path = DEFAULT_DATASET) -> Dataset:
    qrels: dict[str, dict[str, int]] = {}
    for line in (directory / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    docs = [json.loads(line) for line in (directory / "corpus.jsonl").open()]
    queries = [json.loads(line) for line in (directory / "queries.jsonl").open()]
    queries = [q for q in queries if q["_id"] in qrels]
    return Dataset(
        doc_ids=[d["_id"] for d in docs],
        doc_texts=[(d.get("title", "") + " " + d["text"]).strip() for d in docs],
        query_ids=[q["_id"] for q in queries],
        query_texts=[q["text"] for q in queries],
        qrels=qrels,
    )


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    hits = sum(1 for doc in ranked[:k] if relevant.get(doc, 0) > 0)
    total = sum(1 for rel in relevant.values() if rel > 0)
    return hits / total if total else 0.0
