"""Shared steps of importers: logging a local directory as a version, inserting a copied version, writing a run row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refstore.core.db import now
from refstore.core.repo import Repository
from refstore.core.tree import build_tree
from refstore.errors import ConflictError
from refstore.services import versions
from refstore.services.ingest import ingest, scan_dir
from refstore.services.runs import RUN_COLUMNS, json_object

_RUN_FIELDS = {c.strip() for c in RUN_COLUMNS.split(",")}


def log_directory(
    repo: Repository, name: str, type: str, directory: Path, *, run_id: str | None, metadata: dict[str, Any] | None = None
) -> versions.VersionRecord:
    """Store every file under ``directory`` as the next version of ``name`` (objects into the cache first)."""
    files = scan_dir(directory)
    with repo.writing():
        entries, _ = ingest(repo, files)
        tree = build_tree(entries, repo.algorithm)
        return versions.commit_version(repo, name, type, tree, metadata=metadata, run_id=run_id)


@dataclass(frozen=True)
class CopiedVersion:
    """A version read from another store or a remote, as it will be stored here (``metadata`` is JSON text)."""

    project: str
    name: str
    type: str
    digest: str
    size: int
    file_count: int
    description: str
    metadata: str
    created_at: str
    run_id: str | None


def insert_copied_version(
    repo: Repository,
    version: CopiedVersion,
    records: Mapping[str, bytes],
    *,
    source: str,
    artifact_description: str = "",
    artifact_created_at: str | None = None,
) -> int:
    """Store ``version`` (with its manifest ``records``) as the next number of its artifact; returns the row id.

    Call inside ``repo.writing()`` and a transaction, after the objects are in
    the cache. A version already here (same manifest and creation time, e.g.
    imported the other way before) is not copied twice; an artifact of another
    type under the same name is a conflict the user resolves with ``--remap``.
    """
    art = repo.db.one("SELECT id, type FROM artifacts WHERE project = ? AND name = ?", (version.project, version.name))
    if art is None:
        art_id = int(
            repo.db.execute(
                "INSERT INTO artifacts (project, name, type, description, created_at) VALUES (?, ?, ?, ?, ?)",
                (version.project, version.name, version.type, artifact_description, artifact_created_at or now()),
            ).lastrowid
            or 0
        )
    else:
        art_id = int(art["id"])
        if art["type"] != version.type:
            raise ConflictError(
                f"artifact {version.project}/{version.name} is a {art['type']} here but a {version.type} in {source}; "
                "remap the project with --remap"
            )
    same = repo.db.scalar(
        "SELECT id FROM versions WHERE artifact_id = ? AND digest = ? AND created_at = ?",
        (art_id, version.digest, version.created_at),
    )
    if same is not None:
        return int(same)
    repo.store_records(dict(records))
    number = repo.db.scalar("SELECT COALESCE(MAX(number) + 1, 0) FROM versions WHERE artifact_id = ?", (art_id,))
    cursor = repo.db.execute(
        "INSERT INTO versions (artifact_id, number, digest, size, file_count, description, metadata, created_at, run_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            art_id,
            number,
            version.digest,
            version.size,
            version.file_count,
            version.description,
            version.metadata,
            version.created_at,
            version.run_id,
        ),
    )
    return int(cursor.lastrowid or 0)


def upsert_run(
    repo: Repository,
    row: Mapping[str, Any],
    tags: Sequence[str],
    metrics: Sequence[tuple[str, int, float | None, str]],
) -> None:
    """Insert or update a run (keeping its inputs) and replace its tags and history; call in a transaction."""
    values = dict(row)
    values["config"] = json_object(values.get("config"), "run config")
    values["summary"] = json_object(values.get("summary"), "run summary")
    columns = list(values)
    unknown = set(columns) - _RUN_FIELDS
    if unknown:  # column names come from importer code, never from the source; this guards that
        raise ValueError(f"unknown run columns {sorted(unknown)}")
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    repo.db.execute(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT (id) DO UPDATE SET {updates}",
        [values[c] for c in columns],
    )
    run_id = values["id"]
    repo.db.execute("DELETE FROM run_tags WHERE run_id = ?", (run_id,))
    repo.db.conn.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)", ((run_id, t) for t in tags))
    repo.db.execute("DELETE FROM run_metrics WHERE run_id = ?", (run_id,))
    repo.db.conn.executemany(
        "INSERT INTO run_metrics (run_id, key, step, value, logged_at) VALUES (?, ?, ?, ?, ?)",
        ((run_id, key, step, value, stamp) for key, step, value, stamp in metrics),
    )
