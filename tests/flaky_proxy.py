"""A real HTTP server in front of an OpenAI-compatible server: fails the first N requests with a
chosen status (429, 500...), then forwards. Lets tests see retries and provider failures.

Its errors echo the request's Authorization header, as careless providers do, so tests can
check that a provider's error text never reaches our clients or logs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FlakyProxy:
    def __init__(self, upstream: str, *, fail_first: int, status: int = 429) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_first = fail_first
        self.status = status
        self.requests = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy.requests <= proxy.fail_first
                if fail:
                    echoed = json.dumps(self.headers.get("authorization", ""))[1:-1]
                    payload = (
                        '{"error": {"message": "try again later; you sent Authorization: '
                        + echoed
                        + '", "type": "rate_limit"}}'
                    ).encode()
                    self.send_response(proxy.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = httpx.post(
                    proxy.upstream + self.path,
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=60,
                )
                self.send_response(upstream.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
