"""Shared pieces of the benchmarks: timing, an `embedsearch serve` subprocess, reporting."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def seconds(work: Callable[[], object]) -> float:
    """Wall time in seconds of one call."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def median_of(runs: int, work: Callable[[], object]) -> float:
    """Median wall time in seconds of `runs` calls (after one warm-up call)."""
    work()
    return statistics.median(seconds(work) for _ in range(runs))


def cli_env(data_dir: Path, **env: str) -> dict[str, str]:
    """This process's environment without its EMBEDSEARCH_ settings, on data_dir, plus env."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSEARCH_")}
    return environment | {"EMBEDSEARCH_DATA_DIR": str(data_dir)} | env


def run_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`embedsearch ARGS` in its own process, as users run it, with `env` added to its
    environment; raises if it fails."""
    return subprocess.run(
        [sys.executable, "-m", "embedsearch.cli", *args],
        env=cli_env(data_dir, **env),
        capture_output=True,
        text=True,
        check=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`embedsearch serve` in its own process, as users run it."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.log = open(data_dir.parent / f"server-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "embedsearch.cli", "serve", "--port", str(self.port)],
            env=cli_env(data_dir, **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready")
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def report(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"  {name:<{width}}  {value:>16}  {ratio}")
