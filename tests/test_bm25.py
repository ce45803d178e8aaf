"""Lexical search is BM25: scores against the formula computed in Python on the same lexemes,
statistics that stay equal to a recount under concurrent writers, re-ingests and deletes, and
the text search configuration as a collection option."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows
from embedsearch.store.bm25 import Bm25, Pruning
from embedsearch.store.sql import bm25 as bm25_sql
from tests.servers import (
    bm25_postings,
    bm25_recount,
    bm25_statistics,
    handle,
    open_store,
    postings_recount,
    rows,
)
from tests.test_ingest import WORDS  # skewed below: some in most chunks, some in few

K1, B = 1.2, 0.75
MODEL, DIMS = "all-MiniLM-L6-v2", 384


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    # Skewed word use: some lexemes in most chunks, some in few; lengths vary.
    return [
        " ".join(rng.choices(WORDS, weights=range(len(WORDS), 0, -1), k=rng.randint(3, 40)))
        for _ in range(n)
    ]


def lexemes_by_chunk(url: str, table: str) -> dict[str, Counter[str]]:
    """Each chunk's lexemes with their counts, as PostgreSQL's tsvector holds them."""
    found: dict[str, Counter[str]] = {}
    for chunk_id, lexeme, tf in rows(
        url,
        f"SELECT chunk_id, lexeme, coalesce(array_length(positions, 1), 1) FROM {table},"  # noqa: S608
        " unnest(content_tsv)",
    ):
        found.setdefault(chunk_id, Counter())[lexeme] = tf
    return found


def bm25_by_hand(chunks: dict[str, Counter[str]], query: list[str]) -> dict[str, float]:
    """Lucene's BM25, straight from the formula."""
    n = len(chunks)
    avgdl = sum(sum(c.values()) for c in chunks.values()) / n
    scores = {}
    for chunk_id, counts in chunks.items():
        length, score = sum(counts.values()), 0.0
        for lexeme in set(query):
            df = sum(1 for c in chunks.values() if lexeme in c)
            if counts[lexeme]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                tf = counts[lexeme]
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avgdl))
        if score:
            scores[chunk_id] = score
    return scores


def lexical(client: httpx.Client, query: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/search", json={"query": query, "mode": "lexical"} | body)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def embed_all(client: httpx.Client, items: list[tuple[str, str]], **body: Any) -> None:
    payload = [{"chunkId": cid, "text": text} for cid, text in items]
    response = client.post("/embed/batch", json={"items": payload} | body)
    assert response.status_code == 200, response.text


def test_scores_are_bm25_of_the_same_lexemes(client: httpx.Client, database_url: str) -> None:
    corpus = texts(60, seed=5)
    embed_all(client, [(f"c{i}", text) for i, text in enumerate(corpus)])
    client.delete("/chunks/c7")  # statistics follow deletes
    chunks = lexemes_by_chunk(database_url, "chunk_embeddings")
    for query in ("cell", "storage harvest", "solar wind energy", "neuron crop cell virus river"):
        (query_lexemes,) = rows(
            database_url, "SELECT tsvector_to_array(to_tsvector('english', %s))", (query,)
        )[0]
        expected = bm25_by_hand(chunks, query_lexemes)
        for limit in (1000, 3):  # all of them; and the top 3, found with pruning
            got = lexical(client, query, limit=limit)
            best = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:limit]
            assert [r["chunkId"] for r in got] == [chunk_id for chunk_id, _ in best], query
            for result, (_, score) in zip(got, best, strict=True):
                assert result["score"] == pytest.approx(score, rel=1e-9), query


def test_statistics_equal_a_recount_after_concurrent_writes_and_deletes(
    client: httpx.Client, database_url: str
) -> None:
    def work(worker: int) -> None:
        rng = random.Random(worker)
        for round_ in range(6):
            ids = rng.sample(range(40), 8)  # overlapping chunk ids across writers
            batch = [
                (f"c{i}", text)
                for i, text in zip(ids, texts(8, worker * 100 + round_), strict=True)
            ]
            embed_all(client, batch)
            document = {"documentId": f"doc{rng.randint(0, 5)}", "text": " ".join(texts(3, round_))}
            assert client.post("/documents", json=document).status_code == 200
            client.delete(f"/chunks/c{rng.randint(0, 39)}")
            if round_ % 3 == 2:
                client.delete(f"/documents/doc{rng.randint(0, 5)}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert bm25_statistics(database_url, "default") == bm25_recount(
        database_url, "chunk_embeddings"
    )
    posted = bm25_postings(database_url, "chunk_embeddings")
    assert posted and posted == postings_recount(database_url, "chunk_embeddings")


def test_compaction_folds_the_deltas_and_keeps_the_statistics(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    corpus = texts(20, seed=3)
    vectors = local_embedder.embed(corpus).vectors

    async def go() -> None:
        async with open_store(database_url, model=MODEL, dimensions=DIMS) as store:
            chunks = await handle(store)
            for start in range(0, 20, 5):  # a few statements: a few deltas per lexeme
                ids = [f"c{i}" for i in range(start, start + 5)]
                part = slice(start, start + 5)
                await chunks.upsert(ChunkRows(ids, vectors[part], MODEL, corpus[part], [""] * 5))
            await chunks.delete_chunk("c3")
            deltas = rows(database_url, "SELECT count(*) FROM embedsearch_bm25_deltas")[0][0]
            before = bm25_statistics(database_url, "default")
            assert deltas > len(before)  # several statements touched the same lexemes
            await chunks.bm25.compact()
            assert rows(database_url, "SELECT count(*) FROM embedsearch_bm25_deltas") == [(0,)]
            assert bm25_statistics(database_url, "default") == before
            assert before == bm25_recount(database_url, "chunk_embeddings")
            found = await chunks.bm25.search("cell river", limit=5)
            assert found and all(hit.score > 0 for hit in found)

    asyncio.run(go())


def test_a_lexeme_whose_last_chunk_is_gone_no_longer_counts(
    client: httpx.Client, database_url: str
) -> None:
    embed_all(client, [("a", "zebras graze"), ("b", "lions hunt zebras"), ("c", "owls hunt")])
    assert bm25_statistics(database_url, "default")["zebra"][0] == 2
    client.delete("/chunks/a")
    embed_all(client, [("b", "lions hunt")])  # re-embedded without the word
    assert "zebra" not in bm25_statistics(database_url, "default")
    assert lexical(client, "zebras") == []
    assert bm25_statistics(database_url, "default") == bm25_recount(
        database_url, "chunk_embeddings"
    )
    assert bm25_postings(database_url, "chunk_embeddings") == postings_recount(
        database_url, "chunk_embeddings"
    )
    assert not any(p[0] == "zebra" for p in bm25_postings(database_url, "chunk_embeddings"))


def test_text_search_configuration_is_a_collection_option(
    client: httpx.Client, database_url: str
) -> None:
    created = client.post("/collections", json={"name": "plain", "textConfig": "simple"})
    assert created.status_code == 201, created.text
    assert created.json()["textConfig"] == "simple"
    items = [("run", "Running shoes for a marathon"), ("the", "The end of the story")]
    embed_all(client, items, collection="plain")
    embed_all(client, items)  # the default collection stems English
    # 'simple' neither stems nor drops stop words: "runs" is not "running", "the" is a word.
    assert lexical(client, "runs", collection="plain") == []
    assert [r["chunkId"] for r in lexical(client, "runs")] == ["run"]
    assert [r["chunkId"] for r in lexical(client, "the", collection="plain")] == ["the"]
    assert lexical(client, "the") == []
    for bad in ("klingon", "english; DROP TABLE x", "Simple", ""):
        response = client.post("/collections", json={"name": "other", "textConfig": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["field"] == "textConfig"
    assert rows(database_url, "SELECT count(*) FROM embedsearch_collections") == [(2,)]
    # Dropping a collection drops its statistics, and only its own.
    assert bm25_statistics(database_url, "plain")
    assert client.delete("/collections/plain").status_code == 204
    assert bm25_statistics(database_url, "plain") == {}
    assert bm25_statistics(database_url, "default") == bm25_recount(
        database_url, "chunk_embeddings"
    )


def test_the_pruned_top_k_is_the_full_sums_top_k(database_url: str) -> None:
    """Plain queries prune the common terms (sql.score_postings): on a skewed corpus with exact
    ties (repeated texts), the top k found by pruning, by point lookups and by a filtered scan
    of the common terms' postings, is the formula's top k, chunk for chunk and in order."""
    corpus = texts(240, seed=11)
    corpus += corpus[:40]  # the same texts again: exact ties, ordered by chunk id
    ids = [f"c{i:03d}" for i in range(len(corpus))]
    vectors = np.random.default_rng(1).standard_normal((len(corpus), DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = random.Random(4)
    queries = [" ".join(rng.sample(WORDS, rng.randint(2, 9))) for _ in range(25)]
    always = {"probe": Pruning(seed=1, probe=0, ratio=1e-9), "scan": Pruning(1, 10**9, 1e-9)}
    engaged = Counter[str]()

    async def go() -> None:
        async with open_store(database_url, model=MODEL, dimensions=DIMS) as store:
            chunks = await handle(store)
            await chunks.upsert(ChunkRows(ids, vectors, MODEL, corpus, [""] * len(corpus)))
            by_chunk = lexemes_by_chunk(database_url, "chunk_embeddings")
            statement = bm25_sql.score_postings("chunk_embeddings", psycopg.sql.SQL("true"))
            bm25 = Bm25(chunks)
            bm25.pruning = always["probe"]  # the store's own call prunes alike
            conn = psycopg.connect(database_url, autocommit=True)  # statements prepared
            for query in queries:
                (query_lexemes,) = rows(
                    database_url, "SELECT tsvector_to_array(to_tsvector('english', %s))", (query,)
                )[0]
                expected = sorted(
                    bm25_by_hand(by_chunk, query_lexemes).items(), key=lambda i: (-i[1], i[0])
                )
                for limit in (1, 3, 10):
                    best = expected[:limit]
                    for name, pruning in always.items():
                        params = {
                            "collection": "default",
                            "text": query,
                            "config": "english",
                            "k1": K1,
                            "b": B,
                            "limit": limit,
                            "depth": limit,
                        } | pruning.params(limit)
                        found = conn.execute(statement, params, prepare=True).fetchall()
                        assert [r[0] for r in found] == [c for c, _ in best], (query, name)
                        for row, (_, score) in zip(found, best, strict=True):
                            assert row[1] == pytest.approx(score, rel=1e-9), (query, name)
                        engaged[name] += bool(found) and all(r[5] for r in found)
                    hits = await bm25.search(query, limit=limit)
                    assert [h.chunk_id for h in hits] == [c for c, _ in best], query
            conn.close()

    asyncio.run(go())
    assert engaged["probe"] > 40 and engaged["scan"] > 40, engaged  # of 75 searches each
