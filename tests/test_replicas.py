"""Read replicas on a real primary + streaming replica (tests/replication.py), over real HTTP.

Which server served a search is read from the servers' own statistics and from /metrics; a lag
is made real by pausing the replica's WAL replay, a failure by stopping it (-m immediate).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core import chunks, search
from embedsearch.core.errors import InvalidInput
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.runtime import open_deps
from embedsearch.store.lsn import format_lsn, parse_lsn
from embedsearch.store.replicas import replica_reads
from tests.replication import StreamingReplica
from tests.servers import TcpPostgres, create_database, live_server
from tests.test_metrics import scrape, value

LSN = "x-embedsearch-lsn"
MIN_LSN = "X-Embedsearch-Min-Lsn"
TEXTS = {
    "ml": "Machine learning basics: models learn patterns from data.",
    "db": "PostgreSQL is a relational database with transactions and indexes.",
    "pg": "pgvector adds vector similarity search to PostgreSQL.",
    "cat": "A cat sleeps on the warm windowsill all afternoon.",
}


@dataclass
class Cluster:
    primary: TcpPostgres
    replica: StreamingReplica


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    primary = TcpPostgres(tmp_path_factory.mktemp("replicated"))
    try:
        replica = StreamingReplica(primary)
    except BaseException:
        primary.destroy()
        raise
    yield Cluster(primary, replica)
    replica.destroy()
    primary.destroy()


@dataclass
class Database:
    """One test's database: its URL on the primary and on the replica."""

    primary: str
    replica: str
    name: str


@pytest.fixture
def database(cluster: Cluster) -> Database:
    primary = create_database(cluster.primary.url())
    name = conninfo_to_dict(primary)["dbname"]
    cluster.replica.wait_for(name)
    return Database(primary, cluster.replica.url(name), name)


def replica_settings(database: Database, tmp_path: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "database_url": database.primary,
        "data_dir": tmp_path / "data",
        "read_database_urls": database.replica,
        "replica_check_interval_s": 0.1,
    }
    return Settings(**(options | overrides))


@contextmanager
def serve(settings: Settings, embedder: LocalEmbedder) -> Iterator[httpx.Client]:
    with (
        live_server(create_app(settings, embedder=embedder)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        yield http


def reads_by(http: httpx.Client, server: str) -> float:
    """Reads the replica (host:port) or the primary ("primary") served, from /metrics."""
    found = value(scrape(http), "embedsearch_replica_reads_total", server=server)
    assert found is not None, server
    return found


def replica_name(cluster: Cluster) -> str:
    return f"127.0.0.1:{cluster.replica.port}"


def found_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["chunkId"] for hit in response.json()["results"]}


def wait_until(condition: Callable[[], bool], timeout_s: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def replica_healthy(http: httpx.Client, cluster: Cluster) -> float | None:
    return value(scrape(http), "embedsearch_replica_healthy", replica=replica_name(cluster))


def table_scans(url: str) -> int:
    """Scans of the chunk table counted by that server's own statistics."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            " WHERE relname = 'chunk_embeddings'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def replay_paused(cluster: Cluster) -> Iterator[Callable[[], None]]:
    """The replica's WAL replay paused (it lags behind every later write); yields `resume`."""
    url = cluster.replica.url()

    def resume() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        yield resume
    finally:
        resume()


def fill(http: httpx.Client) -> str:
    items = [{"chunkId": key, "text": text} for key, text in TEXTS.items()]
    response = http.post("/embed/batch", json={"items": items})
    assert response.status_code == 200, response.text
    return response.headers[LSN]


def test_searches_run_on_the_replica_by_its_own_statistics(
    cluster: Cluster, database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    with serve(replica_settings(database, tmp_path), local_embedder) as http:
        lsn = fill(http)
    # The writer's connections are closed: their statistics are reported, so from here on
    # the primary's count moves only if a search runs there.
    wait_until(lambda: table_scans(database.primary) > 0, what="the primary's statistics")
    primary_before, replica_before = table_scans(database.primary), table_scans(database.replica)
    searches = 12
    with serve(replica_settings(database, tmp_path), local_embedder) as http:
        for i in range(searches):
            headers = {MIN_LSN: lsn} if i % 2 else {}
            response = http.post("/search/pgvector", json={"query": "databases"}, headers=headers)
            assert found_ids(response) == set(TEXTS)
        assert reads_by(http, replica_name(cluster)) >= searches
        assert reads_by(http, "primary") == 0
    # Closed again: the replica's backends report what they did as they exit.
    wait_until(
        lambda: table_scans(database.replica) >= replica_before + searches,
        what="the replica's statistics",
    )
    assert table_scans(database.primary) == primary_before


def test_a_search_given_a_writes_lsn_sees_it_while_the_replica_lags(
    cluster: Cluster, database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = replica_settings(database, tmp_path, replica_max_lag_s=60, min_lsn_wait_s=1.0)
    replica = replica_name(cluster)
    with serve(settings, local_embedder) as http:
        first = fill(http)
        query = {"query": "a sleeping cat", "limit": 10}
        assert found_ids(
            http.post("/search/pgvector", json=query, headers={MIN_LSN: first})
        ) == set(TEXTS)
        with replay_paused(cluster) as resume:
            write = http.post(
                "/embed", json={"chunkId": "new", "text": "A kitten naps in the sun."}
            )
            assert write.status_code == 200, write.text
            second = write.headers[LSN]
            assert parse_lsn(second) > parse_lsn(first)
            on_replica, on_primary = reads_by(http, replica), reads_by(http, "primary")
            # Without the position: served by the lagging replica, which has not the write.
            assert "new" not in found_ids(http.post("/search/pgvector", json=query))
            assert reads_by(http, replica) == on_replica + 1
            # With it: the replica does not reach it within the wait, so the primary serves it.
            started = time.monotonic()
            assert "new" in found_ids(
                http.post("/search/pgvector", json=query, headers={MIN_LSN: second})
            )
            assert time.monotonic() - started >= 1.0
            assert reads_by(http, "primary") == on_primary + 1
            # Replay resumes while a read waits for it: the replica serves it, write included.
            threading.Timer(0.3, resume).start()
            assert "new" in found_ids(
                http.post("/search", json=query | {"mode": "hybrid"}, headers={MIN_LSN: second})
            )
            assert reads_by(http, "primary") == on_primary + 1
            assert reads_by(http, replica) > on_replica + 1


def test_a_replica_lagging_past_the_bound_is_skipped_until_it_catches_up(
    cluster: Cluster,
    database: Database,
    local_embedder: LocalEmbedder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = replica_settings(database, tmp_path, replica_max_lag_s=0.5)
    replica = replica_name(cluster)
    with serve(settings, local_embedder) as http:
        fill(http)
        assert replica_healthy(http, cluster) == 1
        with replay_paused(cluster):
            assert http.post("/embed", json={"chunkId": "late", "text": "lag"}).status_code == 200
            wait_until(lambda: replica_healthy(http, cluster) == 0, what="the replica skipped")
            samples = scrape(http)
            assert value(samples, "embedsearch_replicas_healthy") == 0
            lag = value(samples, "embedsearch_replica_lag_seconds", replica=replica)
            assert lag is not None and lag > 0.5
            lag_bytes = value(samples, "embedsearch_replica_lag_bytes", replica=replica)
            assert lag_bytes is not None and lag_bytes > 0
            on_primary = reads_by(http, "primary")
            # Skipped: the primary serves the search, so the write is found without asking.
            response = http.post("/search/pgvector", json={"query": "lag", "limit": 10})
            assert "late" in found_ids(response)
            assert reads_by(http, "primary") == on_primary + 1
            assert http.get("/readyz").status_code == 200
        wait_until(lambda: replica_healthy(http, cluster) == 1, what="the replica back")
        on_replica = reads_by(http, replica)
        assert "late" in found_ids(http.post("/search/pgvector", json={"query": "lag"}))
        assert reads_by(http, replica) == on_replica + 1
    assert "lagging more than 0.5 s" in caplog.text
    assert cluster.primary.password not in caplog.text


def test_stopping_the_replica_under_search_load_fails_no_search(
    cluster: Cluster, database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    replica = replica_name(cluster)
    with serve(replica_settings(database, tmp_path), local_embedder) as http:
        fill(http)
        statuses: Counter[int] = Counter()
        stop = threading.Event()

        def searching(client: int) -> None:
            with httpx.Client(base_url=str(http.base_url), timeout=60) as own:
                while not stop.is_set():
                    query = {"query": f"database {client}", "limit": 3}
                    statuses[own.post("/search/pgvector", json=query).status_code] += 1

        clients = [threading.Thread(target=searching, args=(i,)) for i in range(4)]
        for thread in clients:
            thread.start()
        try:
            wait_until(lambda: reads_by(http, replica) >= 10, what="searches on the replica")
            cluster.replica.stop("immediate")
            try:
                wait_until(lambda: replica_healthy(http, cluster) == 0, what="the replica down")
                served = statuses[200]
                wait_until(lambda: statuses[200] >= served + 10, what="searches without it")
                assert http.get("/readyz").status_code == 200
            finally:
                cluster.replica.start()
            wait_until(lambda: replica_healthy(http, cluster) == 1, what="the replica back")
            on_replica = reads_by(http, replica)
            wait_until(lambda: reads_by(http, replica) >= on_replica + 10, what="reads back on it")
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    assert set(statuses) == {200}, statuses
    assert statuses[200] > 30


def test_reads_go_on_on_the_replica_while_the_primary_is_down(
    cluster: Cluster, database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = replica_settings(database, tmp_path, db_timeout_s=1)
    with serve(settings, local_embedder) as http:
        fill(http)
        cluster.primary.stop()
        try:
            for request in (
                http.get("/readyz"),
                http.post("/embed", json={"chunkId": "x", "text": "while down"}),
            ):
                assert request.status_code == 503, request.text
            response = http.post("/search/pgvector", json={"query": "databases"})
            assert found_ids(response) == set(TEXTS)
            assert replica_healthy(http, cluster) == 1
        finally:
            cluster.primary.start()


BAD_MIN_LSNS = ("zz", "1/", "/1", "0/123456789", "1/2/3", "16/B374D848 x", "0x16/B3", "-1/0", "")


def test_a_malformed_min_lsn_is_a_400_naming_the_header(
    database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    plain = Settings(database_url=database.primary, data_dir=tmp_path / "plain")
    # With replicas or without: the header means the same wherever it is sent.
    for settings in (replica_settings(database, tmp_path), plain):
        with serve(settings, local_embedder) as http:
            for header in BAD_MIN_LSNS:
                response = http.post(
                    "/search/pgvector", json={"query": "x"}, headers={MIN_LSN: header}
                )
                assert response.status_code == 400, (header, response.text)
                error = response.json()["error"]
                assert error["code"] == "invalid_header"
                assert error["field"] == MIN_LSN


def test_without_replicas_nothing_changes(
    database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = Settings(database_url=database.primary, data_dir=tmp_path / "data")
    with serve(settings, local_embedder) as http:
        write = http.post("/embed", json={"chunkId": "a", "text": "hello"})
        assert write.status_code == 200
        assert LSN not in write.headers
        headers = {MIN_LSN: "0/1"}
        response = http.post("/search/pgvector", json={"query": "hello"}, headers=headers)
        assert found_ids(response) == {"a"}
        assert not any("replica" in line for line in http.get("/metrics").text.splitlines())


def test_library_users_get_the_lsn_and_read_their_writes(
    cluster: Cluster, database: Database, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = replica_settings(
        database, tmp_path, replica_max_lag_s=60, min_lsn_wait_s=0.2, ef_search=123
    )

    async def go() -> None:
        async with open_deps(settings, embedder=local_embedder) as deps:
            # A replica's connections start with the primary's session defaults.
            with replica_reads():
                async with deps.store.database.reading() as conn:
                    cur = await conn.execute(
                        "SELECT pg_is_in_recovery(), current_setting('hnsw.ef_search')"
                    )
                    assert await cur.fetchone() == (True, "123")
            await chunks.embed_chunk(deps, "first", "Machine learning basics")
            with replay_paused(cluster):
                await chunks.embed_chunk(deps, "second", "Deep learning and neural networks")
                lsn = deps.store.database.last_commit_lsn
                assert lsn is not None
                with replica_reads():  # the lagging replica: not there yet
                    outcome = await search.search(deps, "neural networks", limit=10)
                assert {hit.chunk_id for hit in outcome.hits} == {"first"}
                with replica_reads(parse_lsn(lsn)):  # waits, then the primary
                    outcome = await search.search(deps, "neural networks", limit=10)
                assert {hit.chunk_id for hit in outcome.hits} == {"first", "second"}
            statuses, primary_reads = deps.store.database.replica_statuses()
            assert [s.reads for s in statuses] == [2] and primary_reads == 1

    asyncio.run(go())


def test_lsns_read_and_write_as_postgresql_does() -> None:
    for text in ("0/0", "0/1A2B3C", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert format_lsn(parse_lsn(text)) == text
    assert parse_lsn("16/B374D848") == 0x16 << 32 | 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


def test_replica_urls_are_checked_without_quoting_them() -> None:
    for urls, bad in (
        ("host=h1 password=t0psecret, postgresql://u:pw@h2/db", 1),
        ("postgresql://u:pw@h1/db, postgresql://u:t0psecret@h2/db two", 2),
    ):
        with pytest.raises(InvalidInput) as raised:
            _ = Settings(read_database_urls=urls).replica_urls
        assert f"item {bad} " in raised.value.message
        assert "t0psecret" not in raised.value.message
    multi_host = Settings(read_database_urls="postgresql://u:p@h1,h2:5433/db, postgres://h3/db")
    assert multi_host.replica_urls == ["postgresql://u:p@h1,h2:5433/db", "postgres://h3/db"]
