"""Lineage: the DAG of runs and versions, walked with recursive SQL.

Edges follow the data: ``version -> run`` when the run used the version
(``run_inputs``) and ``run -> version`` when the run logged it
(``versions.run_id``). Downstream of a node is everything reachable along
edges; upstream is everything reachable against them.

Without a depth limit the recursive CTE carries only (run, version) pairs, so
``UNION`` turns it into a visited set and each node is expanded once, whatever
the number of paths to it (and cycles, which refstore does not create, could
not loop). With a depth limit the CTE carries the depth as well and stops at
the limit. Depths in the result are shortest distances from the root,
computed from the edges by a breadth-first pass.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from refstore.core.db import SQL_BATCH
from refstore.core.repo import Repository
from refstore.errors import NotFoundError, RefstoreError, UsageError
from refstore.services import runs, versions

DIRECTIONS = ("upstream", "downstream")

# One step along the edges (downstream) or against them (upstream), from a node
# given as (run_id, version_id) with exactly one of them set.
_STEP = {
    "downstream": (
        "SELECT ri.run_id, NULL {depth_next} FROM walk w JOIN run_inputs ri ON ri.version_id = w.version_id {depth_where}",
        "SELECT NULL, v.id {depth_next} FROM walk w JOIN versions v ON v.run_id = w.run_id {depth_where}",
    ),
    "upstream": (
        "SELECT v.run_id, NULL {depth_next} FROM walk w JOIN versions v ON v.id = w.version_id"
        " WHERE v.run_id IS NOT NULL {depth_and}",
        "SELECT NULL, ri.version_id {depth_next} FROM walk w JOIN run_inputs ri ON ri.run_id = w.run_id {depth_where}",
    ),
}


@dataclass
class Node:
    key: str  # "run:<id>" or "version:<id>"
    kind: str  # "run" | "version"
    label: str
    depth: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # "uses" (version -> run) | "logs" (run -> version)


@dataclass
class Graph:
    root: str
    direction: str
    depth: int | None
    nodes: list[Node]
    edges: list[Edge]

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "depth": self.depth,
            "nodes": [{"id": n.key, "kind": n.kind, "label": n.label, "depth": n.depth, **n.data} for n in self.nodes],
            "edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in self.edges],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def _walk_sql(direction: str, limited: bool) -> str:
    first, second = _STEP[direction]
    if limited:
        fmt = {"depth_next": ", w.depth + 1", "depth_where": "WHERE w.depth < ?", "depth_and": "AND w.depth < ?"}
        head = "walk(run_id, version_id, depth) AS (SELECT ?, ?, 0"
    else:
        fmt = {"depth_next": "", "depth_where": "", "depth_and": ""}
        head = "walk(run_id, version_id) AS (SELECT ?, ?"
    return (
        f"WITH RECURSIVE {head} UNION {first.format(**fmt)} UNION {second.format(**fmt)}) "
        "SELECT DISTINCT run_id, version_id FROM walk"
    )


def parse_root(repo: Repository, spec: str) -> tuple[str | None, int | None]:
    """``run:ID`` names a run; anything else is a version spec.

    An artifact may be called ``run``: when no run has that id, ``run:v3`` is
    tried as a version spec before giving up.
    """
    if not isinstance(spec, str) or not spec:
        raise UsageError("empty lineage root; give a version spec (mnist:v1) or run:ID")
    if spec.startswith("run:"):
        try:
            return runs.get_run(repo, spec[4:]).id, None
        except NotFoundError:
            try:
                return None, versions.resolve(repo, spec).id
            except RefstoreError:
                pass
            raise
    return None, versions.resolve(repo, spec).id


def reachable(repo: Repository, run_id: str | None, version_id: int | None, direction: str, depth: int | None) -> set[str]:
    """Keys of the nodes reachable from the root (the root included)."""
    if direction not in DIRECTIONS:
        raise UsageError(f"invalid direction {direction!r}; use upstream or downstream")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise UsageError(f"depth must be a non-negative integer, not {depth!r}")
    params: list[Any] = [run_id, version_id]
    if depth is not None:
        params += [depth, depth]
    rows = repo.db.execute(_walk_sql(direction, depth is not None), params)
    return {f"run:{r}" if r is not None else f"version:{v}" for r, v in rows}


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + SQL_BATCH] for i in range(0, len(items), SQL_BATCH)]


def lineage(repo: Repository, spec: str, direction: str = "downstream", depth: int | None = None) -> Graph:
    """The subgraph upstream or downstream of ``spec`` (a version spec or ``run:ID``)."""
    run_id, version_id = parse_root(repo, spec)
    root = f"run:{run_id}" if run_id is not None else f"version:{version_id}"
    keys = reachable(repo, run_id, version_id, direction, depth)
    run_ids = sorted(k[4:] for k in keys if k.startswith("run:"))
    version_ids = sorted(int(k[8:]) for k in keys if k.startswith("version:"))
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for chunk in _chunks(version_ids):
        marks = ",".join("?" * len(chunk))
        for row in repo.db.query(
            "SELECT v.id, a.project, a.name, a.type, v.number, v.digest, v.run_id, v.created_at"
            f" FROM versions v JOIN artifacts a ON a.id = v.artifact_id WHERE v.id IN ({marks})",
            chunk,
        ):
            key = f"version:{row['id']}"
            nodes[key] = Node(
                key,
                "version",
                f"{row['name']}:v{row['number']}",
                -1,
                {
                    "project": row["project"],
                    "artifact": row["name"],
                    "version": f"v{row['number']}",
                    "type": row["type"],
                    "digest": row["digest"],
                    "created_at": row["created_at"],
                },
            )
            if row["run_id"] is not None and f"run:{row['run_id']}" in keys:
                edges.append(Edge(f"run:{row['run_id']}", key, "logs"))
    found_runs: set[str] = set()
    for chunk in _chunks(run_ids):
        marks = ",".join("?" * len(chunk))
        for row in repo.db.query(
            f"SELECT id, project, name, job_type, status, created_at FROM runs WHERE id IN ({marks})", chunk
        ):
            found_runs.add(row["id"])
            key = f"run:{row['id']}"
            label = f"{row['job_type']} {row['name']}" if row["job_type"] else row["name"]
            data = {k: row[k] for k in ("project", "name", "job_type", "status", "created_at")}
            nodes[key] = Node(key, "run", label, -1, {"run_id": row["id"], **data})
        for run_key, version in repo.db.execute(f"SELECT run_id, version_id FROM run_inputs WHERE run_id IN ({marks})", chunk):
            if f"version:{version}" in keys:
                edges.append(Edge(f"version:{version}", f"run:{run_key}", "uses"))
    for missing in set(run_ids) - found_runs:  # versions logged with a run id that has no run row
        key = f"run:{missing}"
        nodes[key] = Node(key, "run", f"run {missing}", -1, {"run_id": missing, "status": "unknown"})
    edges.sort(key=lambda e: (e.source, e.target))
    _set_depths(nodes, edges, root, direction)
    ordered = sorted(nodes.values(), key=lambda n: (n.depth, n.kind, n.label, n.key))
    return Graph(root, direction, depth, ordered, edges)


def _set_depths(nodes: dict[str, Node], edges: list[Edge], root: str, direction: str) -> None:
    forward: dict[str, list[str]] = {}
    for edge in edges:
        a, b = (edge.source, edge.target) if direction == "downstream" else (edge.target, edge.source)
        forward.setdefault(a, []).append(b)
    nodes[root].depth = 0
    queue = deque([root])
    while queue:
        key = queue.popleft()
        for nxt in forward.get(key, ()):
            if nodes[nxt].depth < 0:
                nodes[nxt].depth = nodes[key].depth + 1
                queue.append(nxt)
