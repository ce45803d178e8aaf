"""Reads on replicas, and read-your-writes over HTTP, as plain ASGI (see api/metrics.py).

Read requests (GET, and the POSTs api/auth.py lists as reads) run inside `replica_reads()`:
their reads may go to a healthy replica. Every other request is a write and reads from the
primary too (what it reads decides what it writes). A write's response carries
`X-Embedsearch-Lsn`, the WAL position of the newest commit this process made, taken after
the handler's own commits, so at or past them; a read that sends it back in
`X-Embedsearch-Min-Lsn` is served by a replica that has replayed it, or by the primary.

Without replicas no header is added; a Min-Lsn header is still checked (a malformed one is
the client's bug wherever it is sent), and the primary answers every read anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedsearch.api.auth import Access, access_needed
from embedsearch.api.errors import error_response
from embedsearch.core.deps import Deps
from embedsearch.store.lsn import parse_lsn
from embedsearch.store.replicas import replica_reads

LSN_HEADER = "X-Embedsearch-Lsn"
MIN_LSN_HEADER = "X-Embedsearch-Min-Lsn"
_MIN_LSN = MIN_LSN_HEADER.lower().encode("ascii")
_LSN = LSN_HEADER.lower().encode("ascii")


class ReadYourWrites:
    def __init__(self, app: ASGIApp, deps: Callable[[], Deps | None]) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((value for name, value in scope["headers"] if name == _MIN_LSN), None)
        min_lsn = None
        if raw is not None:
            try:
                min_lsn = parse_lsn(raw.decode("latin-1"))
            except ValueError:
                response = error_response(
                    400,
                    "invalid_header",
                    f"{MIN_LSN_HEADER} must be a WAL position like 16/B374D848: the"
                    f" {LSN_HEADER} header of a write's response",
                    field=MIN_LSN_HEADER,
                )
                await response(scope, receive, send)
                return
        access = access_needed(scope)
        if access is Access.READ:
            with replica_reads(min_lsn):
                await self.app(scope, receive, send)
            return
        deps = self.deps()
        if access is not Access.WRITE or deps is None or not deps.store.database.replicated:
            await self.app(scope, receive, send)
            return
        database = deps.store.database

        async def send_with_lsn(message: Message) -> None:
            if message["type"] == "http.response.start" and (lsn := database.last_commit_lsn):
                headers = [*message.get("headers", ()), (_LSN, lsn.encode("ascii"))]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_lsn)
