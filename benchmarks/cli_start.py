"""CLI start-up: commands that load no model, against the interpreter floor and a command that
does, all on the same warm data dir and measured in the same run.

    python -m benchmarks.cli_start [--rounds 7]

Each command is a fresh `embedsearch` process, as users run it: `--help` (the floor: Python,
the CLI's imports), `collections list`, `collections create` / `drop` of a throwaway
collection, `index check default`, and `search "query"` (it embeds the query, so it loads the
model). Each runs once first to warm the data dir (the embedded PostgreSQL's, under
EMBEDSEARCH_DATA_DIR in a temporary directory) and the model's cached export; then the
commands alternate, round by round, and the medians are printed. Every command but --help
starts and stops the embedded server, as it does for users. Goal: `collections list` under
1.5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from functools import partial
from pathlib import Path

from benchmarks.harness import report, run_cli, seconds

THROWAWAY = "bench_cli_start"
GOAL_S = 1.5
FLOOR = "embedsearch --help"
LIST = "embedsearch collections list"
SEARCH = 'embedsearch search "query"'
# In the order each round runs them (create before drop).
COMMANDS = {
    FLOOR: ("--help",),
    LIST: ("collections", "list"),
    f"embedsearch collections create {THROWAWAY}": ("collections", "create", THROWAWAY),
    "embedsearch index check default": ("index", "check", "default"),
    f"embedsearch collections drop {THROWAWAY}": ("collections", "drop", THROWAWAY, "--yes"),
    SEARCH: ("search", "query"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="timed runs per command (median)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedsearch-cli-start-"))
    data_dir = work / "data"
    try:
        warm = sum(seconds(partial(run_cli, data_dir, *argv)) for argv in COMMANDS.values())
        print(f"warm-up: each command once ({warm:.1f} s, data dir and model export created)")
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.rounds):
            for name, argv in COMMANDS.items():
                times[name].append(seconds(partial(run_cli, data_dir, *argv)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor, search = medians[FLOOR], medians[SEARCH]
    rows = [(FLOOR, f"{floor:.2f} s", "baseline (interpreter floor)")]
    for name, median in medians.items():
        if name in (FLOOR, SEARCH):
            continue
        rows.append(
            (
                name,
                f"{median:.2f} s",
                f"{median / floor:.2f}x --help, {median / search:.2f}x search",
            )
        )
    rows.append((SEARCH, f"{search:.2f} s", f"{search / floor:.2f}x --help (loads the model)"))
    print(
        f"\nWall time per command, fresh process, warm data dir (median of {args.rounds} rounds):"
    )
    report(rows)
    listing = medians[LIST]
    verdict = "met" if listing < GOAL_S else "NOT met"
    print(f"\ncollections list {listing:.2f} s: goal < {GOAL_S} s {verdict}")


if __name__ == "__main__":
    main()
