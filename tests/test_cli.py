"""The command line, run as a user runs it: a subprocess with environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import rows

CLI = [sys.executable, "-m", "embedsearch.cli"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's runs, so the default backend's ONNX export is built only once."""
    return tmp_path_factory.mktemp("cli-data")


def environment(database_url: str, data_dir: Path, **env: str) -> dict[str, str]:
    """This process's environment without our settings, then the given ones."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSEARCH_")}
    return (
        found
        | {"EMBEDSEARCH_DATABASE_URL": database_url, "EMBEDSEARCH_DATA_DIR": str(data_dir)}
        | env
    )


def run(
    args: list[str], database_url: str, data_dir: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLI + args,
        capture_output=True,
        text=True,
        env=environment(database_url, data_dir, **env),
        timeout=300,
    )


def test_embed_then_search(database_url: str, data_dir: Path) -> None:
    stored = run(["embed", "chunk-1", "Neural networks learn from data"], database_url, data_dir)
    assert stored.returncode == 0, stored.stderr
    assert "stored chunk-1: 384 dims, all-MiniLM-L6-v2" in stored.stdout
    run(["embed", "chunk-2", "A recipe for sourdough bread"], database_url, data_dir)
    found = run(
        ["search", "deep learning", "--limit", "2", "--json", "--distance", "l2"],
        database_url,
        data_dir,
    )
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert [r["chunkId"] for r in results] == ["chunk-1", "chunk-2"]
    assert results[0]["score"] < results[1]["score"]
    table = run(["search", "bread"], database_url, data_dir)
    assert table.stdout.splitlines()[0].split()[2] == "chunk-2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["embed", "x" * 256, "text"], "chunkId is 256 characters"),
        (["embed", "id", "   "], "text must not be empty"),
        (["search", ""], "query must not be empty"),
    ],
)
def test_bad_input_is_a_message_and_exit_code_2(
    database_url: str, data_dir: Path, args: list[str], message: str
) -> None:
    result = run(args, database_url, data_dir)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["search", "q", "--limit", "0"], {}, "limit"),
        (["search", "q", "--distance", "dot"], {}, "distance"),
        (["search", "q"], {"EMBEDSEARCH_EMBEDDER": "nope"}, "invalid configuration"),
        (["search", "q"], {"EMBEDSEARCH_DIMENSIONS": "100"}, "384-dimensional"),
    ],
)
def test_bad_options_and_configuration(
    database_url: str, data_dir: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run(args, database_url, data_dir, **env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_a_message_and_exit_code_1(data_dir: Path) -> None:
    result = run(
        ["search", "q"],
        "postgresql://nobody:pw-xyz@127.0.0.1:9/none",
        data_dir,
        EMBEDSEARCH_DB_TIMEOUT_S="1",
    )
    assert result.returncode == 1
    assert "database unavailable" in result.stderr and "Traceback" not in result.stderr
    assert "pw-xyz" not in result.stderr


# Runs CLI commands and library reads in one process, then reports which heavy modules that
# process imported.
_HEAVY_IMPORTS_PROBE = """
import asyncio, json, sys
from embedsearch.cli import app
from embedsearch.config import Settings
from embedsearch.core import chunks, collections, documents
from embedsearch.core.errors import NotFound
from embedsearch.runtime import open_deps
for args in json.loads(sys.argv[1]):
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        assert exc.code in (0, None), (args, exc.code)

async def reads():
    async with open_deps(Settings()) as deps:
        assert (await collections.get(deps, "default"))[1] == 0
        for read in (chunks.get_chunk, chunks.delete_chunk, documents.get, documents.delete):
            try:
                await read(deps, "missing")
            except NotFound:
                continue
            raise AssertionError(read)

asyncio.run(reads())
heavy = ("torch", "sentence_transformers", "transformers", "onnxruntime", "openvino")
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def test_commands_that_do_not_embed_load_no_model(database_url: str, data_dir: Path) -> None:
    commands = [
        ["collections", "list"],
        ["collections", "create", "light", "--index", "none"],
        ["collections", "list", "--json"],
        ["index", "check", "light"],
        ["index", "check", "default"],
        ["collections", "drop", "light", "--yes"],
    ]
    probe = subprocess.run(
        [sys.executable, "-c", _HEAVY_IMPORTS_PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=environment(database_url, data_dir),
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    output = probe.stdout.splitlines()
    assert "created light: all-MiniLM-L6-v2, 384 dims" in output
    assert "dropped light" in output
    assert json.loads(output[-1]) == []
    assert rows(database_url, "SELECT name FROM embedsearch_collections") == [("default",)]
