"""kill -9 of `embedsearch serve` (a subprocess, as a user runs it) while it backfills a source
and while it applies live changes: the next start finishes with nothing lost or duplicated.
The service database is on the session's embedded PostgreSQL, the source table on a separate
one (tcp_pg), so neither dies with the server."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.reliability.processes import serving
from tests.servers import TcpPostgres, rows
from tests.sources_helpers import (
    expected_documents,
    fill,
    new_source_database,
    source_body,
    source_rows,
    source_status,
    stored_documents,
    wait_until,
)

ROWS = 150
BATCH = "10"  # small batches: the kill lands between two of them, or inside one


def status(server_url: str) -> dict[str, Any]:
    with httpx.Client(base_url=server_url, timeout=30) as http:
        return source_status(http)


def chunk_count(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM c_articles")[0][0])


def test_kill_9_during_backfill_and_during_live_sync_loses_and_duplicates_nothing(
    tcp_pg: TcpPostgres, database_url: str, tmp_path: Path
) -> None:
    source_url = new_source_database(tcp_pg.url())
    fill(source_url, range(ROWS))
    env = {"EMBEDSEARCH_SOURCE_BATCH_ROWS": BATCH, "EMBEDSEARCH_SOURCE_POLL_S": "0.1"}
    data_dir = tmp_path / "data"

    with serving(data_dir, database_url, **env) as server:
        created = httpx.post(f"{server.url}/sources", json=source_body(source_url), timeout=60)
        assert created.status_code == 201, created.text
        done = wait_until(
            lambda: (d := status(server.url)["backfill"]["done"]) >= 3 * int(BATCH) and d,
            120,
            "the backfill to be under way",
        )
        server.signal(signal.SIGKILL)
        server.wait_exit(30)
        assert tcp_pg.password not in server.output()  # the source URL's password: never logged
    assert done < ROWS, "the backfill finished before the kill: nothing was tested"
    assert 0 < len(stored_documents(database_url)) < ROWS

    with serving(data_dir, database_url, **env) as server:
        wait_until(lambda: status(server.url)["state"] == "live", 300, "the backfill to finish")
        assert stored_documents(database_url) == expected_documents(source_url)
        # Rows stored before the kill were not embedded again: at most the batch in flight.
        assert int(status(server.url)["counters"]["chunksEmbedded"]) <= ROWS

        # Live changes, then a kill while they are being applied.
        with psycopg.connect(source_url) as conn:
            conn.execute(
                "INSERT INTO articles (id, title, body, lang, year) SELECT i, 'Late ' || i,"
                " 'Written while the server runs, number ' || i, 'en', 2026"
                " FROM generate_series(%s::int, %s::int) AS i",
                (ROWS, 2 * ROWS - 1),
            )
            conn.execute("UPDATE articles SET body = body || ' (revised)' WHERE id % 7 = 0")
            conn.execute("DELETE FROM articles WHERE id % 11 = 0")
        wait_until(
            lambda: 0 < int(status(server.url)["pending"] or 0) < 2 * ROWS,
            60,
            "live changes to be under way",
        )
        server.signal(signal.SIGKILL)
        server.wait_exit(30)
        assert tcp_pg.password not in server.output()  # the source URL's password: never logged
    queued = source_rows(source_url, "SELECT count(*) FROM embedsearch_queue_articles")[0][0]
    assert queued > 0, "the changes were all applied before the kill: nothing was tested"
    assert stored_documents(database_url) != expected_documents(source_url)

    with serving(data_dir, database_url, **env) as server:

        def caught_up() -> bool:
            found = status(server.url)
            return found["pending"] == 0 and found["state"] == "live"

        wait_until(caught_up, 120, "the queue to drain")
        final = expected_documents(source_url)
        assert stored_documents(database_url) == final
        assert chunk_count(database_url) == len(final)  # one chunk a row: no duplicates
        documents = rows(database_url, "SELECT count(*) FROM embedsearch_documents")[0][0]
        assert documents == len(final)
