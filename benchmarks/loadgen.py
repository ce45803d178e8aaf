"""A lean HTTP/1.1 load generator for the concurrency benchmark.

The benchmark's client runs on the same two cores as the server, so its own CPU time is part
of every figure. httpx spends ~1 ms of Python per request, about what the server spends on a
short /embed, which would measure the client as much as the server. This client sends
pre-encoded requests on keep-alive connections opened before the clock starts and reads
only the status line, headers and body length: a few tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def encode_posts(
    url: str, path: str, bodies: list[dict[str, object]], headers: dict[str, str] | None = None
) -> list[bytes]:
    host = urlsplit(url).netloc
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    status, body = await _send(reader, writer, request)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:200].decode(errors='replace')}")


async def _send(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One request on a keep-alive connection: (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status), await reader.readexactly(length)


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


@dataclass
class Load:
    """What a time-bounded run saw: per-request latencies (s) of 200s, other statuses."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def qps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _load_for(url: str, requests: list[bytes], clients: int, duration: float) -> Load:
    """`clients` keep-alive connections, each sending the next request as soon as its last
    answered, for `duration` seconds (requests cycle)."""
    parts = urlsplit(url)
    streams = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(clients)]
    load = Load(duration)
    upcoming = itertools.cycle(requests)
    began = time.perf_counter()
    deadline = began + duration

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (start := time.perf_counter()) < deadline:
            status, _ = await _send(reader, writer, next(upcoming))
            load.statuses[status] += 1
            if status == 200:
                load.latencies.append(time.perf_counter() - start)

    try:
        await asyncio.gather(*(client(*stream) for stream in streams))
        load.seconds = time.perf_counter() - began
    finally:
        for _, writer in streams:
            writer.close()
    return load


def load_for(url: str, requests: list[bytes], clients: int, duration: float) -> Load:
    return asyncio.run(_load_for(url, requests, clients, duration))
