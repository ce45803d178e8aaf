"""Throughput under load (`make bench-load`): 16 concurrent clients over loopback on
/search/pgvector, /search hybrid and /embed, this tree against the previous release.

Both servers run as users run them (`embedsearch serve`, the previous release from a git
worktree of BASELINE_REF on PYTHONPATH), each on its own database of one embedded PostgreSQL,
loaded with the same 2,000 chunks. Rounds alternate between the two so that the shared,
noisy machine weighs on both alike; figures are medians over rounds. The client (see
loadgen.py) costs a few tens of microseconds a request; it runs on the same two cores.

    python -m benchmarks.load [--rounds 3] [--seconds 10] [--clients 16] [--baseline REF]
                              [--profile DIR]   # py-spy of this tree's server, per endpoint
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg import sql

from benchmarks import beir, loadgen
from benchmarks.harness import Server
from embedsearch.store.embedded import EmbeddedPostgres

# The last commit before issue 15 (service hardening and throughput): "today" in its bars.
BASELINE_REF = "b183ed9"
REPOSITORY = Path(__file__).resolve().parents[1]
CHUNKS = 2000
CHUNK_CHARS = 400  # SciFact abstracts cut to ~80 tokens: a typical RAG chunk's size


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    bodies: list[dict[str, object]]


def endpoints(data: beir.Dataset) -> list[Endpoint]:
    queries = data.query_texts[:200]
    embeds = [
        {"chunkId": f"load-{i % 500}", "text": text}  # overlapping ids: upserts, as in use
        for i, text in enumerate(data.doc_texts[CHUNKS : CHUNKS + 1000])
    ]
    return [
        Endpoint("/search/pgvector", "/search/pgvector", [{"query": q} for q in queries]),
        Endpoint("/search hybrid", "/search", [{"query": q, "mode": "hybrid"} for q in queries]),
        Endpoint("/embed", "/embed", [dict(b, text=str(b["text"])[:CHUNK_CHARS]) for b in embeds]),
    ]


def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def baseline_tree(ref: str, workdir: Path) -> Path:
    """A git worktree of the previous release (removed again by main())."""
    tree = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
    )
    return tree


def start(name: str, database_url: str, workdir: Path, source: Path) -> Server:
    data_dir = workdir / name / "data"
    data_dir.mkdir(parents=True)
    return Server(
        data_dir,
        EMBEDSEARCH_DATABASE_URL=database_url,
        PYTHONPATH=str(source / "src"),
        EMBEDSEARCH_ALLOW_UNAUTHENTICATED="1",  # loopback anyway; the old release ignores it
    )


def fill(server: Server, data: beir.Dataset) -> None:
    texts = [text[:CHUNK_CHARS] for text in data.doc_texts[:CHUNKS]]
    with httpx.Client(base_url=server.url, timeout=600) as http:
        for start_at in range(0, CHUNKS, 250):
            items = [
                {"chunkId": data.doc_ids[i], "text": texts[i]}
                for i in range(start_at, min(CHUNKS, start_at + 250))
            ]
            response = http.post("/embed/batch", json={"items": items})
            response.raise_for_status()


def profile(server: Server, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(server.process.pid),
            "--duration",
            str(int(seconds)),
            "--format",
            "speedscope",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--baseline", default=BASELINE_REF)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument(
        "--only", action="append", default=None, help="endpoint names to run (repeatable)"
    )
    args = parser.parse_args()
    data = beir.load()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        args.pgdata = (workdir / "pgdata").resolve()
        postgres = EmbeddedPostgres(args.pgdata)
        baseline: Path | None = None
        servers: dict[str, Server] = {}
        try:
            try:
                baseline = baseline_tree(args.baseline, workdir)
                trees = {f"previous ({args.baseline})": baseline, "this tree": REPOSITORY}
            except subprocess.CalledProcessError as exc:
                print(f"previous release not started ({exc.stderr.decode().strip()})")
                trees = {"this tree": REPOSITORY}
            for name, source in trees.items():
                slug = name.split()[0]
                servers[name] = start(slug, create_database(postgres.url, slug), workdir, source)
                fill(servers[name], data)
            targets = [e for e in endpoints(data) if not args.only or e.name in args.only]
            run(args, servers, targets)
        finally:
            for server in servers.values():
                server.close()
            postgres.stop()
            if baseline is not None:
                subprocess.run(
                    ["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(baseline)],
                    check=False,
                )


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The benchmark's PostgreSQL: its postmaster and every child (backends come and go with
    the pools; other servers on the machine are not counted)."""
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or []):
            return [process, *process.children(recursive=True)]
    return []


def run(args: argparse.Namespace, servers: dict[str, Server], targets: list[Endpoint]) -> None:
    """Each load also records CPU seconds per request: the server's process (event loop and
    model thread) and PostgreSQL's, which says where the time went."""
    results: dict[tuple[str, str], list[loadgen.Load]] = {}
    cpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(args.rounds):
        for target in targets:
            for name, server in servers.items():
                requests = loadgen.encode_posts(server.url, target.path, target.bodies)
                loadgen.load_for(server.url, requests[:32], args.clients, 1.0)  # warm-up
                spy = None
                if args.profile and name == "this tree" and round_number == 0:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    slug = target.name.strip("/").replace("/", "-").replace(" ", "-")
                    spy = profile(server, args.seconds, args.profile / f"{slug}.json")
                serving = [psutil.Process(server.process.pid)]
                postgres = postgres_processes(args.pgdata)
                before = cpu_seconds(serving), cpu_seconds(postgres)
                load = loadgen.load_for(server.url, requests, args.clients, args.seconds)
                after = cpu_seconds(serving), cpu_seconds(postgres)
                if spy is not None:
                    spy.wait()
                done = max(1, len(load.latencies))
                results.setdefault((target.name, name), []).append(load)
                cpu.setdefault((target.name, name), []).append(
                    ((after[0] - before[0]) / done, (after[1] - before[1]) / done)
                )
    report(results, cpu, servers, targets, args.clients)


def report(
    results: dict[tuple[str, str], list[loadgen.Load]],
    cpu: dict[tuple[str, str], list[tuple[float, float]]],
    servers: dict[str, Server],
    targets: list[Endpoint],
    clients: int,
) -> None:
    print(f"{clients} clients, medians over {len(next(iter(results.values())))} rounds")
    print(
        f"  {'endpoint':<18} {'server':<20} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req: server':>19} {'postgres':>9}  errors"
    )
    for target in targets:
        qps_of: dict[str, float] = {}
        for name in servers:
            loads = results[(target.name, name)]
            qps = statistics.median(load.qps for load in loads)
            p50 = statistics.median(load.percentile(0.5) for load in loads) * 1000
            p99 = statistics.median(load.percentile(0.99) for load in loads) * 1000
            errors = sum(load.errors for load in loads)
            statuses: collections.Counter[int] = collections.Counter()
            for load in loads:
                statuses.update(load.statuses)
            qps_of[name] = qps
            served = statistics.median(c[0] for c in cpu[(target.name, name)]) * 1000
            database = statistics.median(c[1] for c in cpu[(target.name, name)]) * 1000
            detail = "" if not errors else f" {dict(statuses)}"
            print(
                f"  {target.name:<18} {name:<20} {qps:>8.1f} {p50:>8.1f} {p99:>8.1f} "
                f"{served:>19.2f} {database:>9.2f}  {errors}{detail}"
            )
        if len(qps_of) == 2:
            previous, current = qps_of.values()
            print(f"  {target.name:<18} {'ratio (QPS)':<20} {current / previous:>8.2f}x")


if __name__ == "__main__":
    main()
