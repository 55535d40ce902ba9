"""Lineage queries on a big graph: 10,000 runs and 100,000 versions.

Builds the graph straight into a fresh store's database (the real schema,
migrations included), then times upstream/downstream queries through
``refstore.services.lineage`` — the recursive CTE — against a peer in the same
process: a breadth-first walk that issues one indexed query per node, which is
what a client without recursive SQL would do.

Graph: 100 seed datasets; run i uses 3 versions (2 from the 500 most recent,
1 from anywhere) and logs 10 new versions of 1,000 artifacts. Recency makes
long chains, so "downstream of an early version" reaches most of the graph
(the worst case), while "upstream of a late version" is a typical question.

    python benchmarks/lineage.py [--runs 10000] [--per-run 10] [--repeat 5] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import refstore
from refstore.core.db import now
from refstore.core.repo import Repository
from refstore.services import lineage


def build(repo: Repository, runs: int, per_run: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    stamp = now()
    digest = "0" * 32
    with repo.db.transaction() as conn:
        conn.execute("INSERT OR IGNORE INTO trees (digest, body) VALUES (?, ?)", (digest, b"[]"))
        conn.executemany(
            "INSERT INTO artifacts (id, project, name, type, created_at) VALUES (?, 'bench', ?, 'dataset', ?)",
            ((i, f"a{i}", stamp) for i in range(1, 1001)),
        )
        numbers = [0] * 1001
        versions: list[tuple[int, int, int, str | None]] = []  # id, artifact, number, run

        def add_version(run_id: str | None) -> int:
            art = rng.randint(1, 1000)
            versions.append((len(versions) + 1, art, numbers[art], run_id))
            numbers[art] += 1
            return len(versions)

        for _ in range(100):
            add_version(None)
        run_rows, inputs = [], []
        for i in range(runs):
            run_id = f"{i:016x}"
            run_rows.append((run_id, f"run-{i}", stamp))
            recent = max(1, len(versions) - 500)
            chosen = {rng.randint(recent, len(versions)), rng.randint(recent, len(versions)), rng.randint(1, len(versions))}
            inputs.extend((run_id, v, stamp) for v in chosen)
            for _ in range(per_run):
                add_version(run_id)
        conn.executemany(
            "INSERT INTO versions (id, artifact_id, number, digest, size, file_count, created_at, run_id)"
            " VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
            ((vid, art, num, digest, stamp, run) for vid, art, num, run in versions),
        )
        conn.executemany(
            "INSERT INTO runs (id, project, name, job_type, status, created_at) VALUES (?, 'bench', ?, 'train', 'finished', ?)",
            run_rows,
        )
        conn.executemany("INSERT INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)", inputs)
    repo.db.execute("ANALYZE")


def naive(repo: Repository, version_id: int, direction: str) -> int:
    """Peer: breadth-first walk with one query per node."""
    seen: set[tuple[str, object]] = {("version", version_id)}
    queue: deque[tuple[str, object]] = deque(seen)
    while queue:
        kind, ident = queue.popleft()
        if direction == "downstream":
            sql = (
                "SELECT run_id FROM run_inputs WHERE version_id = ?"
                if kind == "version"
                else "SELECT id FROM versions WHERE run_id = ?"
            )
        else:
            sql = (
                "SELECT run_id FROM versions WHERE id = ? AND run_id IS NOT NULL"
                if kind == "version"
                else "SELECT version_id FROM run_inputs WHERE run_id = ?"
            )
        nxt_kind = "run" if kind == "version" else "version"
        for (found,) in repo.db.execute(sql, (ident,)):
            key = (nxt_kind, found)
            if key not in seen:
                seen.add(key)
                queue.append(key)
    return len(seen)


def timed(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--per-run", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="A tiny graph, one repeat: checks the script still runs.")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.repeat = 200, 1
    with tempfile.TemporaryDirectory() as root, refstore.init(root) as store:
        repo = store.repo
        start = time.perf_counter()
        build(repo, args.runs, args.per_run)
        n_versions = repo.db.scalar("SELECT COUNT(*) FROM versions")
        n_runs = repo.db.scalar("SELECT COUNT(*) FROM runs")
        n_edges = repo.db.scalar("SELECT COUNT(*) FROM run_inputs") + repo.db.scalar(
            "SELECT COUNT(*) FROM versions WHERE run_id IS NOT NULL"
        )
        print(f"graph: {n_runs} runs, {n_versions} versions, {n_edges} edges (built in {time.perf_counter() - start:.1f} s)")
        late = n_versions - 5
        # a middle version that some run used (most versions are never used: 3 inputs, 10 outputs per run)
        mid = repo.db.scalar("SELECT MIN(version_id) FROM run_inputs WHERE version_id >= ?", (n_versions // 2,))
        cases = [
            ("upstream of a late version", late, "upstream", None),
            ("upstream of a late version, depth 4", late, "upstream", 4),
            ("downstream of a middle version", mid, "downstream", None),
            ("downstream of a middle version, depth 4", mid, "downstream", 4),
            ("downstream of a seed version (worst case)", 3, "downstream", None),
        ]
        print(f"{'query':45} {'nodes':>8} {'CTE ms':>9} {'graph ms':>9} {'per-node BFS ms':>16}")
        for label, vid, direction, depth in cases:
            cte_ms, size = timed(lambda v=vid, d=direction, k=depth: len(lineage.reachable(repo, None, v, d, k)), args.repeat)
            full_ms, _ = timed(lambda v=vid, d=direction, k=depth: len(store.lineage(_spec(repo, v), d, k).nodes), args.repeat)
            peer = "-" if depth is not None else f"{timed(lambda v=vid, d=direction: naive(repo, v, d), args.repeat)[0]:.1f}"
            print(f"{label:45} {size:>8} {cte_ms:>9.1f} {full_ms:>9.1f} {peer:>16}")


def _spec(repo: Repository, version_id: int) -> str:
    row = repo.db.one(
        "SELECT a.project, a.name, v.number FROM versions v JOIN artifacts a ON a.id = v.artifact_id WHERE v.id = ?",
        (version_id,),
    )
    assert row is not None
    return f"{row['project']}/{row['name']}:v{row['number']}"


if __name__ == "__main__":
    main()
