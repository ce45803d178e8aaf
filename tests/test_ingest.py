"""`embedsearch ingest`: files and BEIR corpora, per-file failures, re-runs, and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg import sql

from tests.pdfs import write_blank_pdf, write_text_pdf
from tests.servers import rows, vector_indexes
from tests.test_cli import run as cli

CLI = [sys.executable, "-m", "embedsearch.cli"]
WORDS = [
    "cell",
    "protein",
    "gene",
    "membrane",
    "signal",
    "enzyme",
    "receptor",
    "tissue",
    "neuron",
    "immune",
    "virus",
    "bacteria",
    "model",
    "data",
    "network",
    "layer",
    "vector",
    "index",
    "query",
    "search",
    "storage",
    "cluster",
    "replica",
    "shard",
    "river",
    "mountain",
    "forest",
    "ocean",
    "climate",
    "carbon",
    "energy",
    "solar",
    "wind",
    "soil",
    "crop",
    "harvest",
]


def synthetic_corpus(n: int) -> str:
    """A BEIR-format corpus of n documents of 150-450 words (1-2 chunks each)."""
    import random

    rng = random.Random(42)
    lines = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(150, 450))) + "."
        lines.append(json.dumps({"_id": f"doc{i}", "title": f"Document {i}", "text": text}))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ingest-data")  # shared: the ONNX export is built once


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "setup.md").write_text("# Setup\n\nInstall PostgreSQL and pgvector first.\n")
    (root / "notes.txt").write_text("Mitochondria produce most of the cell's ATP.\n")
    (root / "page.html").write_text(
        "<html><head><title>Ferns</title><style>p{}</style></head>"
        "<body><p>Ferns reproduce with spores.</p><script>alert(1)</script></body></html>"
    )
    write_text_pdf(root / "paper.pdf", ["Quantum dots emit light of a", "size-dependent colour."])
    write_blank_pdf(root / "scan.pdf")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "empty.md").write_text("   \n")
    (root / "image.png").write_bytes(b"\x89PNG")  # not a supported type: skipped in folders
    lines = [
        json.dumps({"_id": f"d{i}", "title": f"Title {i}", "text": f"Body of document {i}."})
        for i in range(3)
    ]
    (root / "corpus.jsonl").write_text(
        "\n".join([*lines, "{broken json", json.dumps({"_id": "x"})]) + "\n"
    )
    return root


def test_ingest_a_folder_reports_each_failure_and_goes_on(
    folder: Path, database_url: str, data_dir: Path
) -> None:
    result = cli(["ingest", str(folder), "--quiet"], database_url, data_dir)
    assert result.returncode == 1, result.stderr  # some files failed
    assert "7 documents: 7 new, 0 updated, 0 unchanged, 6 failed" in result.stdout
    for name, reason in [
        ("scan.pdf", "no extractable text"),
        ("binary.txt", "binary file"),
        ("latin1.txt", "not UTF-8"),
        ("empty.md", "empty document"),
        ("corpus.jsonl:4", ""),
        ("corpus.jsonl:5", "needs string fields _id and text"),
    ]:
        assert any(name in line and reason in line for line in result.stderr.splitlines()), (
            name,
            result.stderr,
        )
    assert "Traceback" not in result.stderr
    documents = dict(rows(database_url, "SELECT document_id, metadata FROM embedsearch_documents"))
    assert set(documents) == {
        "guides/setup.md",
        "notes.txt",
        "page.html",
        "paper.pdf",
        "d0",
        "d1",
        "d2",
    }
    assert documents["paper.pdf"]["type"] == "pdf" and documents["d1"]["title"] == "Title 1"
    texts = dict(rows(database_url, "SELECT document_id, content FROM chunk_embeddings"))
    assert "size-dependent colour" in texts["paper.pdf"]
    assert (
        "Ferns reproduce with spores." in texts["page.html"] and "alert" not in texts["page.html"]
    )

    found = cli(["search", "quantum dots", "--limit", "1", "--json"], database_url, data_dir)
    assert json.loads(found.stdout)["results"][0]["chunkId"] == "paper.pdf#0"
    only_md = cli(
        ["search", "cells", "--json", "--filter", '{"type": "md"}'], database_url, data_dir
    )
    assert [r["chunkId"] for r in json.loads(only_md.stdout)["results"]] == ["guides/setup.md#0"]

    again = cli(["ingest", str(folder), "--quiet"], database_url, data_dir)
    assert "7 documents: 0 new, 0 updated, 7 unchanged" in again.stdout
    assert "0 chunks embedded" in again.stdout

    (folder / "notes.txt").write_text("Chloroplasts hold chlorophyll.\n")
    changed = cli(["ingest", str(folder), "--quiet"], database_url, data_dir)
    assert "0 new, 1 updated, 6 unchanged" in changed.stdout


def test_ingest_into_a_new_collection_creates_it_and_bad_paths(
    tmp_path: Path, database_url: str, data_dir: Path
) -> None:
    """A new user's `ingest DIR --collection notes` makes the collection and fills it; a
    damaged PDF is reported once, as its own failure line (pypdf's warnings stay out)."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("Mitochondria make most of the cell's ATP.")
    (notes / "b.md").write_text("# Bread\n\nKnead the dough until it is smooth.")
    (notes / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n")
    created = cli(
        ["ingest", str(notes), "--collection", "notes", "--storage", "halfvec", "--quiet"],
        database_url,
        data_dir,
    )
    assert created.returncode == 1, created.stderr  # the damaged PDF failed
    assert created.stdout.splitlines()[0] == (
        "created collection notes: all-MiniLM-L6-v2, 384 dims, halfvec"
    )
    assert "2 documents: 2 new, 0 updated, 0 unchanged, 1 failed" in created.stdout
    failures = [line for line in created.stderr.splitlines() if line.strip()]
    assert len(failures) == 1 and failures[0].startswith("failed: ") and "broken.pdf" in failures[0]
    assert rows(database_url, "SELECT document_id FROM c_notes ORDER BY 1") == [
        ("a.txt",),
        ("b.md",),
    ]
    registry = "SELECT storage, model FROM embedsearch_collections WHERE name = 'notes'"
    assert rows(database_url, registry) == [("halfvec", "all-MiniLM-L6-v2")]
    found = cli(
        ["search", "bread dough", "--collection", "notes", "--json"], database_url, data_dir
    )
    assert json.loads(found.stdout)["results"][0]["chunkId"] == "b.md#0"

    # Once it exists, options for a new collection must agree with it; nothing is written.
    again = cli(
        ["ingest", str(notes / "a.txt"), "--collection", "notes", "--storage", "vector"],
        database_url,
        data_dir,
    )
    assert again.returncode == 2 and "exists with storage halfvec" in again.stderr
    assert "created" not in again.stdout and "documents" not in again.stdout
    bad = cli(["ingest", str(notes), "--collection", "Bad Name", "--quiet"], database_url, data_dir)
    assert bad.returncode == 2 and "must match" in bad.stderr and "Traceback" not in bad.stderr
    assert rows(database_url, "SELECT count(*) FROM embedsearch_collections") == [(2,)]

    missing = cli(["ingest", str(tmp_path / "nope"), "--quiet"], database_url, data_dir)
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    bad_name = cli(["collections", "create", "Bad Name"], database_url, data_dir)
    assert bad_name.returncode == 2 and "must match" in bad_name.stderr


def state(
    database_url: str, collection: str
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    table = "chunk_embeddings" if collection == "default" else f"c_{collection}"
    docs = rows(
        database_url,
        "SELECT document_id, content_hash, metadata, chunk_count FROM embedsearch_documents"
        " WHERE collection = %s ORDER BY document_id",
        (collection,),
    )
    chunks = rows(
        database_url,
        sql.SQL(
            "SELECT chunk_id, content_hash, metadata, document_id FROM {} ORDER BY chunk_id"
        ).format(sql.Identifier(table)),
    )
    return docs, chunks


def test_kill_9_mid_ingest_then_rerun_equals_an_uninterrupted_ingest(
    tmp_path: Path, database_url: str, data_dir: Path
) -> None:
    """Also with the bulk-load path: 600 documents into an empty collection (threshold 100 here)
    drop the HNSW index first; the killed run leaves it unbuilt, and the re-run builds it."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(synthetic_corpus(600))
    bulk = {"EMBEDSEARCH_DEFER_INDEX_MIN_DOCUMENTS": "100"}
    for name in ("whole", "killed"):
        assert cli(["collections", "create", name], database_url, data_dir).returncode == 0
    whole = cli(
        ["ingest", str(corpus), "--collection", "whole", "--quiet"], database_url, data_dir, **bulk
    )
    assert whole.returncode == 0, whole.stderr
    assert "built the deferred HNSW index" in whole.stdout
    assert hnsw_options(database_url, "c_whole") == ["m=16,ef_construction=64"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSEARCH_")}
    env |= {"EMBEDSEARCH_DATABASE_URL": database_url, "EMBEDSEARCH_DATA_DIR": str(data_dir)}
    env |= bulk
    process = subprocess.Popen(
        [*CLI, "ingest", str(corpus), "--collection", "killed", "--quiet"], env=env
    )
    deadline = time.monotonic() + 300
    while (
        rows(
            database_url, "SELECT count(*) FROM embedsearch_documents WHERE collection = 'killed'"
        )[0][0]
        == 0
    ):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = rows(
        database_url, "SELECT count(*) FROM embedsearch_documents WHERE collection = 'killed'"
    )[0][0]
    assert 0 < partial < 600  # it really was interrupted
    assert hnsw_options(database_url, "c_killed") == []  # deferred to the end of the load
    deferred = "SELECT deferred_index FROM embedsearch_collections WHERE name = 'killed'"
    assert rows(database_url, deferred) == [({"type": "hnsw", "m": 16, "ef_construction": 64},)]
    # No half documents: every stored document has all its chunks.
    assert rows(
        database_url,
        "SELECT count(*) FROM embedsearch_documents d WHERE collection = 'killed' AND chunk_count <>"
        " (SELECT count(*) FROM c_killed c WHERE c.document_id = d.document_id)",
    ) == [(0,)]

    rerun = cli(
        ["ingest", str(corpus), "--collection", "killed", "--quiet"], database_url, data_dir
    )  # the default threshold: the collection is not empty anyway; the deferral still ends
    assert rerun.returncode == 0, rerun.stderr
    assert f"{partial} unchanged" in rerun.stdout
    assert state(database_url, "killed") == state(database_url, "whole")
    assert hnsw_options(database_url, "c_killed") == ["m=16,ef_construction=64"]
    assert rows(database_url, deferred) == [(None,)]


def hnsw_options(database_url: str, table: str) -> list[str]:
    return [
        options for _, method, options in vector_indexes(database_url, table) if method == "hnsw"
    ]


def test_cli_ingest_while_the_server_runs_on_the_same_data_dir(
    tmp_path: Path, data_dir: Path
) -> None:
    """Both processes share the embedded PostgreSQL of one data dir; the server sees the ingest."""
    import httpx

    from tests.servers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSEARCH_")}
    env |= {"EMBEDSEARCH_DATA_DIR": str(data_dir)}
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        (tmp_path / "shared.md").write_text("Tardigrades survive in outer space.")
        result = subprocess.run(
            [*CLI, "ingest", str(tmp_path / "shared.md"), "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        hits = httpx.post(
            url + "/search/pgvector", json={"query": "tardigrade", "limit": 1}
        ).json()["results"]
        assert hits[0]["chunkId"] == "shared.md#0"
        assert (
            httpx.get(url + "/readyz").status_code == 200
        )  # the CLI's exit left the server's database up
    finally:
        server.terminate()
        server.wait(timeout=60)
