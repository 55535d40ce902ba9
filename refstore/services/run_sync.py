"""Pushing and pulling runs: snapshots out, the winning snapshot in, lineage edges by identity.

Push writes a snapshot of every selected run whose current state the remote
lacks (one listing says which; a run unchanged since the last push costs
nothing). Pull reads, for each run, only the winning snapshot (the highest
:class:`~refstore.services.remote_layout.RunKey` in the listing) and only when
it beats the local state of that run, validates it, and applies it inside the
caller's transaction. Input edges name versions by identity; an input whose
version this store lacks is kept in ``run_pending_inputs`` and becomes a real
edge when the version arrives (by a later pull or import).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from refstore.core.remotefs import RemoteFS
from refstore.core.repo import Repository
from refstore.errors import IntegrityError
from refstore.services.importers.common import upsert_run
from refstore.services.remote_layout import RUN_ID, Listing, RunKey, VersionData, run_path
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
        repo.db.execute("DELETE FROM run_pending_inputs WHERE run_id = ?", (run.id,))
        for identity in run.inputs:
            version_id = identities.get(identity)
            if version_id is not None:
                repo.db.execute(
                    "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)",
                    (run.id, version_id, run.created_at),
                )
            else:
                repo.db.execute(
                    "INSERT OR IGNORE INTO run_pending_inputs (run_id, project, name, record) VALUES (?, ?, ?, ?)",
                    (run.id, *identity),
                )
        # the triggers stamped "now"; the run's state is the snapshot's, so is its time
        repo.db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (run.updated_at, run.id))
    resolve_pending(repo, identities)


def resolve_pending(repo: Repository, identities: dict[Identity, int]) -> int:
    """Turn pending inputs whose version is now here into edges; call inside a transaction. Returns how many."""
    rows = repo.db.query("SELECT run_id, project, name, record FROM run_pending_inputs ORDER BY run_id")
    resolved = 0
    for row in rows:
        version_id = identities.get((row["project"], row["name"], row["record"]))
        if version_id is None:
            continue
        stamp = repo.db.scalar("SELECT updated_at FROM runs WHERE id = ?", (row["run_id"],))
        created = repo.db.scalar("SELECT created_at FROM runs WHERE id = ?", (row["run_id"],))
        repo.db.execute(
            "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)",
            (row["run_id"], version_id, created),
        )
        repo.db.execute(
            "DELETE FROM run_pending_inputs WHERE run_id = ? AND project = ? AND name = ? AND record = ?",
            (row["run_id"], row["project"], row["name"], row["record"]),
        )
        # the same edge, now resolved: the run did not change
        repo.db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (stamp, row["run_id"]))
        resolved += 1
    return resolved
