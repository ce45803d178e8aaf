"""API keys, read keys, protected mode and CORS, on real servers over real sockets."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from embedsearch.api.app import create_app
from embedsearch.api.auth import (
    READ_ONLY_POSTS,
    Access,
    AccessConfigError,
    build_policy,
    is_local_client,
    required_access,
)
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from tests.servers import LiveServer, free_port, live_server

# Long and random, so finding one in a response or a log cannot be a coincidence.
WRITE_KEY = f"wk-{uuid.uuid4().hex}"
OTHER_WRITE_KEY = f"wk2-{uuid.uuid4().hex}"
READ_KEY = f"rk-{uuid.uuid4().hex}"
UNKNOWN_KEY = f"uk-{uuid.uuid4().hex}"
KEYS = (WRITE_KEY, OTHER_WRITE_KEY, READ_KEY, UNKNOWN_KEY)
ORIGIN = "https://app.example.com"
MODEL = "all-MiniLM-L6-v2"
JSON = {"Content-Type": "application/json"}


def keyed(settings: Settings, **update: Any) -> Settings:
    keys = {
        "api_keys": SecretStr(f"{WRITE_KEY}, {OTHER_WRITE_KEY}"),
        "read_api_keys": SecretStr(READ_KEY),
    }
    return settings.model_copy(update=keys | update)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed_server(settings: Settings, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    with live_server(create_app(keyed(settings), embedder=local_embedder)) as live:
        yield live


@pytest.fixture
def http(keyed_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_server.url, timeout=60) as client:
        yield client


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and error["message"]


def assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_no_key_is_401_on_reads_and_writes(http: httpx.Client) -> None:
    assert_unauthorized(http.post("/embed", json={"chunkId": "a", "text": "hello"}))
    assert_unauthorized(http.get("/collections"))
    assert_unauthorized(http.post("/search", json={"query": "hello"}))
    assert_unauthorized(http.delete("/chunks/a"))
    # Deny by default: a route that does not exist (yet) still needs a key first.
    assert_unauthorized(http.post("/collections/default/migrate", json={}))
    assert_unauthorized(http.get("/nowhere"))
    # A scheme other than Bearer carries no key.
    assert_unauthorized(http.get("/collections", headers={"Authorization": f"Basic {WRITE_KEY}"}))


def test_unknown_key_is_401(http: httpx.Client) -> None:
    assert_unauthorized(http.get("/collections", headers=bearer(UNKNOWN_KEY)))
    assert_unauthorized(http.get("/collections", headers={"X-API-Key": UNKNOWN_KEY}))
    # A prefix of a real key is not the key.
    assert_unauthorized(http.get("/collections", headers=bearer(WRITE_KEY[:-1])))


def test_write_keys_write_and_read(http: httpx.Client) -> None:
    for key in (WRITE_KEY, OTHER_WRITE_KEY):
        stored = http.post(
            "/embed", json={"chunkId": "a", "text": "neural networks"}, headers=bearer(key)
        )
        assert stored.status_code == 200, stored.text
        assert http.get("/chunks/a", headers=bearer(key)).status_code == 200
        found = http.post("/search/pgvector", json={"query": "deep learning"}, headers=bearer(key))
        assert [r["chunkId"] for r in found.json()["results"]] == ["a"]
        assert http.delete("/chunks/a", headers=bearer(key)).status_code == 204
    made = http.post("/collections", json={"name": "other"}, headers=bearer(WRITE_KEY))
    assert made.status_code in (200, 201), made.text


def test_read_key_reads_and_searches_but_cannot_write(http: httpx.Client) -> None:
    stored = http.post(
        "/embed", json={"chunkId": "a", "text": "neural networks"}, headers=bearer(WRITE_KEY)
    )
    assert stored.status_code == 200, stored.text
    read = bearer(READ_KEY)
    assert http.get("/collections", headers=read).status_code == 200
    assert http.get("/collections/default", headers=read).status_code == 200
    assert http.get("/chunks/a", headers=read).status_code == 200
    for path in ("/search", "/search/pgvector"):
        found = http.post(path, json={"query": "neural networks"}, headers=read)
        assert found.status_code == 200, found.text
        assert [r["chunkId"] for r in found.json()["results"]] == ["a"]
    assert_forbidden(http.post("/embed", json={"chunkId": "b", "text": "x"}, headers=read))
    assert_forbidden(http.post("/embed/batch", json={"items": []}, headers=read))
    assert_forbidden(http.delete("/chunks/a", headers=read))
    assert_forbidden(http.post("/collections", json={"name": "other"}, headers=read))
    assert_forbidden(http.patch("/collections/default", json={"fusion": None}, headers=read))
    assert_forbidden(http.post("/documents", json={"documentId": "d", "text": "x"}, headers=read))
    assert http.get("/aliases", headers=read).status_code == 200
    assert http.get("/sources", headers=read).status_code == 200
    alias = {"name": "main", "collection": "default"}
    assert_forbidden(http.post("/aliases", json=alias, headers=read))
    assert_forbidden(http.delete("/aliases/main", headers=read))
    source = {"name": "s", "table": "t", "idColumn": "id", "textColumns": ["x"], "collection": "c"}
    assert_forbidden(http.post("/sources", json=source, headers=read))
    assert_forbidden(http.delete("/sources/s", headers=read))
    # Deny by default: an endpoint added later is a write unless declared read.
    assert_forbidden(http.post("/collections/default/migrate", json={}, headers=read))
    assert_forbidden(http.post("/collections/default/migration/switch", headers=read))
    assert_forbidden(http.delete("/collections/default/migration", headers=read))
    assert http.get("/collections/default/migration", headers=read).status_code == 404
    # Nothing the read key tried was done.
    assert http.get("/chunks/a", headers=read).status_code == 200
    assert http.get("/chunks/b", headers=read).status_code == 404
    names = [c["name"] for c in http.get("/collections", headers=read).json()["collections"]]
    assert "other" not in names
    assert http.get("/aliases", headers=read).json()["aliases"] == []


def test_x_api_key_header_works(http: httpx.Client) -> None:
    stored = http.post(
        "/embed", json={"chunkId": "a", "text": "hello"}, headers={"X-API-Key": WRITE_KEY}
    )
    assert stored.status_code == 200, stored.text
    assert http.get("/chunks/a", headers={"X-API-Key": READ_KEY}).status_code == 200
    assert_forbidden(http.delete("/chunks/a", headers={"X-API-Key": READ_KEY}))


def test_probes_are_open_and_docs_need_a_key(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    assert http.head("/healthz").status_code in (200, 405)  # the probe path, never 401
    for path in ("/docs", "/openapi.json"):
        assert_unauthorized(http.get(path))
        assert http.get(path, headers=bearer(READ_KEY)).status_code == 200


def test_openai_sdk_sends_its_key_as_bearer(keyed_server: LiveServer) -> None:
    for key in (WRITE_KEY, READ_KEY):  # computes, stores nothing: a read key may call it
        sdk = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key=key, max_retries=0)
        response = sdk.embeddings.create(model=MODEL, input=["hello", "world"])
        assert [len(item.embedding) for item in response.data] == [384, 384]
    sdk = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key=UNKNOWN_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk.embeddings.create(model=MODEL, input="hello")
    assert raised.value.status_code == 401
    assert UNKNOWN_KEY not in str(raised.value)


def test_read_only_posts_are_real_routes(local_embedder: LocalEmbedder, settings: Settings) -> None:
    """The one list of read-only POSTs names routes that exist (a rename must update it)."""
    app = create_app(settings, embedder=local_embedder)
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    posts = {path for path, operations in paths.items() if "post" in operations}
    assert posts >= READ_ONLY_POSTS
    for path in posts - READ_ONLY_POSTS:
        assert required_access("POST", path) is Access.WRITE
    assert required_access("GET", "/collections/x") is Access.READ
    assert required_access("PUT", "/search") is Access.WRITE
    assert required_access("POST", "/search/") is Access.WRITE
    assert required_access("DELETE", "/healthz") is Access.NONE


def test_key_file(settings: Settings, local_embedder: LocalEmbedder, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# operators\n\n  {WRITE_KEY}  \n# ci\n{OTHER_WRITE_KEY}\n")
    read_path = tmp_path / "read-keys"
    read_path.write_text(f"{READ_KEY}\n")
    config = settings.model_copy(
        update={"api_keys": SecretStr(f"@{path}"), "read_api_keys": SecretStr(f"@{read_path}")}
    )
    policy = build_policy(config)
    assert (policy.write_keys, policy.read_keys) == (2, 1)
    with (
        live_server(create_app(config, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert http.get("/collections", headers=bearer(OTHER_WRITE_KEY)).status_code == 200
        assert_forbidden(http.delete("/chunks/a", headers=bearer(READ_KEY)))
        assert_unauthorized(http.get("/collections", headers=bearer("# operators")))


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"api_keys": SecretStr("@/nonexistent/keys")}, "key file /nonexistent/keys not found"),
        ({"api_keys": SecretStr("")}, "EMBEDSEARCH_API_KEYS is set but holds no key"),
        ({"read_api_keys": SecretStr(" , ,")}, "EMBEDSEARCH_READ_API_KEYS is set but holds no key"),
        ({"api_keys": SecretStr(f"{WRITE_KEY} x")}, "key 1 has a space"),
        (
            {
                "api_keys": SecretStr(WRITE_KEY),
                "read_api_keys": SecretStr(f"{READ_KEY},{WRITE_KEY}"),
            },
            "a key is in both",
        ),
        ({"cors_origins": " , "}, "EMBEDSEARCH_CORS_ORIGINS is set but lists no origin"),
        ({"cors_origins": f"{ORIGIN}/"}, "is not an origin"),
    ],
)
def test_bad_key_settings_stop_the_start(
    settings: Settings, update: dict[str, Any], message: str
) -> None:
    with pytest.raises(AccessConfigError) as raised:
        create_app(settings.model_copy(update=update))
    assert message in str(raised.value)
    assert not any(key in str(raised.value) for key in KEYS)


def test_empty_key_file_stops_the_start(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nobody yet\n\n")
    with pytest.raises(AccessConfigError, match="holds no key"):
        create_app(settings.model_copy(update={"api_keys": SecretStr(f"@{path}")}))


def test_keys_never_appear_in_responses_or_logs(
    http: httpx.Client, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    attempts = [
        http.get("/collections", headers=bearer(UNKNOWN_KEY)),
        http.get("/collections", headers={"X-API-Key": UNKNOWN_KEY}),
        http.delete("/chunks/a", headers=bearer(READ_KEY)),
        http.post("/embed", json={"chunkId": "a", "text": "x"}, headers=bearer(WRITE_KEY)),
        http.post("/embed", json={"chunkId": 1}, headers=bearer(WRITE_KEY)),  # a 422
        http.post("/embed", content=b"{", headers=bearer(WRITE_KEY) | JSON),  # a 400
        http.post("/search", json={"query": "x"}, headers=bearer(READ_KEY)),
        http.get("/chunks/missing", headers=bearer(READ_KEY)),  # a 404
        http.get("/openapi.json", headers=bearer(READ_KEY)),
    ]
    assert [r.status_code for r in attempts] == [401, 401, 403, 200, 422, 400, 200, 404, 200]
    out, err = capfd.readouterr()
    seen = [r.text + str(r.headers) for r in attempts] + [caplog.text, out, err]
    for key in KEYS:
        assert not any(key in text for text in seen), key


def test_start_logs_key_counts_only(
    settings: Settings, caplog: pytest.LogCaptureFixture, local_embedder: LocalEmbedder
) -> None:
    caplog.set_level(logging.INFO, logger="embedsearch")
    create_app(keyed(settings), embedder=local_embedder)
    assert "API keys: 2 write, 1 read" in caplog.text
    assert "protected mode" not in caplog.text
    assert not any(key in caplog.text for key in KEYS)


# Protected mode: no keys, so only loopback clients are served.


@pytest.mark.parametrize(
    ("client", "local"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),  # IPv4 loopback through a dual-stack socket
        (None, True),  # a Unix socket: no peer address
        (("192.0.2.2", 1), False),
        (("10.0.0.1", 1), False),
        (("::ffff:10.0.0.1", 1), False),
        (("fd00::2", 1), False),
        (("fe80::1%eth0", 1), False),
        (("testclient", 50000), False),  # not an address: not trusted as one
        (("localhost", 1), False),
    ],
)
def test_loopback_classification(client: tuple[str, int] | None, local: bool) -> None:
    assert is_local_client(client) is local


def non_loopback_address() -> str | None:
    """This machine's address on a network interface, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
            address = str(sock.getsockname()[0])
    except OSError:
        address = ""
    if address and not address.startswith("127.") and address != "0.0.0.0":
        return address
    try:
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    found = [a for a in listed.stdout.split() if "." in a and not a.startswith("127.")]
    return found[0] if found else None


@contextmanager
def serve_on_all_interfaces(app: FastAPI) -> Iterator[int]:
    """Like `make serve`: listening on 0.0.0.0, so other machines (and addresses) can reach it."""
    port = free_port()
    config = uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "server failed to start"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def external_address() -> str:
    address = non_loopback_address()
    if address is None:
        pytest.skip(
            "this machine has no non-loopback address (test_loopback_classification covers it)"
        )
    return address


def test_protected_mode_refuses_other_addresses(
    settings: Settings,
    local_embedder: LocalEmbedder,
    external_address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="embedsearch")
    app = create_app(settings, embedder=local_embedder)
    warnings = [r for r in caplog.records if "protected mode" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    for variable in ("EMBEDSEARCH_API_KEYS", "EMBEDSEARCH_ALLOW_UNAUTHENTICATED"):
        assert variable in warnings[0].getMessage()
    with serve_on_all_interfaces(app) as port, httpx.Client(timeout=60) as http:
        remote = f"http://{external_address}:{port}"
        refused = http.post(f"{remote}/embed", json={"chunkId": "a", "text": "x"})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "protected_mode"
        assert "EMBEDSEARCH_API_KEYS" in error["message"]
        assert "EMBEDSEARCH_ALLOW_UNAUTHENTICATED=1" in error["message"]
        assert http.get(f"{remote}/collections").status_code == 403
        assert http.get(f"{remote}/healthz").status_code == 200
        # The machine itself is served, as `make serve` + curl localhost expects.
        local = f"http://127.0.0.1:{port}"
        served = http.post(f"{local}/embed", json={"chunkId": "a", "text": "x"})
        assert served.status_code == 200, served.text
        assert http.get(f"{local}/chunks/a").status_code == 200


def test_allow_unauthenticated_serves_other_addresses(
    settings: Settings, local_embedder: LocalEmbedder, external_address: str
) -> None:
    app = create_app(
        settings.model_copy(update={"allow_unauthenticated": True}), embedder=local_embedder
    )
    with serve_on_all_interfaces(app) as port, httpx.Client(timeout=60) as http:
        remote = f"http://{external_address}:{port}"
        served = http.post(f"{remote}/embed", json={"chunkId": "a", "text": "x"})
        assert served.status_code == 200, served.text
        assert http.get(f"{remote}/chunks/a").status_code == 200


def test_keys_serve_other_addresses(
    settings: Settings, local_embedder: LocalEmbedder, external_address: str
) -> None:
    app = create_app(keyed(settings), embedder=local_embedder)
    with serve_on_all_interfaces(app) as port, httpx.Client(timeout=60) as http:
        http.base_url = httpx.URL(f"http://{external_address}:{port}")
        assert_unauthorized(http.get("/collections"))
        assert http.get("/collections", headers=bearer(READ_KEY)).status_code == 200


# CORS.


def preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options(
        "/embed",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-api-key",
        },
    )


def test_cors_allows_listed_origins_only(settings: Settings, local_embedder: LocalEmbedder) -> None:
    config = keyed(settings, cors_origins=f"{ORIGIN}, https://other.example.com:8443")
    with (
        live_server(create_app(config, embedder=local_embedder)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        allowed = preflight(http, ORIGIN)  # no key: preflights cannot carry one
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "x-api-key", "content-type"):
            assert header in allowed_headers
        assert "POST" in allowed.headers["access-control-allow-methods"]
        refused = preflight(http, "https://evil.example.com")
        assert "access-control-allow-origin" not in refused.headers
        # A browser may read our errors, so its code can tell a missing key from the rest.
        denied = http.get("/collections", headers={"Origin": ORIGIN})
        assert_unauthorized(denied)
        assert denied.headers["access-control-allow-origin"] == ORIGIN
        served = http.get("/collections", headers={"Origin": ORIGIN} | bearer(READ_KEY))
        assert served.status_code == 200
        assert served.headers["access-control-allow-origin"] == ORIGIN
        other = http.get("/collections", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_without_the_setting(http: httpx.Client) -> None:
    answered = preflight(http, ORIGIN)
    assert_unauthorized(answered)  # no CORS: an OPTIONS is an ordinary request
    served = http.get("/collections", headers={"Origin": ORIGIN} | bearer(READ_KEY))
    assert served.status_code == 200
    for response in (answered, served):
        assert not any(name.startswith("access-control-") for name in response.headers)


# `embedsearch serve`, as a user runs it.


def serve_command(database_url: str, data_dir: Path, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSEARCH_")}
    clean |= {"EMBEDSEARCH_DATABASE_URL": database_url, "EMBEDSEARCH_DATA_DIR": str(data_dir)}
    args = ["serve", "--host", "0.0.0.0", "--port", str(free_port())]
    return subprocess.Popen(
        [sys.executable, "-m", "embedsearch.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean | env,
    )


def test_serve_on_all_interfaces_warns_of_protected_mode(database_url: str, tmp_path: Path) -> None:
    process = serve_command(database_url, tmp_path / "data")
    try:
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:  # the warning comes before the model loads
            lines.append(line)
            if "protected mode" in line:
                break
        assert any(line.startswith("WARNING") and "protected mode" in line for line in lines), lines
    finally:
        process.kill()
        process.wait(timeout=30)


def test_serve_with_a_missing_key_file_fails_in_one_line(database_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-keys"
    process = serve_command(database_url, tmp_path / "data", EMBEDSEARCH_API_KEYS=f"@{missing}")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert f"error: EMBEDSEARCH_API_KEYS: key file {missing} not found" in err
    assert "Traceback" not in err
