"""Model migration: what it costs the writes and searches it runs under, and how long it takes.

    python -m benchmarks.migration [--rows 2000] [--seconds 10]

Starts two `embedsearch serve` processes: the service (its default backend, embedded
database) and a second one whose /v1/embeddings is the OpenAI-compatible provider of the new
model (256 dimensions). Fills a collection with `--rows` SciFact chunks (synthetic text if the
data is not there), then runs one writer (single /embed calls) and one searcher (hybrid
/search) by the collection's name: for `--seconds` with no migration (the baseline), then
while the migration backfills, then across the switch. Prints write and search p50 during the
backfill against the baseline of the same run, the backfill's rate, how long writes waited at
the switch, and checks that the new collection holds every acknowledged write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Server, report

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
NAME = "bench"


def texts(count: int) -> list[str]:
    if SCIFACT.is_file():
        with SCIFACT.open() as lines:
            found = [
                " ".join(json.loads(line)["text"].split()[:120])
                for _, line in zip(range(count), lines, strict=False)
            ]
        if len(found) == count:
            return found
    return [
        f"note {i} on topic {i % 37}, part {i % 11}, of a synthetic corpus" for i in range(count)
    ]


@dataclass
class Load:
    url: str
    writes: list[float] = field(default_factory=list)  # seconds per acknowledged write
    searches: list[float] = field(default_factory=list)
    written: set[str] = field(default_factory=set)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    counter: int = 0

    def write(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                self.counter += 1
                chunk_id = f"w{self.counter}"
                body = {
                    "chunkId": chunk_id,
                    "text": f"written during the run {chunk_id}",
                    "collection": NAME,
                }
                start = time.perf_counter()
                response = http.post("/embed", json=body)
                if response.status_code == 200:
                    self.writes.append(time.perf_counter() - start)
                    self.written.add(chunk_id)
                else:
                    self.failures += 1

    def search(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                start = time.perf_counter()
                body = {"query": "protein folding in cells", "mode": "hybrid", "collection": NAME}
                response = http.post("/search", json=body)
                if response.status_code == 200:
                    self.searches.append(time.perf_counter() - start)
                else:
                    self.failures += 1


def under_load(url: str, until: Callable[[], None]) -> Load:
    load = Load(url)
    threads = [threading.Thread(target=load.write), threading.Thread(target=load.search)]
    for thread in threads:
        thread.start()
    try:
        until()
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    return load


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in ("provider", "service"):
            (root / part).mkdir()
        provider = Server(root / "provider" / "data")
        service = Server(
            root / "service" / "data", EMBEDSEARCH_OPENAI_BASE_URL=provider.url + "/v1"
        )
        try:
            run(service.url, args.rows, args.seconds)
        finally:
            service.close()
            provider.close()


def run(url: str, rows: int, seconds: float) -> None:
    http = httpx.Client(base_url=url, timeout=300)
    assert http.post("/collections", json={"name": NAME}).status_code == 201
    corpus = texts(rows)
    for start in range(0, rows, 100):
        items = [
            {"chunkId": f"c{i}", "text": corpus[i]} for i in range(start, min(rows, start + 100))
        ]
        http.post("/embed/batch", json={"items": items, "collection": NAME}).raise_for_status()
    baseline = under_load(url, lambda: time.sleep(seconds))

    def status() -> dict[str, Any]:
        return dict(http.get(f"/collections/{NAME}/migration").json())

    body = {"embedder": "openai:all-MiniLM-L6-v2", "dimensions": 256}
    started = time.monotonic()
    http.post(f"/collections/{NAME}/migrate", json=body).raise_for_status()

    def until_ready() -> None:
        while status()["state"] != "ready":
            time.sleep(0.5)

    during = under_load(url, until_ready)
    backfill_s = time.monotonic() - started
    ready = status()

    def switch() -> None:
        time.sleep(1)
        http.post(f"/collections/{NAME}/migration/switch").raise_for_status()
        while status()["state"] != "switched":
            time.sleep(0.1)
        time.sleep(1)

    switching = under_load(url, switch)
    time.sleep(2)  # late writes forwarded
    stored = http.get(f"/collections/{NAME}").json()
    written = baseline.written | during.written | switching.written
    missing = [
        c
        for c in sorted(written)
        if http.get(f"/chunks/{c}", params={"collection": NAME}).status_code != 200
    ]
    failures = baseline.failures + during.failures + switching.failures
    print(
        f"migration of {rows} chunks to a 256-dim OpenAI-compatible model, one writer + one searcher"
    )
    report(
        [
            ("write p50, no migration", f"{p50_ms(baseline.writes):.1f} ms", "1.00x"),
            (
                "write p50, during backfill",
                f"{p50_ms(during.writes):.1f} ms",
                f"{p50_ms(during.writes) / p50_ms(baseline.writes):.2f}x",
            ),
            ("hybrid search p50, no migration", f"{p50_ms(baseline.searches):.1f} ms", "1.00x"),
            (
                "hybrid search p50, during backfill",
                f"{p50_ms(during.searches):.1f} ms",
                f"{p50_ms(during.searches) / p50_ms(baseline.searches):.2f}x",
            ),
            ("backfill to ready", f"{backfill_s:.1f} s", f"{rows / backfill_s:.1f} chunks/s"),
            ("slowest write across the switch", f"{max(switching.writes) * 1000:.0f} ms", ""),
            ("writes acknowledged / missing", f"{len(written)} / {len(missing)}", ""),
            ("failed requests", str(failures), ""),
        ]
    )
    print(
        f"  comparison: {ready['comparison']}; now {stored['name']} ({stored['dimensions']} dims)"
    )


if __name__ == "__main__":
    main()
