"""What the source tests share: a source table in a separate PostgreSQL, the capture objects
read from its catalog, the collection read straight from the service database, and waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.servers import create_database, rows


def source_rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Read the source database (no pgvector there)."""
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


ARTICLES = """
CREATE TABLE articles (
    id      INTEGER PRIMARY KEY,
    title   TEXT NOT NULL,
    body    TEXT,
    lang    TEXT NOT NULL,
    year    INTEGER NOT NULL,
    hidden  BOOLEAN NOT NULL DEFAULT false
)"""
TOPICS = (
    "neural networks",
    "sourdough bread",
    "glacier retreat",
    "medieval castles",
    "tidal power",
)


def new_source_database(admin_url: str) -> str:
    """A fresh database on the separate PostgreSQL, holding an empty `articles` table."""
    url = create_database(admin_url, prefix="src")
    with psycopg.connect(url) as conn:
        conn.execute(ARTICLES)
    return url


def article(i: int, version: int = 0) -> tuple[int, str, str, str, int]:
    topic = TOPICS[i % len(TOPICS)]
    return (
        i,
        f"Article {i} on {topic}",
        f"Version {version}: notes number {i} about {topic}, part {i % 13}.",
        "en" if i % 3 else "de",
        2000 + i % 25,
    )


def fill(url: str, ids: range, version: int = 0) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO articles (id, title, body, lang, year) VALUES (%s, %s, %s, %s, %s)",
            [article(i, version) for i in ids],
        )


def source_body(url: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "articles",
        "table": "articles",
        "idColumn": "id",
        "textColumns": ["title", "body"],
        "metadataColumns": ["lang", "year"],
        "collection": "articles",
    }
    if url is not None:
        body["url"] = url
    return body | extra


def capture_objects(url: str) -> list[tuple[str, str]]:
    """Every object a source could have created: tables, functions and triggers (not internal)."""
    return source_rows(
        url,
        "SELECT 'table', relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " UNION ALL SELECT 'function', proname::text FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace"
        " UNION ALL SELECT 'trigger', tgname::text FROM pg_trigger WHERE NOT tgisinternal"
        " ORDER BY 1, 2",
    )


def stored_documents(url: str, table: str = "c_articles") -> dict[str, tuple[str, Any]]:
    """document id -> (its chunks' text joined, metadata), read straight from the service's
    database."""
    found = rows(
        url,
        psycopg.sql.SQL(
            "SELECT document_id, string_agg(content, ' ' ORDER BY length(chunk_id), chunk_id),"
            " (array_agg(metadata))[1] FROM {} GROUP BY document_id"
        ).format(psycopg.sql.Identifier(table)),
    )
    return {str(r[0]): (str(r[1]), r[2]) for r in found}


def expected_documents(
    url: str, where: str = "true", metadata: tuple[str, ...] = ("lang", "year")
) -> dict[str, tuple[str, Any]]:
    """What a fresh backfill of the table must give, computed here from the rows."""
    found = source_rows(url, f"SELECT id, title, body, lang, year FROM articles WHERE {where}")  # noqa: S608
    documents = {}
    for i, title, body, lang, year in found:
        values = {"lang": lang, "year": year}
        text = "\n\n".join(t for t in (title, body) if t is not None)
        documents[str(i)] = (text, {k: values[k] for k in metadata})
    return documents


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1
) -> Any:
    """Poll, not too often: each look reads both databases, on the cores the server uses."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def source_status(http: httpx.Client, name: str = "articles") -> dict[str, Any]:
    response = http.get(f"/sources/{name}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found
