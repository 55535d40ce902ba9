"""Import artifacts, versions, aliases and runs from another refstore directory, read-only.

The source database is opened with ``mode=ro`` and never migrated, so a
store of an older format can be imported without touching it. Everything
from the source is untrusted: manifest records are validated with
:func:`parse_record` against their digests, and objects are re-hashed as they
are copied into this store's cache.

Mapping: projects are renamed by ``remap`` (``{"old": "new"}``); version
numbers are assigned anew in this store (appended after its own versions);
run ids are kept (they are random and unique across stores), so importing
back and forth does not duplicate runs. An alias is imported only when the
artifact here does not have it yet — an import never moves this store's
aliases.

Incremental: progress items ``version:<source id>`` (fingerprint: manifest
digest) and ``run:<id>`` (fingerprint: the run's state, tags, history size and
inputs). Only new or changed items are imported; failed ones are retried.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from refstore.core.db import FORMAT_VERSION, now
from refstore.core.location import DATABASE_NAME
from refstore.core.names import check_alias, check_name
from refstore.core.remotefs import normalize_url
from refstore.core.repo import Repository, dumps_json
from refstore.core.tree import DIR, FILE, parse_record
from refstore.errors import FormatError, NotFoundError, RefstoreError, UsageError
from refstore.services.importers.common import CopiedVersion, insert_copied_version, upsert_run
from refstore.services.importers.progress import ImportReport, Tracker, fingerprint
from refstore.services.runs import RUN_COLUMNS, check_tags

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def parse_remap(pairs: Mapping[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for old, new in (pairs or {}).items():
        result[check_name(old, "project")] = check_name(new, "project")
    return result


def find_source(path: str | Path) -> Path:
    """The source's ``.refstore`` directory: ``path/.refstore`` or ``path`` itself."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        raise UsageError(f"{text} is a URL, not a store directory; URLs are imported as remotes")
    base = Path(normalize_url(text)).expanduser().absolute()
    for candidate in (base / ".refstore", base):
        if (candidate / DATABASE_NAME).is_file():
            return candidate
    raise NotFoundError(f"no refstore store or remote at {path}; give the directory that contains .refstore, or a remote's root")


class Source:
    """A read-only view of another store's database and objects."""

    def __init__(self, store_dir: Path) -> None:
        self.dir = store_dir
        db_path = store_dir / DATABASE_NAME
        try:
            self.conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
            self.version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
            rows = dict(self.conn.execute("SELECT key, value FROM config").fetchall())
        except sqlite3.DatabaseError as exc:
            raise FormatError(f"{db_path} is not a readable refstore database ({exc})") from exc
        if self.version > FORMAT_VERSION:
            raise FormatError(f"store {store_dir} has format {self.version}, newer than this refstore; upgrade refstore")
        self.algorithm = str(rows.get("hash_algorithm", ""))
        self.store_id = str(rows.get("store_id") or store_dir)
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.has_runs = "runs" in tables

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def record(self, digest: str) -> tuple[bytes, list[Any]]:
        row = self.conn.execute("SELECT body FROM trees WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise NotFoundError(f"manifest record {digest} is missing from the source store")
        body = bytes(row[0])
        return body, parse_record(body, self.algorithm, expected_digest=digest)

    def object_path(self, digest: str) -> Path:
        return self.dir / "objects" / digest[:2] / digest[2:]

    def close(self) -> None:
        self.conn.close()


def _copy_version(repo: Repository, source: Source, row: dict[str, Any], project: str) -> int:
    """Copy one version's records and objects (verified) and insert it; returns the new version id."""
    check_name(row["project"], "project")
    check_name(row["name"], "artifact name")
    check_name(row["type"], "artifact type")
    for key in ("size", "file_count", "number"):
        if not isinstance(row[key], int) or row[key] < 0:
            raise FormatError(f"invalid {key} {row[key]!r} in the source store")
    records: dict[str, bytes] = {}
    objects: set[str] = set()
    stack = [row["digest"]]
    while stack:
        digest = stack.pop()
        if digest in records:
            continue
        body, nodes = source.record(digest)
        records[digest] = body
        for node in nodes:
            if node.type == DIR:
                stack.append(node.digest)
            elif node.type == FILE:
                objects.add(node.digest)
    with repo.writing():
        for digest in sorted(objects):
            if repo.cache.has(digest):
                continue
            path = source.object_path(digest)
            try:
                with open(path, "rb") as handle:
                    repo.cache.add_stream(handle, expected=digest)
            except FileNotFoundError as exc:
                raise NotFoundError(f"object {digest} is missing from the source store {source.dir}") from exc
        version = CopiedVersion(
            project=project,
            name=row["name"],
            type=row["type"],
            digest=row["digest"],
            size=row["size"],
            file_count=row["file_count"],
            description=row["description"],
            metadata=dumps_json(json.loads(row["metadata"])),
            created_at=row["created_at"],
            run_id=row["run_id"],
        )
        with repo.db.transaction():
            return insert_copied_version(
                repo,
                version,
                records,
                source="the source store",
                artifact_description=row["art_description"],
                artifact_created_at=row["art_created_at"],
            )


def _copy_aliases(repo: Repository, source: Source, version_map: dict[int, int]) -> None:
    for alias in source.query("SELECT alias, version_id FROM aliases ORDER BY alias"):
        target = version_map.get(alias["version_id"])
        if target is None:
            continue
        try:
            check_alias(alias["alias"])
        except UsageError:
            log.warning("skipping invalid alias %r from the source", alias["alias"])
            continue
        with repo.db.transaction():
            art_id = repo.db.scalar("SELECT artifact_id FROM versions WHERE id = ?", (target,))
            repo.db.execute(
                "INSERT OR IGNORE INTO aliases (artifact_id, alias, version_id) VALUES (?, ?, ?)",
                (art_id, alias["alias"], target),
            )


def _run_state(source: Source, run: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    tags = [r["tag"] for r in source.query("SELECT tag FROM run_tags WHERE run_id = ? ORDER BY tag", (run["id"],))]
    metrics = source.query(
        "SELECT key, step, value, logged_at FROM run_metrics WHERE run_id = ? ORDER BY key, step, rowid", (run["id"],)
    )
    inputs = [r["version_id"] for r in source.query("SELECT version_id FROM run_inputs WHERE run_id = ?", (run["id"],))]
    return tags, metrics, inputs


def _import_run(
    repo: Repository, run: dict[str, Any], project: str, tags: list[str], metrics: list[dict[str, Any]], inputs: list[int]
) -> None:
    if not isinstance(run["id"], str) or not run["id"].isprintable() or not 1 <= len(run["id"]) <= 64:
        raise FormatError(f"invalid run id {run['id']!r} in the source store")
    check_tags(tags)
    row = {k: run[k] for k in run}
    row["project"] = project
    row["config"] = json.loads(run["config"])
    row["summary"] = json.loads(run["summary"])
    with repo.db.transaction():
        upsert_run(repo, row, tags, [(m["key"], m["step"], m["value"], m["logged_at"]) for m in metrics])
        repo.db.conn.executemany(
            "INSERT OR IGNORE INTO run_inputs (run_id, version_id, created_at) VALUES (?, ?, ?)",
            ((run["id"], version_id, now()) for version_id in inputs),
        )


def import_store(
    repo: Repository, path: str | Path, *, remap: Mapping[str, str] | None = None, progress: Progress | None = None
) -> ImportReport:
    """Import what is new or changed in the store at ``path`` into ``repo``."""
    mapping = parse_remap(remap)
    source = Source(find_source(path))
    try:
        if source.dir.resolve() == repo.dir.resolve():
            raise UsageError("cannot import a store into itself")
        if source.algorithm != repo.algorithm:
            raise UsageError(
                f"the source store uses digest algorithm {source.algorithm}, this one {repo.algorithm}; "
                "both must use the same algorithm"
            )
        tracker = Tracker(repo, f"store:{source.store_id}")
        report = ImportReport(tracker.source)
        rows = source.query(
            "SELECT v.id, v.number, v.digest, v.size, v.file_count, v.description, v.metadata, v.created_at, v.run_id,"
            " a.project, a.name, a.type, a.description AS art_description, a.created_at AS art_created_at"
            " FROM versions v JOIN artifacts a ON a.id = v.artifact_id ORDER BY a.project, a.name, v.number"
        )
        runs = source.query(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at, id") if source.has_runs else []
        total, done = len(rows) + len(runs), 0
        version_map: dict[int, int] = {}
        for row in rows:
            item = f"version:{row['id']}"
            project = mapping.get(row["project"], row["project"])
            state = tracker.state(item)
            if state is not None and state.status == "done" and state.fingerprint == row["digest"] and state.target:
                version_map[row["id"]] = int(state.target)
                report.skipped += 1
            else:
                try:
                    target = _copy_version(repo, source, row, project)
                except (RefstoreError, OSError, ValueError, sqlite3.DatabaseError) as exc:
                    tracker.failed(item, str(exc))
                    report.failed[f"{row['project']}/{row['name']}:v{row['number']}"] = str(exc)
                else:
                    tracker.done(item, row["digest"], str(target))
                    version_map[row["id"]] = target
                    report.imported.append(f"{project}/{row['name']}:v{row['number']}")
            done += 1
            if progress is not None:
                progress(done, total)
        _copy_aliases(repo, source, version_map)
        for run in runs:
            item = f"run:{run['id']}"
            project = mapping.get(run["project"], run["project"])
            tags, metrics, inputs = _run_state(source, run)
            print_ = fingerprint([run, tags, len(metrics), sorted(inputs), project])
            if tracker.is_done(item, print_):
                report.skipped += 1
            else:
                missing = [i for i in inputs if i not in version_map]
                existed = tracker.state(item) is not None
                try:
                    if missing:
                        raise NotFoundError(f"run {run['id']} used versions that failed to import; retry the import")
                    _import_run(repo, run, project, tags, metrics, [version_map[i] for i in inputs])
                except (RefstoreError, ValueError, sqlite3.DatabaseError) as exc:
                    tracker.failed(item, str(exc))
                    report.failed[item] = str(exc)
                else:
                    tracker.done(item, print_, run["id"])
                    (report.updated if existed else report.imported).append(f"run {run['id']}")
            done += 1
            if progress is not None:
                progress(done, total)
        return report
    finally:
        source.close()
