"""`embedsearch eval`: a tiny BEIR dataset through the library and the CLI, metrics checked
against rankings and formulas computed here, re-runs, bad input, and the fusion sweep
(`--sweep`, `--save-fusion`)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from embedsearch.config import Settings
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.collections import Collection
from embedsearch.core.deps import Deps
from embedsearch.core.evaluation import (
    EvalOptions,
    EvalResult,
    SweepResult,
    SweepRow,
    evaluate,
    sweep,
)
from embedsearch.core.fusion import Fusion, FusionMethod, fuse
from embedsearch.core.search import search
from embedsearch.core.search_mode import SearchMode
from embedsearch.embedders.base import EmbeddingBatch
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.evaluation import load_dataset
from embedsearch.evaluation.metrics import per_query
from embedsearch.runtime import open_deps
from embedsearch.store import SearchHit
from tests.test_cli import run as run_cli

COLLECTION = "eval_tiny"
LONG = (
    "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria. "
    "The dough ferments slowly, which gives the crumb its open holes and sour taste. "
    "Bakers feed the starter with flour and water every day and keep it warm. "
    "A hot oven with steam makes the crust crisp and dark. "
)
CORPUS = {
    "bread": ("Baking sourdough", LONG * 3),  # several chunks: documents rank by their best
    "yeast": ("Yeast", "Baker's yeast makes dough rise by turning sugar into carbon dioxide."),
    "blood": ("Hypertension", "High blood pressure is treated with diet, exercise and drugs."),
    "heart": ("Heart", "The heart pumps blood through the arteries and veins of the body."),
    "hnsw": ("HNSW", "HNSW graphs find approximate nearest neighbours of vectors quickly."),
    "pgvector": ("pgvector", "pgvector adds a vector type and similarity search to PostgreSQL."),
    "chess": ("Chess", "The Sicilian Defence is a sharp chess opening for black."),
    "tides": ("Tides", "Ocean tides are caused by the gravity of the moon and the sun."),
    "volcano": ("Volcanoes", "Volcanoes erupt when magma rises through the earth's crust."),
    "jazz": ("Jazz", "Jazz musicians improvise over chord changes and swing rhythms."),
    "tennis": ("Tennis", "A tennis match is won in sets of games of points."),
    "coffee": ("Coffee", "Coffee beans are roasted, ground and brewed with hot water."),
}
QUERIES = {
    "q1": "how to bake bread with a sourdough starter",
    "q2": "treatment of high blood pressure",
    "q3": "vector similarity search in a database",
    "q4": "zyxwvut qwertyuiop",  # no word matches: lexical retrieves nothing and scores 0
}
QRELS = {
    "q1": {"bread": 1, "yeast": 1},
    "q2": {"blood": 1},
    "q3": {"pgvector": 2, "hnsw": 1},  # graded: the ideal DCG puts pgvector first
    "q4": {"chess": 1},
}


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": d, "title": t, "text": text} for d, (t, text) in CORPUS.items()]
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    queries = [{"_id": q, "text": text} for q, text in QUERIES.items()]
    queries.append({"_id": "unjudged", "text": "a query without judgments is not evaluated"})
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{rel}" for q, docs in QRELS.items() for d, rel in docs.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


# Independent of the library: plain formulas and our own chunk -> document dedupe.


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    return dcg / sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))


def recall_at_100(ranked: list[str], relevant: dict[str, int]) -> float:
    return len(set(ranked[:100]) & set(relevant)) / len(relevant)


def mrr_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    return next((1 / (i + 1) for i, doc in enumerate(ranked[:10]) if doc in relevant), 0.0)


async def rankings_by_hand(deps: Deps) -> dict[SearchMode, dict[str, list[str]]]:
    """Every chunk of the tiny collection, ranked, then reduced to documents."""
    found: dict[SearchMode, dict[str, list[str]]] = {}
    for mode in SearchMode:
        found[mode] = {}
        for query_id, text in QUERIES.items():
            outcome = await search(deps, text, mode=mode, limit=1000, collection=COLLECTION)
            chunks = [hit.chunk_id for hit in outcome.hits]
            found[mode][query_id] = list(dict.fromkeys(c.split("#")[0] for c in chunks))
    return found


def check_against_hand(
    scores: dict[str, dict[str, dict[str, float]]], by_hand: dict[SearchMode, dict[str, list[str]]]
) -> None:
    """scores: mode -> query -> measure, as the evaluation reported them."""
    for mode in SearchMode:
        for query_id, ranked in by_hand[mode].items():
            got, relevant = scores[mode.value][query_id], QRELS[query_id]
            assert got["ndcg@10"] == pytest.approx(ndcg_at_10(ranked, relevant), abs=1e-4)
            assert got["recall@100"] == pytest.approx(recall_at_100(ranked, relevant), abs=1e-4)
            assert got["mrr@10"] == pytest.approx(mrr_at_10(ranked, relevant), abs=1e-4)


def test_trec_eval_measures_match_the_formulas() -> None:
    rankings = {"q1": ["x", "yeast", "y", "bread"], "q3": ["hnsw", "pgvector"], "q4": []}
    scores = per_query(QRELS, rankings)
    assert scores["q1"]["ndcg@10"] == pytest.approx(ndcg_at_10(rankings["q1"], QRELS["q1"]))
    assert scores["q1"]["mrr@10"] == 0.5
    assert scores["q3"]["ndcg@10"] == pytest.approx(ndcg_at_10(rankings["q3"], QRELS["q3"]))
    assert scores["q3"]["ndcg@10"] < 1.0  # graded: pgvector (2) belongs first
    assert scores["q4"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    # MRR is cut at 10, Recall at 100.
    late = [f"n{i}" for i in range(10)] + ["blood"]
    assert per_query(QRELS, {"q2": late})["q2"] == {
        "ndcg@10": 0.0,
        "recall@100": 1.0,
        "mrr@10": 0.0,
    }


def test_library_metrics_rankings_and_rerun(
    settings: Settings, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "tiny"))
    assert list(dataset.queries) == ["q1", "q2", "q3", "q4"]  # the unjudged query is left out
    options = EvalOptions(chunking=ChunkingOptions(max_tokens=32))

    async def go() -> tuple[EvalResult, EvalResult, dict[SearchMode, dict[str, list[str]]]]:
        async with open_deps(settings, embedder=local_embedder) as deps:
            first = await evaluate(deps, dataset, options)
            second = await evaluate(deps, dataset, options)
            return first, second, await rankings_by_hand(deps)

    first, second, by_hand = asyncio.run(go())
    assert first.collection == COLLECTION
    assert first.chunks > first.documents == len(CORPUS)  # "bread" spans several chunks
    assert first.ingest.new == len(CORPUS) and first.ingest.chunks_embedded == first.chunks
    assert second.ingest.chunks_embedded == 0 and second.ingest.unchanged == len(CORPUS)
    for result in (first, second):
        assert [m.mode for m in result.modes] == list(SearchMode)
        for mode in result.modes:
            assert mode.rankings == by_hand[mode.mode]
            assert mode.latency.samples == len(QUERIES) and mode.latency.p50_ms > 0
            expected = {
                m: sum(s[m] for s in mode.per_query.values()) / len(QUERIES)
                for m in ("ndcg@10", "recall@100", "mrr@10")
            }
            assert mode.scores == pytest.approx(expected)
        check_against_hand({m.mode.value: m.per_query for m in result.modes}, by_hand)
        assert result.ann_recall_at_10 is not None and 0.0 <= result.ann_recall_at_10 <= 1.0
    lexical = first.modes[1]
    assert lexical.rankings["q4"] == [] and lexical.empty >= 1
    assert lexical.per_query["q4"]["ndcg@10"] == 0.0
    dense = first.modes[0]
    assert dense.rankings["q2"][0] == "blood"  # sanity: the model does find the obvious answer


def cli(args: list[str], database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    # torch: the library fixture's model, so both paths make the same vectors.
    return run_cli(args, database_url, data_dir, EMBEDSEARCH_BACKEND="torch")


def test_cli_writes_json_and_markdown(
    settings: Settings, local_embedder: LocalEmbedder, database_url: str, tmp_path: Path
) -> None:
    root = write_dataset(tmp_path / "tiny")
    out_json, out_md = tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.md"
    args = ["eval", str(root), "--out-json", str(out_json), "--out-markdown", str(out_md)]
    done = cli([*args, "--quiet"], database_url, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "nDCG@10" in done.stdout and "eval_tiny" in done.stdout
    report = json.loads(out_json.read_text())
    assert report["queries"] == len(QUERIES) and report["documents"] == len(CORPUS)
    assert list(report["modes"]) == ["dense", "lexical", "hybrid"]
    assert 0.0 <= report["ann_recall@10"] <= 1.0
    assert report["ingest"]["chunks_embedded"] == report["chunks"]
    for figures in report["modes"].values():
        assert figures["latency_ms"]["p95"] >= figures["latency_ms"]["p50"] > 0
    markdown = out_md.read_text()
    assert "| mode | nDCG@10 | Recall@100 | MRR@10 |" in markdown
    assert f"| dense | {report['modes']['dense']['ndcg@10']:.4f} |" in markdown

    async def by_hand() -> dict[SearchMode, dict[str, list[str]]]:
        async with open_deps(settings, embedder=local_embedder) as deps:
            return await rankings_by_hand(deps)

    check_against_hand(
        {mode: figures["per_query"] for mode, figures in report["modes"].items()},
        asyncio.run(by_hand()),
    )

    again = cli(
        [*args, "--modes", "lexical", "--max-queries", "2"], database_url, tmp_path / "data"
    )
    assert again.returncode == 0, again.stderr
    rerun = json.loads(out_json.read_text())
    assert rerun["ingest"]["chunks_embedded"] == 0
    assert rerun["ingest"]["unchanged"] == len(CORPUS)
    assert list(rerun["modes"]) == ["lexical"] and rerun["queries"] == 2
    assert rerun["ann_recall@10"] is None  # dense was not run


def break_corpus(root: Path) -> None:
    with (root / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "broken", "text": \n')


def break_queries(root: Path) -> None:
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "fine"}\nnot json\n')


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        (lambda root: None, ["--modes", "dense,sparse"], "unknown mode 'sparse'"),
        (lambda root: (root / "corpus.jsonl").unlink(), [], "corpus.jsonl: missing"),
        (lambda root: (root / "queries.jsonl").unlink(), [], "queries.jsonl: missing"),
        (lambda root: (root / "qrels" / "test.tsv").unlink(), [], "test.tsv: missing"),
        (lambda root: None, ["--split", "dev"], "qrels/dev.tsv: missing"),
        (break_corpus, [], "corpus.jsonl:13: "),
        (break_queries, [], "queries.jsonl:2: "),
        (
            lambda root: (root / "qrels" / "test.tsv").write_text("q1\tbread\tvery\n"),
            [],
            "test.tsv:1: expected",
        ),
        (lambda root: None, ["--collection", "Bad-Name"], "collection must match"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, change: Callable[[Path], object], extra: list[str], message: str
) -> None:
    root = write_dataset(tmp_path / "tiny")
    change(root)
    # Nothing here reaches the database: the input is checked before it starts.
    done = cli(["eval", str(root), *extra], "postgresql://nowhere.invalid/db", tmp_path / "data")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_missing_folder_exits_2(tmp_path: Path) -> None:
    done = cli(["eval", str(tmp_path / "nope")], "postgresql://nowhere.invalid/db", tmp_path)
    assert done.returncode == 2
    assert "no such folder" in done.stderr and "Traceback" not in done.stderr


# The fusion sweep.

ALPHAS = [round(tenth / 10, 1) for tenth in range(11)]
BEST_LINE = re.compile(
    r"^best for eval_tiny: (convex alpha [0-9.]+|rrf k \d+) \(nDCG@10 (\d\.\d{4})\)$"
)


def dedupe(hits: list[SearchHit]) -> list[str]:
    return list(dict.fromkeys(hit.chunk_id.split("#")[0] for hit in hits))[:100]


async def sweep_by_hand(deps: Deps) -> dict[str, dict[str, list[str]]]:
    """setting label -> query -> documents: every chunk of each list through the search use
    case, fused here with core.fusion.fuse."""
    settings = {f"convex alpha {a}": Fusion(FusionMethod.CONVEX, alpha=a) for a in ALPHAS}
    settings["rrf k 60"] = Fusion(FusionMethod.RRF, k=60)
    found: dict[str, dict[str, list[str]]] = {"dense only": {}, "lexical only": {}}
    found |= {label: {} for label in settings}
    for query_id, text in QUERIES.items():
        dense = await search(deps, text, mode=SearchMode.DENSE, limit=1000, collection=COLLECTION)
        lexical = await search(
            deps, text, mode=SearchMode.LEXICAL, limit=1000, collection=COLLECTION
        )
        found["dense only"][query_id] = dedupe(dense.hits)
        found["lexical only"][query_id] = dedupe(lexical.hits)
        for label, fusion in settings.items():
            found[label][query_id] = dedupe(fuse(dense.hits, lexical.hits, fusion, limit=1000))
    return found


def test_sweep_scores_each_fusion_of_the_same_lists(
    settings: Settings,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "tiny"))
    options = EvalOptions(chunking=ChunkingOptions(max_tokens=32))
    embedded: list[list[str]] = []
    original = Collection.embed

    async def counting(self: Collection, texts: list[str]) -> EmbeddingBatch:
        embedded.append(texts)
        return await original(self, texts)

    async def go() -> tuple[EvalResult, SweepResult, dict[str, dict[str, list[str]]], int]:
        async with open_deps(settings, embedder=local_embedder) as deps:
            evaluated = await evaluate(deps, dataset, options)
            calls: list[None] = []
            monkeypatch.setattr(Collection, "embed", counting)
            swept = await sweep(deps, dataset, COLLECTION, on_query=lambda: calls.append(None))
            monkeypatch.setattr(Collection, "embed", original)
            return evaluated, swept, await sweep_by_hand(deps), len(calls)

    evaluated, swept, by_hand, callbacks = asyncio.run(go())
    assert sorted(text for texts in embedded for text in texts) == sorted(QUERIES.values())
    assert callbacks == len(QUERIES)
    assert swept.collection == COLLECTION and swept.queries == len(QUERIES)
    assert swept.depth == 1000 and swept.current is None
    labels = [row.label for row in swept.rows]
    assert labels == [
        "dense only",
        "lexical only",
        *(f"convex alpha {a}" for a in ALPHAS),
        "rrf k 60",
    ]
    assert labels == list(by_hand)
    for row in swept.rows:
        assert row.rankings == by_hand[row.label], row.label
        for query_id, ranked in by_hand[row.label].items():
            got, relevant = row.per_query[query_id], QRELS[query_id]
            assert got["ndcg@10"] == pytest.approx(ndcg_at_10(ranked, relevant), abs=1e-4)
            assert got["recall@100"] == pytest.approx(recall_at_100(ranked, relevant), abs=1e-4)
            assert got["mrr@10"] == pytest.approx(mrr_at_10(ranked, relevant), abs=1e-4)
        for measure in ("ndcg@10", "recall@100", "mrr@10"):
            mean = sum(s[measure] for s in row.per_query.values()) / len(QUERIES)
            assert row.scores[measure] == pytest.approx(mean, abs=1e-12)
        assert row.empty == sum(1 for ranked in by_hand[row.label].values() if not ranked)
    assert swept.rows[1].empty >= 1 and swept.rows[2].empty == 0  # q4: no word matches
    # Exactly comparable with the evaluation's own modes: its hybrid searches fuse lists as
    # long as these with the built-in convex alpha 0.5, and the tiny collection fits whole
    # in every list the dense and lexical modes fetch.
    rows = {row.label: row for row in swept.rows}
    modes = {mode.mode: mode for mode in evaluated.modes}
    for label, mode in (
        ("convex alpha 0.5", SearchMode.HYBRID),
        ("dense only", SearchMode.DENSE),
        ("lexical only", SearchMode.LEXICAL),
    ):
        assert rows[label].rankings == modes[mode].rankings, label
        for query_id, scores in modes[mode].per_query.items():
            for measure, value in scores.items():
                assert rows[label].per_query[query_id][measure] == pytest.approx(value, abs=1e-9)
    # The best: the highest nDCG@10 among the fusions; ties to the alpha closest to 0.5.
    top = max(row.scores["ndcg@10"] for row in swept.fusions)
    assert swept.best.fusion is not None
    assert swept.best.scores["ndcg@10"] == top
    tied = [row for row in swept.fusions if row.scores["ndcg@10"] >= top - 1e-12]
    convex = [row.fusion.alpha for row in tied if row.fusion and row.fusion.method == "convex"]
    if convex:
        closest = min(abs(alpha - 0.5) for alpha in convex)
        assert swept.best.fusion.method == "convex"
        assert abs(swept.best.fusion.alpha - 0.5) == pytest.approx(closest)
    else:
        assert swept.best.fusion.method == "rrf"


def row(label: str, fusion: Fusion | None, ndcg: float) -> SweepRow:
    scores = {"ndcg@10": ndcg, "recall@100": 0.0, "mrr@10": 0.0}
    return SweepRow(label, fusion, scores, {}, {}, 0)


def swept(*rows: SweepRow) -> SweepResult:
    return SweepResult("tiny", "test", COLLECTION, 4, 1000, None, list(rows), 0.0)


def convex(alpha: float, ndcg: float) -> SweepRow:
    return row(f"convex alpha {alpha}", Fusion(FusionMethod.CONVEX, alpha=alpha), ndcg)


def rrf(k: int, ndcg: float) -> SweepRow:
    return row(f"rrf k {k}", Fusion(FusionMethod.RRF, k=k), ndcg)


def test_sweep_best_breaks_ties_towards_alpha_half_then_rrf() -> None:
    lists = [row("dense only", None, 0.99), row("lexical only", None, 0.95)]  # never chosen
    assert swept(*lists, convex(0.2, 0.7), convex(0.9, 0.8), rrf(60, 0.75)).best.label == (
        "convex alpha 0.9"
    )
    # Equal nDCG@10 (up to the last bits of a mean): the alpha closest to 0.5 wins.
    tie = swept(*lists, convex(0.0, 0.8), convex(0.3, 0.8000000000000002), convex(0.8, 0.8))
    assert tie.best.label == "convex alpha 0.3"
    assert [r.label for r in tie.tied] == [
        "convex alpha 0.0",
        "convex alpha 0.3",
        "convex alpha 0.8",
    ]
    assert swept(convex(0.4, 0.8), convex(0.6, 0.8)).best.label == "convex alpha 0.6"
    assert swept(rrf(60, 0.8), convex(1.0, 0.8)).best.label == "convex alpha 1.0"
    assert swept(convex(0.5, 0.8), rrf(60, 0.81)).best.label == "rrf k 60"
    assert swept(rrf(10, 0.8), rrf(60, 0.8), rrf(100, 0.8)).best.label == "rrf k 60"


def test_sweep_of_a_missing_collection_is_404(
    settings: Settings, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    from embedsearch.core.errors import InvalidInput, NotFound

    dataset = load_dataset(write_dataset(tmp_path / "tiny"))

    async def go(collection: str, alphas: list[float], rrf_ks: list[int]) -> None:
        async with open_deps(settings, embedder=local_embedder) as deps:
            await sweep(deps, dataset, collection, alphas=alphas, rrf_ks=rrf_ks)

    with pytest.raises(NotFound):
        asyncio.run(go("eval_nothing_here", [0.5], [60]))
    with pytest.raises(InvalidInput, match="alpha must be between 0 and 1"):
        asyncio.run(go(COLLECTION, [0.5, 1.5], [60]))
    with pytest.raises(InvalidInput, match="k must be between 1 and 1000"):
        asyncio.run(go(COLLECTION, [0.5], [0]))
    with pytest.raises(InvalidInput, match="at least one"):
        asyncio.run(go(COLLECTION, [], []))


def hybrid_scores(client: httpx.Client, query: str, **extra: object) -> list[tuple[str, float]]:
    body = {"query": query, "mode": "hybrid", "collection": COLLECTION, "limit": 10} | extra
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return [(r["chunkId"], r["score"]) for r in response.json()["results"]]


def test_cli_sweep_reports_the_best_and_saves_it(
    client: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    root = write_dataset(tmp_path / "tiny")
    out_json, out_md = tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.md"
    args = [
        "eval",
        str(root),
        "--quiet",
        "--out-json",
        str(out_json),
        "--out-markdown",
        str(out_md),
    ]
    done = cli([*args, "--sweep", "--modes", "hybrid"], database_url, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "Hybrid fusion sweep" in done.stdout and "lexical only" in done.stdout
    found = [BEST_LINE.match(line) for line in done.stdout.splitlines()]
    matches = [m for m in found if m]
    assert len(matches) == 1, done.stdout
    best_label, best_ndcg = matches[0].group(1), float(matches[0].group(2))
    assert "as the default fusion of" not in done.stdout

    report = json.loads(out_json.read_text())["sweep"]
    settings = {s["setting"]: s for s in report["settings"]}
    assert list(settings) == [
        "dense only",
        "lexical only",
        *(f"convex alpha {a}" for a in ALPHAS),
        "rrf k 60",
    ]
    assert report["best"]["setting"] == best_label
    assert report["best"]["ndcg@10"] == best_ndcg == settings[best_label]["ndcg@10"]
    assert best_ndcg == max(s["ndcg@10"] for s in report["settings"] if s["fusion"])
    tied = [s["setting"] for s in report["settings"] if s["fusion"] and s["ndcg@10"] == best_ndcg]
    assert report["best"]["tied_with"] == [label for label in tied if label != best_label]
    assert report["current_fusion"] is None and report["candidates"] == 1000
    assert set(settings["rrf k 60"]["per_query"]) == set(QUERIES)
    # The evaluation's hybrid mode (built-in fusion) is the sweep's convex alpha 0.5.
    hybrid = json.loads(out_json.read_text())["modes"]["hybrid"]
    assert settings["convex alpha 0.5"]["ndcg@10"] == hybrid["ndcg@10"]
    markdown = out_md.read_text()
    assert "### Hybrid fusion sweep: collection `eval_tiny`" in markdown
    assert f"| **{best_label}** | {best_ndcg:.4f} |" in markdown
    assert client.get(f"/collections/{COLLECTION}").json()["fusion"] is None  # not saved

    # Another stored fusion first: --save-fusion must replace it with the best.
    stale = {"method": "rrf", "k": 1}
    assert client.patch(f"/collections/{COLLECTION}", json={"fusion": stale}).status_code == 200
    saved = cli(
        [*args, "--sweep", "--save-fusion", "--modes", "dense"], database_url, tmp_path / "data"
    )
    assert saved.returncode == 0, saved.stderr
    assert f"best for eval_tiny: {best_label} (nDCG@10 {best_ndcg:.4f})" in saved.stdout
    assert f"stored {best_label} as the default fusion of eval_tiny" in saved.stdout
    rerun = json.loads(out_json.read_text())["sweep"]
    assert rerun["current_fusion"] == stale and rerun["best"]["setting"] == best_label
    best_fusion = rerun["best"]["fusion"]
    assert client.get(f"/collections/{COLLECTION}").json()["fusion"] == best_fusion
    for text in QUERIES.values():
        stored = hybrid_scores(client, text)  # no fusion: the collection's
        assert stored == hybrid_scores(client, text, fusion=best_fusion)
        assert stored != hybrid_scores(client, text, fusion=stale)


def test_cli_save_fusion_needs_sweep(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "tiny")
    done = cli(["eval", str(root), "--save-fusion"], "postgresql://nowhere.invalid/db", tmp_path)
    assert done.returncode == 2, done.stderr
    assert "add --sweep" in done.stderr and "Traceback" not in done.stderr
