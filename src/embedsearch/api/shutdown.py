"""Requests still running when a graceful shutdown runs out of time get a clean 503.

On SIGTERM uvicorn stops accepting connections and waits `timeout_graceful_shutdown` for the
requests in flight; those still running then are cancelled, and uvicorn would answer them with
a bare 500. It does not wait for the cancelled ones either: it goes on to the lifespan's end,
which closes the pool under them, while a request cancelled inside a query is still waiting for
PostgreSQL to confirm the cancel. So the lifespan first waits (bounded) for `InFlight`. Cancellation rolls a request's own transaction back (a batch or a document is
stored whole or not at all), so the truthful answer is 503 "shutting down, retry": this
middleware gives it. (A single /embed already handed to a shared group-commit write may still
land; retrying it is safe, upserts are idempotent.)
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedsearch.api.errors import error_response

_MESSAGE = "the server shut down before this request finished; retry it"


class InFlight:
    """The requests running now, for the lifespan to wait for before it closes what they use."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def add(self, task: asyncio.Task[object]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)


class ShutdownGuard:
    def __init__(self, app: ASGIApp, inflight: InFlight) -> None:
        self.app = app
        self.inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
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
            response = error_response(503, "shutting_down", _MESSAGE)
            response.headers.update({"Retry-After": "1", "Connection": "close"})
            await response(scope, receive, send)
