"""Shared steps of importers: logging a local directory as a version, writing a run row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from refstore.core.repo import Repository
from refstore.core.tree import build_tree
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
