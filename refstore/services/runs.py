"""Runs: the jobs that use and log artifact versions.

A run row is written when the run starts (status ``running``) and updated when
it ends, so a process that crashes leaves a run that still says ``running`` —
visible, not silently lost. Config and summary are JSON objects in TEXT
columns (queried with ``json_extract``); the metrics history is one row per
(key, step); tags are plain strings in their own table. Inputs are edges
(run, version) in ``run_inputs``; outputs are ``versions.run_id``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import sqlite3
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from refstore.core.db import SQL_BATCH, now
from refstore.core.names import check_name
from refstore.core.repo import Repository, dumps_json
from refstore.errors import NotFoundError, UsageError
from refstore.services import gitinfo, query, versions

STATUSES = ("running", "finished", "failed")
_MAX_TAG = 256
_MAX_KEY = 256


@dataclass
class RunRecord:
    """One run as stored."""

    id: str
    project: str
    name: str
    job_type: str
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    created_at: str
    finished_at: str | None
    git_commit: str | None
    git_dirty: bool | None
    command: str | None
    host: str | None
    pid: int | None
    source: str | None
    tags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "job_type": self.job_type,
            "status": self.status,
            "config": self.config,
            "summary": self.summary,
            "tags": self.tags,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "command": self.command,
            "host": self.host,
            "pid": self.pid,
            "source": self.source,
        }


RUN_COLUMNS = (
    "id, project, name, job_type, status, config, summary, created_at, finished_at, "
    "git_commit, git_dirty, command, host, pid, source"
)


def json_object(value: Mapping[str, Any] | None, what: str) -> str:
    """Canonical JSON text of a dict, or a UsageError saying why it cannot be stored."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise UsageError(f"{what} must be a dict (a JSON object), not {type(value).__name__}")
    try:
        return dumps_json(clean_json(dict(value)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} cannot be stored as JSON: {exc}") from exc


def plain(value: Any) -> Any:
    """NumPy-style scalars and arrays (anything with ``item()``/``tolist()``) as Python values."""
    if isinstance(value, (str, bytes, int, float, bool, dict, list, tuple)) or value is None:
        return value
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError):
                continue
    return value


def clean_json(value: Any) -> Any:
    """Replace non-finite floats (which JSON cannot hold) by their names, recursively."""
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def check_tags(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise UsageError("tags must be a list of strings, not one string")
    result: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > _MAX_TAG or not tag.isprintable():
            raise UsageError(f"invalid tag {tag!r}: use 1-{_MAX_TAG} printable characters")
        result.append(tag)
    return list(dict.fromkeys(result))


def new_run_id() -> str:
    """16 random hex digits: unique across stores, so imports can keep ids."""
    return uuid.uuid4().hex[:16]


def from_row(repo: Repository, row: dict[str, Any], tags: list[str] | None = None) -> RunRecord:
    if tags is None:
        tags = [r[0] for r in repo.db.execute("SELECT tag FROM run_tags WHERE run_id = ? ORDER BY tag", (row["id"],))]
    return RunRecord(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        job_type=row["job_type"],
        status=row["status"],
        config=json.loads(row["config"]),
        summary=json.loads(row["summary"]),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        git_commit=row["git_commit"],
        git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]),
        command=row["command"],
        host=row["host"],
        pid=row["pid"],
        source=row["source"],
        tags=tags,
    )


def start_run(
    repo: Repository,
    *,
    job_type: str | None = None,
    name: str | None = None,
    project: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    command: str | None = None,
    cwd: str | None = None,
) -> RunRecord:
    """Insert a new ``running`` run with the git state and command line of this process."""
    project = check_name(project, "project") if project else repo.default_project
    job_type = check_name(job_type, "job type") if job_type else ""
    run_id = new_run_id()
    if name is None:
        name = f"{job_type or 'run'}-{run_id[:8]}"
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise UsageError("run name must be 1-256 characters")
    config_json = json_object(config, "run config")
    tag_list = check_tags(tags)
    git = gitinfo.describe(cwd or os.getcwd())
    with repo.db.transaction():
        repo.db.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, 'running', ?, '{{}}', ?, NULL, ?, ?, ?, ?, ?, NULL)",
            (
                run_id,
                project,
                name,
                job_type,
                config_json,
                now(),
                git.commit if git else None,
                (1 if git.dirty else 0) if git else None,
                command if command is not None else shlex.join(sys.argv),
                socket.gethostname(),
                os.getpid(),
            ),
        )
        repo.db.conn.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)", ((run_id, t) for t in tag_list))
    return get_run(repo, run_id)


def get_run(repo: Repository, run_id: str) -> RunRecord:
    """A run by id or unique id prefix (at least 4 characters)."""
    if not isinstance(run_id, str) or not run_id:
        raise UsageError("empty run id; see 'refstore runs' for the runs in this store")
    row = repo.db.one(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    if row is None and len(run_id) >= 4:
        rows = repo.db.query(f"SELECT {RUN_COLUMNS} FROM runs WHERE id >= ? AND id < ? LIMIT 2", (run_id, run_id + "\uffff"))
        if len(rows) > 1:
            raise UsageError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(f"no run {run_id!r}; see 'refstore runs' for the runs in this store")
    return from_row(repo, row)


def finish_run(repo: Repository, run_id: str, status: str = "finished", summary: Mapping[str, Any] | None = None) -> RunRecord:
    """Mark a run finished or failed (and merge ``summary`` into its summary)."""
    if status not in ("finished", "failed"):
        raise UsageError(f"invalid run status {status!r}; use 'finished' or 'failed'")
    record = get_run(repo, run_id)
    with repo.db.transaction():
        if summary:
            update_summary(repo, record.id, summary)
        repo.db.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), record.id))
    return get_run(repo, record.id)


def update_summary(repo: Repository, run_id: str, values: Mapping[str, Any], remove: Sequence[str] = ()) -> dict[str, Any]:
    """Merge ``values`` into the run's summary (and drop ``remove``); returns the new summary."""
    for key in values:
        _check_key(key)
    with repo.db.transaction():
        text = repo.db.scalar("SELECT summary FROM runs WHERE id = ?", (run_id,))
        if text is None:
            raise NotFoundError(f"no run {run_id!r}")
        summary = json.loads(text)
        summary.update(values)
        for key in remove:
            summary.pop(key, None)
        repo.db.execute("UPDATE runs SET summary = ? WHERE id = ?", (json_object(summary, "run summary"), run_id))
    result: dict[str, Any] = json.loads(json_object(summary, "run summary"))
    return result


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise UsageError(f"invalid key {key!r}: use a non-empty string of at most {_MAX_KEY} characters")
    return key


def log_metrics(repo: Repository, run_id: str, values: Mapping[str, Any], step: int | None = None) -> int:
    """Append numeric ``values`` to the history at ``step`` (default: next step) and set them in the summary.

    Non-numeric values go to the summary only. Returns the step used.
    """
    if not isinstance(values, Mapping):
        raise UsageError("log() takes a dict of metric names to values")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise UsageError(f"invalid step {step!r}; give a non-negative integer")
    for key in values:
        _check_key(key)
    values = {key: plain(value) for key, value in values.items()}
    with repo.db.transaction():
        if step is None:
            last = repo.db.scalar("SELECT MAX(step) FROM run_metrics WHERE run_id = ?", (run_id,))
            step = 0 if last is None else int(last) + 1
        stamp = now()
        rows = [(run_id, key, step, _metric_value(v), stamp) for key, v in values.items() if _is_number(v)]
        repo.db.conn.executemany("INSERT INTO run_metrics (run_id, key, step, value, logged_at) VALUES (?, ?, ?, ?, ?)", rows)
        update_summary(repo, run_id, values)
    return step


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_value(value: float) -> float | None:
    """The REAL stored in the history; NaN (and ints too big for a double) become NULL."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return None if math.isnan(number) else number


def history(repo: Repository, run_id: str, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The metrics history as rows {step, key, value, logged_at}, by key then step."""
    rows = repo.db.query(
        "SELECT key, step, value, logged_at FROM run_metrics WHERE run_id = ? ORDER BY key, step, rowid", (run_id,)
    )
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r["key"] in wanted]
    return rows


def use_version(repo: Repository, run_id: str, spec: str) -> versions.VersionRecord:
    """Record that the run used the version ``spec`` names; returns that version.

    A run using a version it logged itself adds no edge (it would be a cycle).
    """
    with repo.db.transaction():
        record = versions.resolve(repo, spec)
        if record.run_id != run_id:
            repo.db.execute(
                "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)", (run_id, record.id, now())
            )
    return record


def inputs(repo: Repository, run_id: str) -> list[versions.VersionRecord]:
    ids = [r[0] for r in repo.db.execute("SELECT version_id FROM run_inputs WHERE run_id = ? ORDER BY created_at", (run_id,))]
    return [versions.get_version_by_id(repo, i) for i in ids]


def outputs(repo: Repository, run_id: str) -> list[versions.VersionRecord]:
    ids = [r[0] for r in repo.db.execute("SELECT id FROM versions WHERE run_id = ? ORDER BY id", (run_id,))]
    return [versions.get_version_by_id(repo, i) for i in ids]


def set_tags(repo: Repository, run_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
    add_list, remove_list = check_tags(add), check_tags(remove)
    with repo.db.transaction():
        repo.db.conn.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)", ((run_id, t) for t in add_list))
        repo.db.conn.executemany("DELETE FROM run_tags WHERE run_id = ? AND tag = ?", ((run_id, t) for t in remove_list))


def list_runs(
    repo: Repository,
    filter: Mapping[str, Any] | None = None,
    order: str | Sequence[str] | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> list[RunRecord]:
    """Runs matching a MongoDB-style ``filter`` (see :mod:`refstore.services.query`), ordered and paged."""
    where = query.compile_filter(filter)
    order_by = query.compile_order(order)
    lim, off = query.check_page(limit, offset)
    query.register_functions(repo.db.conn)
    columns = ", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))
    sql = f"SELECT {columns} FROM runs r WHERE {where.sql} ORDER BY {order_by.sql} LIMIT ? OFFSET ?"
    try:
        rows = repo.db.query(sql, [*where.params, *order_by.params, lim, off])
    except sqlite3.OperationalError as exc:
        raise UsageError(f"the filter could not be evaluated ({exc}); simplify it") from exc
    tags: dict[str, list[str]] = {row["id"]: [] for row in rows}
    ids = list(tags)
    for start in range(0, len(ids), SQL_BATCH):
        chunk = ids[start : start + SQL_BATCH]
        marks = ",".join("?" * len(chunk))
        for run_id, tag in repo.db.execute(f"SELECT run_id, tag FROM run_tags WHERE run_id IN ({marks}) ORDER BY tag", chunk):
            tags[run_id].append(tag)
    return [from_row(repo, row, tags[row["id"]]) for row in rows]
