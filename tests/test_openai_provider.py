"""The OpenAI provider against real servers speaking the OpenAI embeddings protocol: our own
/v1/embeddings (also driven by the official openai client), and a flaky proxy in front of it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.core.errors import InvalidInput
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.embedders.openai import OpenAIEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from tests.flaky_proxy import FlakyProxy
from tests.servers import LiveServer, create_database, live_server, rows

TEXTS = ["Neural networks learn representations.", "Bread needs yeast, flour and water."]


def openai_settings(base_url: str, database_url: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        embedder="openai:all-MiniLM-L6-v2",
        openai_base_url=base_url,
        database_url=database_url,
        data_dir=tmp_path / "data",
        **extra,
    )


def decode(embedding: list[float] | str) -> np.ndarray:
    """Asked for explicitly, base64 comes back to the caller as sent: little-endian float32."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding)


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


def test_official_client_gets_our_model_vectors(
    sdk: openai.OpenAI, local_embedder: LocalEmbedder
) -> None:
    expected = local_embedder.embed(TEXTS).vectors
    for encoding in ("float", "base64"):
        response = sdk.embeddings.create(
            model="all-MiniLM-L6-v2", input=TEXTS, encoding_format=encoding
        )
        got = np.array([decode(item.embedding) for item in response.data])
        assert [item.index for item in response.data] == [0, 1]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert response.usage.prompt_tokens > 0
    # The SDK's own default (base64 on the wire, decoded by the SDK) and a single string input.
    single = sdk.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=TEXTS[0])
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-5)


def test_official_client_dimensions_shortens_and_renormalizes(sdk: openai.OpenAI) -> None:
    response = sdk.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, dimensions=128)
    vectors = np.array([item.embedding for item in response.data])
    assert vectors.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_official_client_sees_errors_in_openai_shape(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.embeddings.create(model="text-embedding-3-small", input="x")
    assert "not served here" in str(info.value)


def test_service_on_openai_provider_embeds_and_searches(
    server: LiveServer, embedded_pg: EmbeddedPostgres, local_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    database_url = create_database(embedded_pg.url)
    settings = openai_settings(server.url + "/v1", database_url, tmp_path)
    with live_server(create_app(settings)) as remote, httpx.Client(base_url=remote.url) as http:
        for i, text in enumerate(TEXTS):
            body = http.post("/embed", json={"chunkId": f"c{i}", "text": text}).json()
            assert body == body | {
                "dimensions": 384,
                "model": "all-MiniLM-L6-v2",
                "chunkId": f"c{i}",
            }
        results = http.post("/search/pgvector", json={"query": "deep learning"}).json()["results"]
        assert [r["chunkId"] for r in results] == ["c0", "c1"]
    stored = rows(database_url, "SELECT embedding FROM chunk_embeddings ORDER BY chunk_id")
    np.testing.assert_allclose(
        np.stack([r[0].to_numpy() for r in stored]), local_embedder.embed(TEXTS).vectors, atol=1e-5
    )


def test_dimensions_setting_is_passed_to_the_provider(
    server: LiveServer, embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    database_url = create_database(embedded_pg.url)
    settings = openai_settings(server.url + "/v1", database_url, tmp_path, dimensions=128)
    with live_server(create_app(settings)) as remote, httpx.Client(base_url=remote.url) as http:
        assert (
            http.post("/embed", json={"chunkId": "a", "text": "hello"}).json()["dimensions"] == 128
        )
    assert rows(database_url, "SELECT vector_dims(embedding) FROM chunk_embeddings") == [(128,)]


@contextmanager
def behind_proxy(
    server: LiveServer, embedded_pg: EmbeddedPostgres, tmp_path: Path, *, status: int, retries: int
) -> Iterator[tuple[FlakyProxy, httpx.Client, str]]:
    """Our service on the OpenAI provider, talking to `server` through a flaky proxy.
    Yields (proxy, client of our service, its database URL)."""
    proxy = FlakyProxy(server.url, fail_first=0, status=status)
    try:
        database_url = create_database(embedded_pg.url)
        settings = openai_settings(
            proxy.url + "/v1", database_url, tmp_path, openai_max_retries=retries
        )
        with (
            live_server(create_app(settings)) as remote,
            httpx.Client(base_url=remote.url, timeout=60) as http,
        ):
            yield proxy, http, database_url
    finally:
        proxy.close()


def test_rate_limits_are_retried(
    server: LiveServer, embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    with behind_proxy(server, embedded_pg, tmp_path, status=429, retries=3) as (proxy, http, _):
        before = proxy.requests
        proxy.fail_first = before + 2  # the next two calls get 429
        response = http.post("/embed", json={"chunkId": "a", "text": "hello"})
        assert response.status_code == 200, response.text
        assert proxy.requests == before + 3


@pytest.mark.parametrize("status", [500, 429, 401, 400])
def test_provider_failure_is_our_error_without_the_providers_words(
    server: LiveServer,
    embedded_pg: EmbeddedPostgres,
    tmp_path: Path,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The proxy's errors echo our credential back: neither it nor the provider's text may
    reach the client or the log, and nothing is stored."""
    secret = "sk-echoed-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with behind_proxy(server, embedded_pg, tmp_path, status=status, retries=1) as proxy_http_db:
        proxy, http, database_url = proxy_http_db
        proxy.fail_first = 10**9  # from now on every call fails
        response = http.post("/embed", json={"chunkId": "a", "text": "hello"})
        error = response.json()["error"]
        if status == 400:  # the provider refused the text: the client's fault, and said so
            assert response.status_code == 422 and error["code"] == "invalid_input"
        else:
            assert response.status_code == 502 and error["code"] == "provider_unavailable"
        assert f"HTTP {status}" in error["message"]
        search = http.post("/search/pgvector", json={"query": "hello"})
        assert search.status_code == response.status_code
        for text in (response.text, search.text, str(response.headers), caplog.text):
            assert secret not in text and "try again later" not in text
    assert rows(database_url, "SELECT count(*) FROM chunk_embeddings") == [(0,)]


def test_unreachable_provider_is_a_clear_error() -> None:
    embedder_error = None
    try:
        OpenAIEmbedder("some-model", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    except Exception as exc:  # the dimension probe fails: no server there
        embedder_error = exc
    assert embedder_error is not None and "unreachable" in str(embedder_error)


def test_openai_without_key_or_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InvalidInput, match="OPENAI_API_KEY"):
        OpenAIEmbedder("text-embedding-3-small")
