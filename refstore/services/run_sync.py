"""Pushing and pulling runs: snapshots out, the winning snapshot in, lineage edges by identity.

Push writes a snapshot of every selected run whose current state the remote
lacks (one listing says which; a run unchanged since the last push costs
nothing). Pull reads, for each run, only the winning snapshot (the highest
:class:`~refstore.services.remote_layout.RunKey` in the listing) and only when
it beats the local state of that run, validates it, and applies it inside the
caller's transaction. Edges name versions by identity; an edge to a version
this store lacks (not pulled, or deleted here) is kept in ``run_pending_edges``,
so the run's record stays whole, and an input becomes a real edge again when
the version arrives (by a later pull or import).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from refstore.core.db import now
from refstore.core.remotefs import RemoteFS
from refstore.core.repo import Repository
from refstore.errors import IntegrityError
from refstore.services.importers.common import upsert_run
from refstore.services.remote_layout import RUN_ID, Listing, RunKey, VersionData, run_path
from refstore.services.remotes import local_version_data
from refstore.services.run_records import Identity, RunData, local_run_data, parse_run
from refstore.services.sync_common import SyncResult

log = logging.getLogger(__name__)


def runs_touching(repo: Repository, version_ids: set[int] | None) -> list[str] | None:
    """Runs that used or logged one of ``version_ids`` (None: every run)."""
    if version_ids is None:
        return None
    found: set[str] = set()
    for run_id, version_id in repo.db.execute("SELECT run_id, version_id FROM run_inputs"):
        if version_id in version_ids:
            found.add(run_id)
    for version_id, run_id in repo.db.execute("SELECT id, run_id FROM versions WHERE run_id IS NOT NULL"):
        if version_id in version_ids:
            found.add(run_id)
    return sorted(found)


def push_runs(
    repo: Repository,
    remote: RemoteFS,
    listing: Listing,
    records: dict[int, VersionData],
    version_ids: set[int] | None,
    result: SyncResult,
) -> None:
    """Write a snapshot of each selected run whose state is not on the remote yet (one batched write)."""
    files: dict[str, bytes] = {}
    for run_id, data in local_run_data(repo, records, runs_touching(repo, version_ids)).items():
        if not RUN_ID.fullmatch(run_id):
            log.warning("run id %r cannot be pushed (use letters, digits, '.', '_', '-'); skipped", run_id)
            continue
        key = data.key(repo.algorithm)
        known = listing.runs.get(run_id, set())
        if key in known:
            continue
        if known and max(known) > key:
            continue  # the remote's snapshot is newer: pull takes it
        files[run_path(run_id, key)] = data.encode()
        listing.runs.setdefault(run_id, set()).add(key)
        result.runs.append(run_id)
    if files:
        remote.write_many(files)


def runs_to_read(repo: Repository, listing: Listing, records: dict[int, VersionData]) -> dict[str, RunKey]:
    """For each run on the remote whose winning snapshot beats the local state: that snapshot's key."""
    winners = {run_id: max(keys) for run_id, keys in listing.runs.items() if keys}
    if not winners:
        return {}
    local = local_run_data(repo, records, sorted(winners))
    return {
        run_id: key for run_id, key in sorted(winners.items()) if run_id not in local or local[run_id].key(repo.algorithm) < key
    }


def read_runs(remote: RemoteFS, algorithm: str, wanted: Mapping[str, RunKey]) -> list[RunData]:
    """Read and validate the given snapshots (before anything touches the database)."""
    paths = {run_path(run_id, key): (run_id, key) for run_id, key in wanted.items()}
    try:
        bodies = remote.read_many(sorted(paths))
    except FileNotFoundError as exc:
        raise IntegrityError(f"remote {remote.url} lost a run record while it was read; pull again") from exc
    return [parse_run(bodies[path], algorithm, *paths[path]) for path in sorted(paths)]


def touches(run: RunData, artifacts: Iterable[tuple[str, str]]) -> bool:
    keys = set(artifacts)
    return any((p, n) in keys for p, n, _ in (*run.inputs, *run.outputs))


def version_identities(repo: Repository, records: dict[int, VersionData]) -> dict[Identity, int]:
    return {(d.project, d.name, d.digest(repo.algorithm)): vid for vid, d in records.items()}


def apply_runs(
    repo: Repository, runs: list[RunData], identities: dict[Identity, int], projects: Mapping[str, str] | None = None
) -> None:
    """Insert or replace each run's whole state; call inside a transaction, after the versions are in.

    ``identities`` maps version identities to local version ids; ``projects``
    renames run projects (imports with ``--remap``).
    """
    mapping = projects or {}
    for run in runs:
        row = {
            "id": run.id,
            "project": mapping.get(run.project, run.project),
            "name": run.name,
            "job_type": run.job_type,
            "status": run.status,
            "config": json.loads(run.config),
            "summary": json.loads(run.summary),
            "created_at": run.created_at,
            "finished_at": run.finished_at,
            "git_commit": run.git_commit,
            "git_dirty": None if run.git_dirty is None else int(run.git_dirty),
            "command": run.command,
            "host": run.host,
            "pid": run.pid,
            "source": run.source,
        }
        upsert_run(repo, row, run.tags, run.history)
        repo.db.execute("DELETE FROM run_inputs WHERE run_id = ?", (run.id,))
        repo.db.execute("DELETE FROM run_pending_edges WHERE run_id = ?", (run.id,))
        for identity in run.inputs:
            version_id = identities.get(identity)
            if version_id is not None:
                repo.db.execute(
                    "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)",
                    (run.id, version_id, run.created_at),
                )
            else:
                _keep(repo, run.id, "input", identity)
        for identity in run.outputs:
            if identity not in identities:  # a version here with this identity names this run already
                _keep(repo, run.id, "output", identity)
        # the triggers counted these writes as changes; the run's state is the snapshot's, so are these
        repo.db.execute("UPDATE runs SET updated_at = ?, revision = ? WHERE id = ?", (run.updated_at, run.revision, run.id))
    resolve_pending(repo, identities)


def resolve_pending(repo: Repository, identities: dict[Identity, int]) -> int:
    """Edges kept by identity whose version is now here become real; call inside a transaction. Returns how many."""
    rows = repo.db.query("SELECT run_id, kind, project, name, record FROM run_pending_edges ORDER BY run_id")
    resolved = 0
    for row in rows:
        version_id = identities.get((row["project"], row["name"], row["record"]))
        if version_id is None:
            continue
        before = repo.db.one("SELECT created_at, updated_at, revision FROM runs WHERE id = ?", (row["run_id"],))
        assert before is not None  # the foreign key cascades
        if row["kind"] == "input":
            repo.db.execute(
                "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)",
                (row["run_id"], version_id, before["created_at"]),
            )
        repo.db.execute(
            "DELETE FROM run_pending_edges WHERE run_id = ? AND kind = ? AND project = ? AND name = ? AND record = ?",
            (row["run_id"], row["kind"], row["project"], row["name"], row["record"]),
        )
        # the same edge, now resolved: the run did not change
        repo.db.execute(
            "UPDATE runs SET updated_at = ?, revision = ? WHERE id = ?", (before["updated_at"], before["revision"], row["run_id"])
        )
        resolved += 1
    return resolved


def note_output(repo: Repository, run_id: str) -> None:
    """A run logged a new version: that is a change to the run (revision + 1); call in the logging transaction."""
    if repo.db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_pending_edges'") is None:
        return  # a store older than migration 0005_run_sync (only ever seen by code simulating old releases)
    repo.db.execute(
        "UPDATE runs SET revision = revision + 1, updated_at = MAX(?, COALESCE(updated_at, '')) WHERE id = ?", (now(), run_id)
    )


def keep_edges_of(repo: Repository, version_id: int) -> None:
    """Before a version is deleted here: keep its edges to runs by identity; call inside the deleting transaction.

    The runs did not change, so their records (and what push sends) stay the same,
    and a version that comes back with a pull is connected again.
    """
    if repo.db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_pending_edges'") is None:
        return
    data = local_version_data(repo, [version_id]).get(version_id)
    if data is None:
        return
    identity = (data.project, data.name, data.digest(repo.algorithm))
    for (run_id,) in repo.db.execute("SELECT run_id FROM run_inputs WHERE version_id = ?", (version_id,)).fetchall():
        _keep(repo, run_id, "input", identity)
    if data.run_id is not None and repo.db.scalar("SELECT 1 FROM runs WHERE id = ?", (data.run_id,)):
        _keep(repo, data.run_id, "output", identity)


def _keep(repo: Repository, run_id: str, kind: str, identity: Identity) -> None:
    repo.db.execute(
        "INSERT OR IGNORE INTO run_pending_edges (run_id, kind, project, name, record) VALUES (?, ?, ?, ?, ?)",
        (run_id, kind, *identity),
    )
