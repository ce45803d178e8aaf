"""Search throughput beyond one PostgreSQL: the primary alone against primary + streaming
replica, then one node against a collection sharded over two Citus workers, in the same run.

    python -m benchmarks.scale [--rounds 3] [--seconds 10] [--clients 16] [--citus-rows N]

Each leg is `embedsearch serve` in its own process, as users run it, on one database of one
cluster started from the pgserver wheel's binaries (tests/replication.py): "primary" without
EMBEDSEARCH_READ_DATABASE_URLS, "primary + replica" with it, and the same server again with
every search sending X-Embedsearch-Min-Lsn (read-your-writes: one more round trip a search).
Both servers are loaded with load.py's 2,000 SciFact chunks and searched with its queries,
by its client (loadgen.py), rounds alternating the legs; figures are medians over rounds.
CPU per search is counted for each PostgreSQL server, which shows where the searches ran.

On this machine every node (both PostgreSQL servers, the API server, the client) shares the
same 2 CPU cores: a replica adds no CPU here, so the ratio shows what routing costs, not what
a replica on its own machine would add. The Citus legs (benchmarks/citus_leg.py) search
through the store from 8 concurrent tasks, dense and BM25, a plain collection on the
coordinator against the same chunks in 2 shards; the coordinator and both workers share the
same cores too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict

from benchmarks import beir, load, loadgen
from benchmarks.citus_leg import citus_leg, print_results
from benchmarks.harness import Server
from tests.replication import StreamingReplica
from tests.servers import TcpPostgres, create_database

ENDPOINT = "/search/pgvector"


@dataclass
class Leg:
    """One configuration under test: a server, the request headers, the PostgreSQL servers
    whose CPU is counted."""

    name: str
    server: Server
    headers: dict[str, str] = field(default_factory=dict)
    loads: list[loadgen.Load] = field(default_factory=list)
    cpu_ms: list[dict[str, float]] = field(default_factory=list)  # per round: node -> ms/req


@dataclass
class Cluster:
    primary: TcpPostgres
    replica: StreamingReplica
    database: str  # the primary's conninfo of the benchmark's database

    @property
    def replica_url(self) -> str:
        return self.replica.url(self.name)

    @property
    def name(self) -> str:
        return str(conninfo_to_dict(self.database)["dbname"])

    def nodes(self) -> dict[str, Path]:
        return {"primary": self.primary.pgdata, "replica": self.replica.pgdata}


def replica_legs(cluster: Cluster, data_dir: Path, data: beir.Dataset) -> list[Leg]:
    """The primary alone, and primary + replica (without and with read-your-writes)."""
    alone = Server(data_dir, EMBEDSEARCH_DATABASE_URL=cluster.database)
    load.fill(alone, data)
    lsn = caught_up(cluster)
    replicated = Server(
        data_dir,
        EMBEDSEARCH_DATABASE_URL=cluster.database,
        EMBEDSEARCH_READ_DATABASE_URLS=cluster.replica_url,
    )
    return [
        Leg("primary", alone),
        Leg("primary + replica", replicated),
        Leg("primary + replica, Min-Lsn", replicated, {"X-Embedsearch-Min-Lsn": lsn}),
    ]


def caught_up(cluster: Cluster, timeout_s: float = 60) -> str:
    """Wait until the replica has replayed all the primary wrote; the position, as text."""
    with psycopg.connect(cluster.database) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    lsn = str(row[0])
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(cluster.replica_url, autocommit=True) as conn:
        replayed = "SELECT pg_last_wal_replay_lsn() >= CAST(%s AS pg_lsn)"
        while not (found := conn.execute(replayed, (lsn,)).fetchone()) or not found[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not catch up")
            time.sleep(0.1)
    return lsn


def node_processes(pgdata: Path) -> list[psutil.Process]:
    return load.postgres_processes(pgdata)


def run(
    args: argparse.Namespace, legs: list[Leg], nodes: dict[str, Path], data: beir.Dataset
) -> None:
    bodies = next(e for e in load.endpoints(data) if e.path == ENDPOINT).bodies
    for _ in range(args.rounds):
        for leg in legs:
            requests = loadgen.encode_posts(leg.server.url, ENDPOINT, bodies, leg.headers)
            loadgen.load_for(leg.server.url, requests[:32], args.clients, 1.0)  # warm-up
            processes = {node: node_processes(pgdata) for node, pgdata in nodes.items()}
            before = {node: load.cpu_seconds(p) for node, p in processes.items()}
            result = loadgen.load_for(leg.server.url, requests, args.clients, args.seconds)
            done = max(1, len(result.latencies))
            leg.loads.append(result)
            leg.cpu_ms.append(
                {
                    node: (load.cpu_seconds(p) - before[node]) / done * 1000
                    for node, p in processes.items()
                }
            )


def report(legs: list[Leg], clients: int, rounds: int) -> None:
    print(f"{ENDPOINT}, {clients} clients, medians over {rounds} rounds")
    print(
        f"  every node (PostgreSQL primary and replica, the API server, the client) shares the"
        f" same {psutil.cpu_count()} CPU cores:\n  a replica adds no CPU here, so these ratios"
        " measure what routing costs, not what a replica on a machine of its own would add"
    )
    nodes = sorted({node for leg in legs for cpu in leg.cpu_ms for node in cpu})
    cpu_heads = "".join(f" {'CPU ms/req ' + node:>20}" for node in nodes)
    print(f"  {'leg':<28} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8}{cpu_heads}  errors  ratio")
    baseline: float | None = None
    for leg in legs:
        qps = statistics.median(result.qps for result in leg.loads)
        p50 = statistics.median(result.percentile(0.5) for result in leg.loads) * 1000
        p99 = statistics.median(result.percentile(0.99) for result in leg.loads) * 1000
        errors = sum(result.errors for result in leg.loads)
        cpu = "".join(
            f" {statistics.median(c.get(node, 0.0) for c in leg.cpu_ms):>20.2f}" for node in nodes
        )
        baseline = baseline or qps
        print(
            f"  {leg.name:<28} {qps:>8.1f} {p50:>8.1f} {p99:>8.1f}{cpu}  {errors:>6}"
            f"  {qps / baseline:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--citus-rows", type=int, default=20_000, help="0: no Citus legs")
    args = parser.parse_args()
    data = beir.load()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        primary = TcpPostgres(root / "cluster")
        replica: StreamingReplica | None = None
        legs: list[Leg] = []
        try:
            replica = StreamingReplica(primary)
            cluster = Cluster(primary, replica, create_database(primary.url()))
            cluster.replica.wait_for(cluster.name)
            data_dir = root / "data"
            data_dir.mkdir()
            legs = replica_legs(cluster, data_dir, data)
            run(args, legs, cluster.nodes(), data)
            report(legs, args.clients, args.rounds)
        finally:
            for server in {id(leg.server): leg.server for leg in legs}.values():
                server.close()
            if replica is not None:
                replica.destroy()
            primary.destroy()
        if args.citus_rows:
            print("\nCitus: one node against a collection sharded over 2 workers, same run")
            results = citus_leg(root / "citus", rows=args.citus_rows, clients=8)
            print_results(results, args.citus_rows, 8)


if __name__ == "__main__":
    main()
