"""Requests still running when a graceful shutdown runs out of time get a clean 503.

On SIGTERM uvicorn stops accepting connections and waits `timeout_graceful_shutdown` for the
requests in flight; those still running then are cancelled, and uvicorn would answer them with
a bare 500. Cancellation rolls a request's own transaction back (a batch or a document is
stored whole or not at all), so the truthful answer is 503 "shutting down, retry": this
middleware gives it. (A single /embed already handed to a shared group-commit write may still
land; retrying it is safe, upserts are idempotent.)
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY = json.dumps(
    {
        "error": {
            "code": "shutting_down",
            "message": "the server shut down before this request finished; retry it",
        }
    }
).encode()


class ShutdownGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started:
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_BODY)).encode()),
                        (b"retry-after", b"1"),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _BODY})
