"""Start-up with the light runtime against the full one (sentence-transformers, torch), same
backend, same warm data dir and cached export, measured in the same run.

    python -m benchmarks.startup [--rounds 5]

Per round, alternating: `embedsearch search "query"` (a fresh process that embeds one query);
`embedsearch serve` until /readyz answers 200; and that server's resident memory (its Python
process, PostgreSQL not counted) after one search, idle. The full path is the same backend with
EMBEDSEARCH_LIGHT_RUNTIME=0. Goals (issue 14): search <= 1.5 s, ready <= 3 s, RSS <= 600 MB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx

from benchmarks.harness import Server, report, run_cli, seconds

MODES = {"light": {}, "full": {"EMBEDSEARCH_LIGHT_RUNTIME": "0"}}
GOALS = {"search": 1.5, "ready": 3.0, "rss": 600.0}


def _search(data_dir: Path, env: dict[str, str]) -> None:
    run_cli(data_dir, "search", "query", **env)


def _serve(data_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds until /readyz is 200, and the idle server's RSS in MB after one search."""
    start = time.perf_counter()
    server = Server(data_dir, **env)
    ready = time.perf_counter() - start
    try:
        httpx.post(server.url + "/search/pgvector", json={"query": "query"}, timeout=60)
        time.sleep(1.0)  # idle
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS" in line)
    finally:
        server.close()
    return ready, rss_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per mode (median)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedsearch-startup-"))
    data_dir = work / "data"
    results: dict[str, dict[str, list[float]]] = {
        mode: {"search": [], "ready": [], "rss": []} for mode in MODES
    }
    try:
        warm = seconds(partial(_search, data_dir, {}))
        print(f"warm-up: {warm:.1f} s (data dir, model export, verification)")
        for _ in range(args.rounds):
            for mode, env in MODES.items():
                results[mode]["search"].append(seconds(partial(_search, data_dir, env)))
                ready, rss = _serve(data_dir, env)
                results[mode]["ready"].append(ready)
                results[mode]["rss"].append(rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        mode: {k: statistics.median(v) for k, v in values.items()}
        for mode, values in results.items()
    }
    light, full = medians["light"], medians["full"]
    units = {"search": "s", "ready": "s", "rss": "MB"}
    print(f"\nMedians of {args.rounds} rounds, light runtime vs full (same backend, same run):")
    rows = []
    for key, unit in units.items():
        verdict = "met" if light[key] <= GOALS[key] else "NOT met"
        rows.append(
            (
                f"{key} light / full",
                f"{light[key]:.2f} / {full[key]:.2f} {unit}",
                f"{full[key] / light[key]:.2f}x less; goal <= {GOALS[key]} {unit} {verdict}",
            )
        )
    report(rows)


if __name__ == "__main__":
    main()
