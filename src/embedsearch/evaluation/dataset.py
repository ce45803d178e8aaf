"""A BEIR-format dataset folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.

Everything is read and checked up front, so bad input fails before minutes of embedding."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from embedsearch.core.documents import DocumentInput
from embedsearch.core.errors import InvalidInput
from embedsearch.core.validation import check_collection_name
from embedsearch.ingest.readers import ReadFailure, Source, read

CORPUS = "corpus.jsonl"
QUERIES = "queries.jsonl"
_SPLIT = re.compile(r"^[A-Za-z0-9_.-]+$")
_QRELS_HEADER = "query-id"


class DatasetError(InvalidInput):
    """The dataset folder is missing a file or holds something malformed."""


@dataclass(frozen=True)
class BeirDataset:
    root: Path
    split: str
    corpus: Source  # ingested as the CLI's `ingest` does: title + " " + text per document
    documents: int
    queries: dict[str, str]  # the queries that have judgments, in file order
    qrels: dict[str, dict[str, int]]  # query id -> document id -> relevance

    @property
    def name(self) -> str:
        return self.root.name

    def head(self, count: int | None) -> BeirDataset:
        """The first `count` queries only (all of them for None)."""
        if count is None or count >= len(self.queries):
            return self
        kept = dict(list(self.queries.items())[:count])
        return replace(self, queries=kept, qrels={q: self.qrels[q] for q in kept})


def default_collection(root: Path) -> str:
    """A scratch collection named after the folder: SciFact-v2 -> eval_scifact_v2."""
    slug = re.sub(r"[^a-z0-9_]+", "_", root.resolve().name.lower()).strip("_")
    name = f"eval_{slug}"[:40].rstrip("_")
    return check_collection_name(name)


def load_dataset(root: Path, split: str = "test") -> BeirDataset:
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    if not _SPLIT.match(split):
        raise DatasetError(f"split {split!r} must be a plain name such as 'test'")
    corpus, queries_file, qrels_file = (
        root / CORPUS,
        root / QUERIES,
        root / "qrels" / f"{split}.tsv",
    )
    for path in (corpus, queries_file, qrels_file):
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing (a BEIR folder has {CORPUS}, {QUERIES} and qrels/)"
            )
    source = Source(corpus, corpus.name)
    documents = sum(1 for _ in _records(source))  # reads every line: malformed ones fail here
    if documents == 0:
        raise DatasetError(f"{corpus}: no documents")
    qrels = _qrels(qrels_file)
    texts = {doc.document_id: doc.text for doc in _records(Source(queries_file, QUERIES))}
    queries = {qid: texts[qid] for qid in texts if qid in qrels}
    if not queries:
        raise DatasetError(f"{queries_file}: none of the queries in {qrels_file} is here")
    return BeirDataset(root, split, source, documents, queries, {q: qrels[q] for q in queries})


def _records(source: Source) -> Iterator[DocumentInput]:
    """The BEIR jsonl reader of `embedsearch ingest`, made strict: the first bad line fails."""
    for item in read(source):
        if isinstance(item, ReadFailure):
            raise DatasetError(
                f"{item.source}: {item.reason} (each line must be a JSON object with string "
                "fields _id and text)"
            )
        yield item


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or (number == 1 and line.startswith(_QRELS_HEADER)):
            continue
        fields = line.split("\t")
        try:
            query_id, doc_id, score = fields
            relevance = int(score)
        except ValueError:
            raise DatasetError(
                f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>integer score'"
            ) from None
        qrels.setdefault(query_id, {})[doc_id] = relevance
    if not qrels:
        raise DatasetError(f"{path}: no judgments")
    return qrels
