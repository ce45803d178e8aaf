"""Property-based tests over our own OpenAPI schema (schemathesis, pinned in the dev extra),
against the live server on a real port with a real PostgreSQL.

For every operation of /openapi.json, schemathesis sends the schema's examples, its coverage
cases (boundaries, missing and wrong-typed fields) and MAX_EXAMPLES generated requests, valid
and invalid, from a fixed seed (the same requests on every run). Proves that none is answered
with a 5xx (`not_a_server_error`) and that every response matches what the schema says of it
(`response_schema_conformance`). The collection starts with a few chunks, so reads and searches
find rows; every operation runs, the destructive ones too (a dropped collection or deleted chunk
only makes later requests 404, which the checks accept).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from tests.servers import LiveServer, create_database, live_server

# POST /text/pdf takes a PDF's bytes: sent as schemathesis sends any binary body.
schemathesis.serializer.alias("application/pdf", "application/octet-stream")

MAX_EXAMPLES = 30  # generated requests per operation (on top of examples and coverage cases)
SEED = 15


@pytest.fixture(scope="module")
def api_server(
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    config = Settings(database_url=SecretStr(create_database(embedded_pg.url)), data_dir=data_dir)
    with live_server(create_app(config, embedder=local_embedder)) as server:
        items = [
            {"chunkId": f"chunk-{i}", "text": text, "metadata": {"lang": "en", "n": i}}
            for i, text in enumerate(
                ["Machine learning basics", "A recipe for bread", "Rivers and glaciers"]
            )
        ]
        stored = httpx.post(f"{server.url}/embed/batch", json={"items": items}, timeout=60)
        assert stored.status_code == 200, stored.text
        yield server


def _openapi() -> dict[str, Any]:
    """The schema our app serves at /openapi.json, built from the app at collection time:
    schemathesis makes its tests while collecting, before any fixture has started a server (its
    lazy `from_fixture` loader, which would wait for one, fails on pytest 9: `Function` has no
    `_nodeid`). test_the_live_server_serves_this_schema shows the live server serves the same."""
    unused = Settings(database_url=SecretStr("postgresql://schema-only@127.0.0.1:9/none"))
    return create_app(unused).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI, config=schemathesis.Config.from_dict({"seed": SEED})
)


def test_the_live_server_serves_this_schema(api_server: LiveServer) -> None:
    assert httpx.get(f"{api_server.url}/openapi.json").json() == OPENAPI


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def _conforms(case: schemathesis.Case[Any], api_server: LiveServer) -> None:
    case.call_and_validate(
        base_url=api_server.url,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=60,
    )


# One test per operation, each under its own name (test_post_embed_batch, ...): on pytest 9 the
# items of one parametrized schemathesis test would all share a single node id.
for _result in schema.get_all_operations():
    _operation = _result.ok()  # type: ignore[union-attr]  # an Err (a broken schema) raises here
    _name = re.sub(r"[^a-z0-9]+", "_", f"test {_operation.method} {_operation.path}".lower())
    globals()[_name.rstrip("_")] = schema.include(
        method=_operation.method.upper(), path=_operation.path
    ).parametrize()(_conforms)
