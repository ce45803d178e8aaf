"""Sources: the issue's bar at full size, and what change capture costs the source database.

    python -m benchmarks.sources [--rows 5000] [--changes 200] [--runs 5]

Part 1 runs `embedsearch serve` (its default backend) on an embedded service database and
adds a source on a separate embedded PostgreSQL holding `--rows` rows: the backfill's time,
then `--changes` inserts, text updates, metadata-only updates and deletes, each timed from
its commit until the collection holds it (and the chunks each embedded), then the final
collection against the table.

Part 2 compares, on the source server, an UPDATE of every row (median of `--runs`): with no
capture, with our trigger into a queue table, and with logical decoding (wal_level = logical
after a restart, a publication and a pgoutput slot), and what each keeps while nobody consumes
it: the queue table's size against the WAL the slot holds back.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.harness import Server, report, seconds
from embedsearch.core.sources import capture_of
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.sources import SourceSpec
from embedsearch.store.sql import source_capture

TABLE = """
CREATE TABLE articles (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, lang TEXT NOT NULL, year INTEGER
)"""
FILL = """
INSERT INTO articles SELECT i, 'Article ' || i || ' on topic ' || (i %% 17),
    'Notes number ' || i || ' about topic ' || (i %% 17) || ', part ' || (i %% 13) || '.',
    CASE WHEN i %% 3 = 0 THEN 'de' ELSE 'en' END, 2000 + i %% 25
FROM generate_series(0, %s - 1) AS i"""
DOCUMENTS = (
    "SELECT document_id, string_agg(content, ' ' ORDER BY chunk_id), (array_agg(metadata))[1]"
    " FROM c_articles GROUP BY document_id"
)
EXPECTED = "SELECT id::text, concat_ws(E'\\n\\n', title, body), lang, year FROM articles"


def database(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(server.url, dbname=name)


def execute(url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(statement, params)


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def wait(condition: Callable[[], bool], timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"not done after {timeout_s} s")
        time.sleep(0.1)
    return time.monotonic() - start


def in_sync(service: str, source: str) -> bool:
    stored = {r[0]: (r[1], r[2]) for r in fetch(service, DOCUMENTS)}
    expected = {r[0]: (r[1], {"lang": r[2], "year": r[3]}) for r in fetch(source, EXPECTED)}
    return stored == expected


def sync_bar(root: Path, rows: int, changes: int) -> None:
    service_pg = EmbeddedPostgres(root / "service-pg")
    source_pg = EmbeddedPostgres(root / "source-pg")
    try:
        service, source = database(service_pg, "service"), database(source_pg, "source")
        execute(source, TABLE)
        execute(source, FILL, (rows,))
        server = Server(root / "data", EMBEDSEARCH_DATABASE_URL=service)
        try:
            http = httpx.Client(base_url=server.url, timeout=60)
            body = {
                "name": "articles",
                "url": source,
                "table": "articles",
                "idColumn": "id",
                "textColumns": ["title", "body"],
                "metadataColumns": ["lang", "year"],
                "collection": "articles",
            }
            started = time.monotonic()
            assert http.post("/sources", json=body).status_code == 201

            def status() -> dict[str, Any]:
                found: dict[str, Any] = http.get("/sources/articles").json()
                return found

            wait(lambda: status()["state"] == "live", 3600)
            backfill = time.monotonic() - started
            results = [
                ("backfill", f"{rows} rows in {backfill:.1f} s", f"{rows / backfill:.0f} rows/s")
            ]
            kinds = [
                (
                    "inserts",
                    "INSERT INTO articles SELECT i, 'New ' || i, 'Fresh text ' || i, 'en', 2026"
                    " FROM generate_series(%s::int, %s::int) AS i",
                    (rows, rows + changes - 1),
                ),
                (
                    "text updates",
                    "UPDATE articles SET body = 'Rewritten ' || body WHERE id < %s",
                    (changes,),
                ),
                (
                    "metadata-only updates",
                    "UPDATE articles SET lang = 'fr' WHERE id >= %s AND id < %s",
                    (changes, 2 * changes),
                ),
                (
                    "deletes",
                    "DELETE FROM articles WHERE id >= %s AND id < %s",
                    (2 * changes, 3 * changes),
                ),
            ]
            for kind, statement, params in kinds:
                before = status()["counters"]["chunksEmbedded"]
                execute(source, statement, params)
                arrived = wait(lambda: in_sync(service, source) and status()["pending"] == 0, 60)
                embedded = status()["counters"]["chunksEmbedded"] - before
                results.append(
                    (kind, f"{changes} in {arrived:.2f} s", f"{embedded} chunks embedded")
                )
            same = in_sync(service, source)
            results.append(("final collection = table", str(same), ""))
            report(results)
        finally:
            server.close()
    finally:
        source_pg.stop()
        service_pg.stop()


def capture_cost(root: Path, rows: int, runs: int) -> None:
    source_pg = EmbeddedPostgres(root / "capture-pg")
    try:
        url = database(source_pg, "capture")
        execute(url, TABLE)
        execute(url, FILL, (rows,))
        update = "UPDATE articles SET body = body || '.'"
        spec = SourceSpec(
            "bench", url, "public", "articles", "id", ("title", "body"), ("lang",), None, "x"
        )
        capture = capture_of(spec)

        def timed() -> float:
            return statistics.median(seconds(lambda: execute(url, update)) for _ in range(runs))

        plain = timed()
        with psycopg.connect(url) as conn:
            for statement in source_capture.install(capture):
                conn.execute(statement)
        execute(url, "TRUNCATE embedsearch_queue_bench")
        execute(url, update)
        queue_bytes = fetch(url, "SELECT pg_total_relation_size('embedsearch_queue_bench')")[0][0]
        triggered = timed()
        with psycopg.connect(url) as conn:
            for statement in source_capture.uninstall(capture):
                conn.execute(statement)
        # Logical decoding needs wal_level = logical: a restart (a managed database's parameter
        # change and reboot), then a slot that holds WAL until a consumer confirms it.
        with psycopg.connect(source_pg.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = logical")
        source_pg._server.stop()
        with source_pg._server._lock:
            source_pg._server.ensure_postgres_running()
        execute(url, "CREATE PUBLICATION bench FOR TABLE articles")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot('bench', 'pgoutput')")
        logical = timed()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('bench')")
            conn.execute("SELECT pg_create_logical_replication_slot('bench', 'pgoutput')")
            conn.execute(update)
            held = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)"
                " FROM pg_replication_slots WHERE slot_name = 'bench'"
            ).fetchone()
            conn.execute("SELECT pg_drop_replication_slot('bench')")
        assert held is not None
        report(
            [
                (f"UPDATE of {rows} rows, no capture", f"{plain * 1000:.0f} ms", "1.00x"),
                (
                    "  with the capture trigger",
                    f"{triggered * 1000:.0f} ms",
                    f"{triggered / plain:.2f}x",
                ),
                (
                    "  with wal_level=logical + slot",
                    f"{logical * 1000:.0f} ms",
                    f"{logical / plain:.2f}x",
                ),
                ("kept for one such UPDATE: queue table", f"{queue_bytes / 1024:.0f} KiB", ""),
                ("  WAL held back by the slot", f"{float(held[0]) / 1024:.0f} KiB", ""),
            ]
        )
    finally:
        source_pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-sync", action="store_true", help="Only part 2.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        root = Path(tmp)
        if not args.skip_sync:
            print(f"sync of a {args.rows}-row source (embedsearch serve, default backend):")
            sync_bar(root, args.rows, args.changes)
        print("what capture costs the source database:")
        capture_cost(root, args.rows, args.runs)


if __name__ == "__main__":
    main()
