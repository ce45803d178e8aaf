"""Fixtures: one embedded PostgreSQL + pgvector per test session, a fresh database per test,
one loaded model shared by every app, and our API on a real HTTP port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from tests.servers import LiveServer, TcpPostgres, create_database, live_server


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "pgdata")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tcp_pg(
    tmp_path_factory: pytest.TempPathFactory, embedded_pg: EmbeddedPostgres
) -> Iterator[TcpPostgres]:
    """A PostgreSQL of its own on TCP with a password, that a test may stop and start."""
    server = TcpPostgres(tmp_path_factory.mktemp("tcp-pg"))
    yield server
    server.destroy()


@pytest.fixture
def database_url(embedded_pg: EmbeddedPostgres) -> str:
    return create_database(embedded_pg.url)


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def server(settings: Settings, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    with live_server(create_app(settings, embedder=local_embedder)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
