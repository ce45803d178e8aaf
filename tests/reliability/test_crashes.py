"""Crashes and shutdowns of `embedsearch serve`, run as a user runs it (a subprocess on a real
port, a real PostgreSQL), with a 500-item /embed/batch in flight.

Each batch is caught at its most fragile point rather than at a guessed moment: the test holds
an uncommitted insert of the batch's last chunk id (the store writes in chunk id order), so the
server's INSERT stops with 499 rows written and its transaction open, and the test acts once
PostgreSQL shows that INSERT waiting for it. What the tests prove:

- kill -9 of the server then leaves none of the batch stored, and the next start serves (the
  same batch then lands whole);
- SIGTERM then answers the batch 503 `shutting_down` with nothing stored when it cannot finish
  within EMBEDSEARCH_SHUTDOWN_TIMEOUT_S, or 200 with all of it stored when it can (never a
  500, never a part), the process exits by itself, and the embedded PostgreSQL it ran is
  stopped;
- an embedded PostgreSQL left running by a kill -9 is reused by the next start (same
  postmaster, data intact) and stopped by that start's clean exit.
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from embedsearch.store.embedded import EmbeddedPostgres
from tests.reliability.processes import (
    ServeProcess,
    backends,
    batch,
    embedded_url,
    held_row,
    is_running,
    postgres_processes,
    postmaster_pid,
    serving,
    wait_for,
    waiting_writer,
)
from tests.servers import create_database, rows

BATCH_SIZE = 500
EXIT_TIMEOUT_S = 30  # a signalled server must be gone within this
# EMBEDSEARCH_SHUTDOWN_TIMEOUT_S of the SIGTERM tests: held past 1 s, or released at once
# with ample time left to finish (a loaded machine must not turn it into the other case).
SHUTDOWN_TIMEOUT_S = {False: 1, True: 10}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir for a server with its own embedded PostgreSQL; a PostgreSQL a failed test
    leaves running there is stopped (fast shutdown) afterwards."""
    data = tmp_path / "data"
    yield data
    for pid in postgres_processes(data / "pgdata"):  # postmasters: they stop their children
        try:
            process = psutil.Process(pid)
            process.send_signal(signal.SIGINT)
            process.wait(30)
        except psutil.Error:
            continue


def assert_clean_exit(server: ServeProcess) -> None:
    """Exited by itself after the lifespan's shutdown ran to its end. (uvicorn re-raises the
    signal it handled once shut down, so the exit status is that signal's.)"""
    code = server.wait_exit(EXIT_TIMEOUT_S)
    output = server.output()
    assert code == -signal.SIGTERM, output
    assert "Application shutdown complete" in output, output
    assert "Traceback" not in output, output


def _send(url: str, items: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(f"{url}/embed/batch", json={"items": items}, timeout=120)


def _shuffled(items: list[dict[str, object]]) -> list[dict[str, object]]:
    shuffled = list(items)
    random.Random(15).shuffle(shuffled)  # the store must sort them itself
    return shuffled


def _stored(url: str, ids: list[str]) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in rows(
            url,
            "SELECT chunk_id, content FROM chunk_embeddings WHERE chunk_id = ANY(%s)"
            " ORDER BY chunk_id",
            (ids,),
        )
    ]


def _texts(items: list[dict[str, object]]) -> list[tuple[str, str]]:
    return sorted((str(item["chunkId"]), str(item["text"])) for item in items)


def test_kill_9_during_a_batch_stores_none_of_it(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = create_database(embedded_pg.url)
    items = batch("kill", BATCH_SIZE)
    ids = [str(item["chunkId"]) for item in items]
    with serving(tmp_path / "data", url) as server:
        with held_row(url, ids[-1]) as blocker, ThreadPoolExecutor(1) as pool:
            sent: Future[httpx.Response] = pool.submit(_send, server.url, _shuffled(items))
            waiting_writer(url, blocker.info.backend_pid)
            server.signal(signal.SIGKILL)
            server.wait_exit(EXIT_TIMEOUT_S)
            assert isinstance(sent.exception(timeout=60), httpx.TransportError)
        # The held row is rolled back: the dead server's INSERT completes, its backend finds
        # the client gone and aborts the transaction.
        wait_for(lambda: backends(url) == 0, 60, "the killed server's connections to end")
    assert _stored(url, ids) == []
    assert rows(url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]

    with serving(tmp_path / "data", url) as again:
        answer = _send(again.url, _shuffled(items))
        assert answer.status_code == 200, answer.text
        assert answer.json()["count"] == BATCH_SIZE and answer.json()["created"] == BATCH_SIZE
        again.signal(signal.SIGTERM)
        assert_clean_exit(again)
    assert _stored(url, ids) == _texts(items)


@pytest.mark.parametrize("finishes", [False, True], ids=["past-the-timeout", "within-it"])
def test_sigterm_during_a_batch_is_all_or_nothing_and_stops_postgres(
    data_dir: Path, finishes: bool
) -> None:
    pgdata = data_dir / "pgdata"
    items = batch("term", BATCH_SIZE)
    ids = [str(item["chunkId"]) for item in items]
    timeout = str(SHUTDOWN_TIMEOUT_S[finishes])
    with serving(data_dir, EMBEDSEARCH_SHUTDOWN_TIMEOUT_S=timeout) as server:
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None
        url = embedded_url(pgdata)
        with held_row(url, ids[-1]) as blocker, ThreadPoolExecutor(1) as pool:
            sent: Future[httpx.Response] = pool.submit(_send, server.url, _shuffled(items))
            waiting_writer(url, blocker.info.backend_pid)
            server.signal(signal.SIGTERM)
            if finishes:  # the write can complete at once, well within the graceful timeout
                blocker.rollback()
            answer: httpx.Response | BaseException = sent.exception(timeout=60) or sent.result()
            assert_clean_exit(server)
    # The server stopped the embedded PostgreSQL it ran before exiting.
    wait_for(lambda: not postgres_processes(pgdata), 10, f"PostgreSQL of {pgdata} to stop")
    assert postmaster_pid(pgdata) is None
    assert not is_running(postmaster)
    # What was stored, read with the server stopped: all of the batch, or none of it.
    check = EmbeddedPostgres(pgdata)
    try:
        stored = _stored(check.url, ids)
    finally:
        check.stop()
    assert stored == (_texts(items) if finishes else [])
    # And the client was told which.
    assert isinstance(answer, httpx.Response), f"no answer to the batch: {answer!r}"
    if finishes:
        assert answer.status_code == 200, answer.text
        assert answer.json()["count"] == BATCH_SIZE
    else:  # held past the timeout: cancelled, rolled back, answered as such
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "shutting_down"
        assert answer.headers["retry-after"]


def test_embedded_postgres_left_by_kill_9_is_reused_then_stopped(data_dir: Path) -> None:
    pgdata = data_dir / "pgdata"
    with serving(data_dir) as first:
        kept = httpx.post(
            f"{first.url}/embed", json={"chunkId": "kept", "text": "Stored before the crash."}
        )
        assert kept.status_code == 200, kept.text
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None
        first.signal(signal.SIGKILL)
        first.wait_exit(EXIT_TIMEOUT_S)
    # Expected: nothing stopped the embedded PostgreSQL, and its list of users names the dead pid.
    assert postmaster_pid(pgdata) == postmaster
    assert first.pid in json.loads((pgdata / ".handle_pids.json").read_text())

    with serving(data_dir) as second:
        assert postmaster_pid(pgdata) == postmaster  # joined, not restarted
        found = httpx.get(f"{second.url}/chunks/kept")
        assert found.status_code == 200, found.text
        assert found.json()["text"] == "Stored before the crash."
        with psycopg.connect(embedded_url(pgdata)) as conn:
            assert conn.execute("SELECT count(*) FROM chunk_embeddings").fetchone() == (1,)
        second.signal(signal.SIGTERM)
        assert_clean_exit(second)
    # The clean stop after the crash stopped the PostgreSQL the crashed process left.
    wait_for(lambda: not postgres_processes(pgdata), 10, f"PostgreSQL of {pgdata} to stop")
    assert postmaster_pid(pgdata) is None
