"""The search page: static files at `/` (index.html) and `/ui/...`, public (auth.py), with a
Content-Security-Policy that lets the page talk to this server only."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# Nothing from elsewhere, no inline script or style: untrusted chunk text the page shows can
# never run, even if a bug put it into markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class _UiFiles(StaticFiles):
    """StaticFiles (safe paths, ETags) plus the page's security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *_SECURITY_HEADERS]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


async def index() -> FileResponse:
    headers = {name.decode(): value.decode() for name, value in _SECURITY_HEADERS}
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=headers)


def install(app: FastAPI) -> None:
    app.add_api_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/ui", _UiFiles(directory=UI_DIR), name="ui")
