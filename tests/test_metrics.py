"""/metrics, the request id and the bounded model queue, on a real server and PostgreSQL."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.base import EmbeddingBatch
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.logs import RequestIdFilter
from tests.servers import LiveServer, live_server, rows

MODEL = "all-MiniLM-L6-v2"
TEXTS = {
    "ml": "Machine learning basics: models learn patterns from data.",
    "db": "PostgreSQL is a relational database with transactions and indexes.",
    "pg": "pgvector adds vector similarity search to PostgreSQL.",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def requests_total(samples: Samples, method: str, route: str, status: int) -> float | None:
    return value(
        samples,
        "embedsearch_http_requests_total",
        method=method,
        route=route,
        status=str(status),
    )


def test_metrics_count_requests_by_route_template_and_status(client: httpx.Client) -> None:
    for chunk_id, text in TEXTS.items():
        assert client.post("/embed", json={"chunkId": chunk_id, "text": text}).status_code == 200
    for _ in range(2):
        assert client.post("/search/pgvector", json={"query": "databases"}).status_code == 200
    assert client.get("/chunks/ml").status_code == 200
    assert client.get("/chunks/a/b/c").status_code == 404  # a chunk id with slashes
    assert client.get("/no/such/path").status_code == 404
    assert client.post("/embed", json={"chunkId": "x"}).status_code == 422

    samples = scrape(client)
    assert requests_total(samples, "POST", "/embed", 200) == 3
    assert requests_total(samples, "POST", "/embed", 422) == 1
    assert requests_total(samples, "POST", "/search/pgvector", 200) == 2
    assert requests_total(samples, "GET", "/chunks/{chunk_id:path}", 200) == 1
    assert requests_total(samples, "GET", "/chunks/{chunk_id:path}", 404) == 1
    assert requests_total(samples, "GET", "unmatched", 404) == 1
    assert not any("/chunks/ml" in str(key) or "/no/such" in str(key) for key in samples)
    # The latency histogram: every bucket from 1 ms to 10 s, per method and route.
    hist = "embedsearch_http_request_duration_seconds"
    for le in ("0.001", "0.01", "0.1", "1.0", "10.0", "+Inf"):
        assert value(samples, f"{hist}_bucket", method="POST", route="/embed", le=le) is not None
    assert value(samples, f"{hist}_count", method="POST", route="/embed") == 4
    assert value(samples, f"{hist}_bucket", method="POST", route="/embed", le="+Inf") == 4
    # The model: 3 stores and 2 queries, one model call each at least (more gathered).
    texts = value(samples, "embedsearch_model_batch_texts_sum", model=MODEL)
    assert texts is not None and texts >= 5
    calls = value(samples, "embedsearch_model_batch_seconds_count", model=MODEL)
    assert calls is not None and 1 <= calls <= 5
    assert value(samples, "embedsearch_model_queue_texts", model=MODEL) == 0
    # The pool, between requests: nothing in use or waiting, some connections idle.
    assert value(samples, "embedsearch_db_pool_connections", state="in_use") == 0
    idle = value(samples, "embedsearch_db_pool_connections", state="idle")
    assert idle is not None and idle >= 1
    assert value(samples, "embedsearch_db_pool_waiting") == 0
    assert value(samples, "embedsearch_index_builds_in_progress") == 0
    assert value(samples, "embedsearch_database_up") == 1
    # The /metrics scrape itself is counted (by the next scrape).
    assert requests_total(scrape(client), "GET", "/metrics", 200) == 1


def test_collection_rows_come_from_the_planner_estimate(
    client: httpx.Client, database_url: str
) -> None:
    created = client.post("/collections", json={"name": "notes"})
    assert created.status_code in (200, 201), created.text
    items = [{"chunkId": f"c{i}", "text": f"note number {i}"} for i in range(7)]
    batch = client.post("/embed/batch", json={"items": items, "collection": "notes"})
    assert batch.status_code == 200, batch.text
    assert client.post("/embed", json={"chunkId": "one", "text": "one chunk"}).status_code == 200

    # Never measured by VACUUM or ANALYZE: the live tuple count of the cumulative statistics,
    # which each backend reports within seconds of its writes.
    deadline = time.monotonic() + 30
    while value(scrape(client), "embedsearch_collection_rows", collection="notes") != 7:
        assert time.monotonic() < deadline, "the statistics never counted the rows"
        time.sleep(0.5)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    after = scrape(client)
    assert value(after, "embedsearch_collection_rows", collection="notes") == 7
    assert value(after, "embedsearch_collection_rows", collection="default") == 1


REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def test_request_id_is_echoed_or_made_on_every_response(client: httpx.Client) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "client-id_1.2"})
    assert given.headers["x-request-id"] == "client-id_1.2"
    made = client.get("/healthz")
    assert REQUEST_ID.fullmatch(made.headers["x-request-id"])
    assert client.get("/healthz").headers["x-request-id"] != made.headers["x-request-id"]
    for unsafe in ("a" * 129, "has space", "new\tline", 'quote"d', "ü"):
        replaced = client.get("/healthz", headers={"X-Request-Id": unsafe.encode()})
        assert REQUEST_ID.fullmatch(replaced.headers["x-request-id"]), unsafe
    errors = [
        client.get("/no/such/path", headers={"X-Request-Id": "r-404"}),
        client.post("/embed", json={"chunkId": 1}, headers={"X-Request-Id": "r-422"}),
        client.post(
            "/embed",
            content=b"{not json",
            headers={"X-Request-Id": "r-400", "Content-Type": "application/json"},
        ),
        client.delete("/healthz", headers={"X-Request-Id": "r-405"}),
    ]
    assert [r.status_code for r in errors] == [404, 422, 400, 405]
    assert [r.headers["x-request-id"] for r in errors] == ["r-404", "r-422", "r-400", "r-405"]
    assert all(r.headers.get_list("x-request-id") == [r.headers["x-request-id"]] for r in errors)


@pytest.fixture
def logging_app(settings: Settings, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    """Our app plus two routes of this test's: one logs, one fails unexpectedly."""
    app: FastAPI = create_app(settings, embedder=local_embedder)

    async def logs_a_line() -> dict[str, str]:
        logging.getLogger("tests.request").info("handling the request")
        return {"ok": "yes"}

    async def breaks() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/log", logs_a_line)
    app.add_api_route("/test/break", breaks)
    with live_server(app) as live:
        yield live


def test_log_records_carry_the_request_id(
    logging_app: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())  # what configure_logging puts on its handler
    with caplog.at_level(logging.INFO), httpx.Client(base_url=logging_app.url) as http:
        assert http.get("/test/log", headers={"X-Request-Id": "log-1"}).status_code == 200
        broken = http.get("/test/break", headers={"X-Request-Id": "log-2"})
    assert broken.status_code == 500
    assert broken.headers["x-request-id"] == "log-2"
    assert broken.json()["error"]["code"] == "internal_error"
    logged = {record.getMessage(): getattr(record, "request_id", None) for record in caplog.records}
    assert logged["handling the request"] == "log-1"
    assert logged["unexpected error"] == "log-2"
    # Outside any request there is no id.
    logging.getLogger("tests.request").warning("between requests")
    assert caplog.records[-1].request_id is None  # type: ignore[attr-defined]


class Slowed:
    """The real model, slowed down on purpose so that requests pile up in its queue."""

    def __init__(self, inner: LocalEmbedder, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.name = inner.name
        self.dimensions = inner.dimensions

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        time.sleep(self.seconds)
        return self.inner.embed(texts)

    def close(self) -> None:
        pass


def test_a_full_model_queue_answers_429_with_retry_after_and_stores_nothing(
    settings: Settings, local_embedder: LocalEmbedder, database_url: str
) -> None:
    app = create_app(
        settings.model_copy(update={"max_queued_texts": 2, "batch_size": 1}),
        embedder=Slowed(local_embedder, 0.3),
    )
    with live_server(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:

        def embed(i: int) -> httpx.Response:
            return http.post("/embed", json={"chunkId": f"c{i}", "text": f"text {i}"})

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(embed, range(12)))
        # One request bigger than the bound still runs when the queue is empty.
        items = [{"chunkId": f"big{i}", "text": f"big {i}"} for i in range(5)]
        big = http.post("/embed/batch", json={"items": items})
        samples = scrape(http)

    statuses = [r.status_code for r in answers]
    assert set(statuses) == {200, 429}, statuses
    assert 3 <= statuses.count(200) <= 9, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "overloaded"
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.headers["x-request-id"]
    assert big.status_code == 200, big.text
    stored = {r[0] for r in rows(database_url, "SELECT chunk_id FROM chunk_embeddings")}
    accepted = {f"c{i}" for i, r in enumerate(answers) if r.status_code == 200}
    assert stored == accepted | {f"big{i}" for i in range(5)}
    assert requests_total(samples, "POST", "/embed", 429) == statuses.count(429)
