"""Log lines: text or JSON, the request id in each, secrets masked, `embedsearch serve`'s too."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from embedsearch.config import Settings
from embedsearch.logs import REQUEST_ID, configure_logging
from tests.servers import free_port
from tests.test_cli import CLI, environment

log = logging.getLogger("tests.logs")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def configured(**settings: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(**settings), stream=stream)
    return stream


def ours(stream: io.StringIO) -> list[str]:
    """The lines of this module's logger (other threads of the process may log meanwhile)."""
    return [line for line in stream.getvalue().splitlines() if "tests.logs" in line]


def log_a_request(request_id: str) -> None:
    token = REQUEST_ID.set(request_id)
    try:
        log.info("hello %s", "world")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    finally:
        REQUEST_ID.reset(token)
    log.warning("between requests")


def test_json_format_writes_one_parseable_object_a_line() -> None:
    stream = configured(log_format="json")
    log_a_request("req-7")
    hello, failed, between = (json.loads(line) for line in ours(stream))
    assert set(hello) == {"time", "level", "logger", "message", "request_id"}
    assert hello["level"] == "INFO" and hello["logger"] == "tests.logs"
    assert hello["message"] == "hello world" and hello["request_id"] == "req-7"
    age = time.time() - datetime.fromisoformat(hello["time"].replace("Z", "+00:00")).timestamp()
    assert 0 <= age < 60
    assert failed["level"] == "ERROR" and failed["request_id"] == "req-7"
    assert "Traceback" in failed["exc_info"] and "ValueError: boom" in failed["exc_info"]
    assert "request_id" not in between and between["level"] == "WARNING"


def test_text_format_tags_lines_with_the_request_id() -> None:
    stream = configured(log_format="text")
    log_a_request("req-8")
    lines = ours(stream)
    assert lines[0] == "INFO tests.logs [req-8]: hello world"
    assert lines[1] == "ERROR tests.logs [req-8]: it failed"
    assert lines[-1] == "WARNING tests.logs: between requests"
    assert "ValueError: boom" in stream.getvalue()


def test_configuring_again_replaces_the_handler() -> None:
    configured()
    stream = configured()
    log.info("once")
    assert ours(stream) == ["INFO tests.logs: once"]
    assert sum(1 for h in logging.getLogger().handlers if "embedsearch" in type(h).__module__) == 1


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_keys = tmp_path / "read-keys"
    read_keys.write_text("# read keys\nread-key-CCCC\n\nread-key-DDDD\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-configured0123456789")
    stream = configured(
        log_format="json",
        api_keys="write-key-AAAA, write-key-BBBB",
        read_api_keys=f"@{read_keys}",
        database_url="postgresql://svc:Pa55%2Fw0rd@db.example:5432/app",
    )
    log.info("keys write-key-AAAA and read-key-DDDD")
    log.info("the key is %s", "write-key-BBBB")
    log.info("got Authorization: Bearer abc and X-API-Key: read-key-CCCC")
    log.info("headers {'authorization': 'Bearer xyz123', 'x-api-key': 'k3y-value'}")
    log.info("openai keys sk-proj-abcdefgh12345678 and sk-configured0123456789")
    log.info("connecting to postgresql://user:hunter2@host/db and postgres://u:p%40ss@h/x")
    log.info("conninfo host=h password=hunter3 dbname=y; the configured one: Pa55/w0rd")
    log.info("GET /search?api_key=abcdefgh&limit=5")
    try:
        raise RuntimeError("provider said: invalid key write-key-AAAA")
    except RuntimeError:
        log.exception("provider failed")
    # Not secrets: left alone.
    log.info("basic settings; API keys: 2 write, 1 read; docs at http://127.0.0.1:8000/docs")

    output = stream.getvalue()
    for secret in (
        "write-key-AAAA",
        "write-key-BBBB",
        "read-key-CCCC",
        "read-key-DDDD",
        "abc ",
        "xyz123",
        "k3y-value",
        "sk-proj-abcdefgh12345678",
        "sk-configured0123456789",
        "hunter2",
        "hunter3",
        "p%40ss",
        "Pa55",
        "abcdefgh&",
    ):
        assert secret not in output, secret
    messages = [json.loads(line)["message"] for line in ours(stream)]
    assert messages[2] == "got Authorization: Bearer *** and X-API-Key: ***"
    assert messages[4] == "openai keys sk-*** and ***"
    assert messages[5] == "connecting to postgresql://user:***@host/db and postgres://u:***@h/x"
    assert messages[6] == "conninfo host=h password=*** dbname=y; the configured one: ***"
    assert messages[7] == "GET /search?api_key=***&limit=5"
    failed = json.loads(ours(stream)[8])
    assert "RuntimeError: provider said: invalid key ***" in failed["exc_info"]
    assert messages[-1] == (
        "basic settings; API keys: 2 write, 1 read; docs at http://127.0.0.1:8000/docs"
    )


def test_serve_logs_json_lines_with_request_ids(database_url: str, tmp_path: Path) -> None:
    """`embedsearch serve` as a user runs it: uvicorn's lines (access log too) are ours."""
    port = free_port()
    env = environment(
        database_url,
        tmp_path / "data",
        EMBEDSEARCH_LOG_FORMAT="json",
        EMBEDSEARCH_BACKEND="torch",  # no ONNX export to build for this one run
        OPENAI_API_KEY="sk-never-logged-0123456789",
    )
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        with httpx.Client(base_url=url) as http:
            assert http.get("/healthz", headers={"X-Request-Id": "serve-1"}).status_code == 200
            assert http.get("/nope", headers={"X-Request-Id": "serve-2"}).status_code == 404
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    access = {
        line.get("request_id"): line["message"]
        for line in lines
        if line["logger"] == "uvicorn.access"
    }
    assert '"GET /healthz HTTP/1.1" 200' in access["serve-1"]
    assert '"GET /nope HTTP/1.1" 404' in access["serve-2"]
    assert any("embedsearch ready" in line["message"] for line in lines)
    assert "sk-never-logged" not in stderr


def wait_until_up(url: str, process: subprocess.Popen[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("serve did not start")
