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


def _check(direction: str, depth: int | None) -> None:
    if direction not in DIRECTIONS:
        raise UsageError(f"invalid direction {direction!r}; use upstream or downstream")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise UsageError(f"depth must be a non-negative integer, not {depth!r}")


def walk(
    repo: Repository, run_id: str | None, version_id: int | None, direction: str, depth: int | None
) -> tuple[list[str], list[int]]:
    """Ids of the runs and versions reachable from the root (the root included)."""
    _check(direction, depth)
    params: list[Any] = [run_id, version_id]
    if depth is not None:
        params += [depth, depth]
    run_ids: list[str] = []
    version_ids: list[int] = []
    for found_run, found_version in repo.db.execute(_walk_sql(direction, depth is not None), params):
        if found_run is not None:
            run_ids.append(found_run)
        else:
            version_ids.append(found_version)
    return run_ids, version_ids


def reachable(repo: Repository, run_id: str | None, version_id: int | None, direction: str, depth: int | None) -> set[str]:
    """Keys (``run:ID``, ``version:ID``) of the nodes reachable from the root."""
    run_ids, version_ids = walk(repo, run_id, version_id, direction, depth)
    return {f"run:{r}" for r in run_ids} | {f"version:{v}" for v in version_ids}


# The node sets can hold 100,000 ids: they travel as one JSON array parameter
# (``json_each``) instead of many batches of ``IN (?, ?, …)``.
_VERSIONS_SQL = (
    "SELECT v.id, a.project, a.name, a.type, v.number, v.digest, v.run_id, v.created_at"
    " FROM versions v JOIN artifacts a ON a.id = v.artifact_id WHERE v.id IN (SELECT value FROM json_each(?))"
)
_RUNS_SQL = "SELECT id, project, name, job_type, status, created_at FROM runs WHERE id IN (SELECT value FROM json_each(?))"
_INPUTS_SQL = "SELECT run_id, version_id FROM run_inputs WHERE run_id IN (SELECT value FROM json_each(?))"


def lineage(repo: Repository, spec: str, direction: str = "downstream", depth: int | None = None) -> Graph:
    """The subgraph upstream or downstream of ``spec`` (a version spec or ``run:ID``)."""
    _check(direction, depth)
    run_id, version_id = parse_root(repo, spec)
    root = f"run:{run_id}" if run_id is not None else f"version:{version_id}"
    run_ids, version_ids = walk(repo, run_id, version_id, direction, depth)
    run_set, version_set = set(run_ids), set(version_ids)
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for vid, project, name, type_, number, digest, logged_by, created_at in repo.db.execute(
        _VERSIONS_SQL, (json.dumps(version_ids),)
    ):
        key = f"version:{vid}"
        label = f"{name}:v{number}"
        data = {
            "project": project,
            "artifact": name,
            "version": f"v{number}",
            "type": type_,
            "digest": digest,
            "created_at": created_at,
        }
        nodes[key] = Node(key, "version", label, -1, data)
        if logged_by is not None and logged_by in run_set:
            edges.append(Edge(f"run:{logged_by}", key, "logs"))
    runs_json = json.dumps(run_ids)
    for rid, project, name, job_type, status, created_at in repo.db.execute(_RUNS_SQL, (runs_json,)):
        key = f"run:{rid}"
        label = f"{job_type} {name}" if job_type else name
        data = {
            "run_id": rid,
            "project": project,
            "name": name,
            "job_type": job_type,
            "status": status,
            "created_at": created_at,
        }
        nodes[key] = Node(key, "run", label, -1, data)
    for rid in run_ids:  # versions logged with a run id that has no run row
        if f"run:{rid}" not in nodes:
            nodes[f"run:{rid}"] = Node(f"run:{rid}", "run", f"run {rid}", -1, {"run_id": rid, "status": "unknown"})
    for rid, vid in repo.db.execute(_INPUTS_SQL, (runs_json,)):
        if vid in version_set:
            edges.append(Edge(f"version:{vid}", f"run:{rid}", "uses"))
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
