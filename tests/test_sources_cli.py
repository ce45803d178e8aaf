"""`embedsearch sources add | list | show | run | delete` as a user runs them (subprocesses):
`sources run` syncs on its own, without `embedsearch serve`."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.servers import TcpPostgres
from tests.sources_helpers import (
    capture_objects,
    expected_documents,
    fill,
    new_source_database,
    stored_documents,
    wait_until,
)
from tests.test_cli import CLI, environment
from tests.test_cli import run as cli_run

BACKEND = {"EMBEDSEARCH_BACKEND": "torch"}  # no ONNX export into a fresh data dir


def test_sources_run_syncs_without_the_server(
    tcp_pg: TcpPostgres, database_url: str, tmp_path: Path
) -> None:
    source_url = new_source_database(tcp_pg.url())
    fill(source_url, range(8))
    before = capture_objects(source_url)
    add = ["sources", "add", "articles", "--table", "articles", "--id-column", "id"]
    add += ["--text-column", "title", "--text-column", "body", "--metadata-column", "lang"]
    add += ["--collection", "articles"]
    env = BACKEND | {"EMBEDSEARCH_SOURCE_URL": source_url, "EMBEDSEARCH_SOURCE_POLL_S": "0.1"}

    refused = cli_run([*add[:-1], "No Such"], database_url, tmp_path, **env)
    assert refused.returncode == 2 and "error: collection" in refused.stderr, refused.stderr
    missing = cli_run([*add, "--where", "colour = 1"], database_url, tmp_path, **env)
    assert missing.returncode == 2 and "colour" in missing.stderr, missing.stderr
    assert capture_objects(source_url) == before

    added = cli_run(add, database_url, tmp_path, **env)
    assert added.returncode == 0, added.stderr
    assert "added source articles: public.articles -> collection articles (8 rows" in added.stdout
    worker = subprocess.Popen(
        [*CLI, "sources", "run"],
        env=environment(database_url, tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (
                stored_documents(database_url) == expected_documents(source_url, metadata=("lang",))
            ),
            120,
            "the backfill",
        )
        fill(source_url, range(8, 12))
        wait_until(
            lambda: (
                stored_documents(database_url) == expected_documents(source_url, metadata=("lang",))
            ),
            20,
            "live inserts",
        )
        listed = cli_run(["sources", "list", "--json"], database_url, tmp_path, **env)
        assert listed.returncode == 0, listed.stderr
        (found,) = json.loads(listed.stdout)
        assert found["state"] == "live" and found["pending"] == 0 and found["chunksEmbedded"] == 12
        assert "s3cret-Pa55" not in listed.stdout and "password=***" in found["url"]
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "s3cret-Pa55" not in err
    deleted = cli_run(["sources", "delete", "articles"], database_url, tmp_path, **env)
    assert deleted.returncode == 0 and capture_objects(source_url) == before, deleted.stderr
