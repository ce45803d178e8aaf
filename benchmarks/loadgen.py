"""A lean HTTP/1.1 load generator for the concurrency benchmark.

The benchmark's client runs on the same two cores as the server, so its own CPU time is part
of every figure. httpx spends ~1 ms of Python per request, about what the server spends on a
short /embed, which would measure the client as much as the server. This client sends
pre-encoded requests on keep-alive connections opened before the clock starts and reads
only the status line, headers and body length: a few tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit


def encode_posts(url: str, path: str, bodies: list[dict[str, object]]) -> list[bytes]:
    host = urlsplit(url).netloc
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {body[:200].decode(errors='replace')}")


async def _timed_run(url: str, requests: list[bytes], connections: int) -> float:
    """Seconds to complete every request over `connections` keep-alive connections, each
    sending its share one after another (connections=1: strictly one by one)."""
    parts = urlsplit(url)
    streams = [
        await asyncio.open_connection(parts.hostname, parts.port) for _ in range(connections)
    ]
    shares = [requests[i::connections] for i in range(connections)]

    async def drive(
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], share: list[bytes]
    ) -> None:
        for request in share:
            await _exchange(*stream, request)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(drive(s, share) for s, share in zip(streams, shares, strict=True)))
        return time.perf_counter() - start
    finally:
        for _, writer in streams:
            writer.close()


def timed_run(url: str, requests: list[bytes], connections: int) -> float:
    return asyncio.run(_timed_run(url, requests, connections))
