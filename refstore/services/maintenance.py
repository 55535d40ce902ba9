"""Whole-store checks (``verify``) and garbage collection (``gc``)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from refstore.core import hashing, refdigests
from refstore.core.db import MIGRATIONS
from refstore.core.names import check_alias, check_name
from refstore.core.repo import Repository
from refstore.core.tree import DIR, REF, parse_record
from refstore.errors import RefstoreError

if TYPE_CHECKING:
    from refstore.services.repair import RepairReport

Progress = Callable[[int, int], None]
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def reachable(repo: Repository) -> tuple[set[str], set[str], set[str]]:
    """(record digests, stored-object digests, reference digests) that some version needs.

    Stored objects must be in the cache (or on a remote); reference digests are
    only cached when the reference was downloaded, and gc keeps them then.
    """
    records: set[str] = set()
    objects: set[str] = set()
    referenced: set[str] = set()
    unknown: list[str] = []  # identities of references whose digest is only known once downloaded
    stack = [row[0] for row in repo.db.execute("SELECT DISTINCT digest FROM versions")]
    while stack:
        digest = stack.pop()
        if digest in records:
            continue
        records.add(digest)
        for node in repo.record(digest):
            if node.type == DIR:
                assert node.digest is not None
                stack.append(node.digest)
            elif node.type == REF:
                if node.digest is not None:
                    referenced.add(node.digest)
                elif node.ref is not None:
                    unknown.append(refdigests.identity(node.size, node.ref, repo.algorithm))
            else:
                assert node.digest is not None
                objects.add(node.digest)
    referenced.update(refdigests.lookup(repo.db, unknown).values())
    return records, objects, referenced


@dataclass
class VerifyReport:
    objects_checked: int = 0
    records_checked: int = 0
    problems: list[str] = field(default_factory=list)
    # digest -> its problem line, for objects a refetch can fix (corrupt or missing); used by --repair
    broken_objects: dict[str, str] = field(default_factory=dict)
    # manifest records whose body no longer hashes to their key: digest -> problem line
    broken_records: dict[str, str] = field(default_factory=dict)
    repair: RepairReport | None = None  # set by a verify with repair=True

    def after_repair(self, repair: RepairReport) -> VerifyReport:
        """This report with the problems of the objects ``repair`` fixed taken out (no second re-hash)."""
        fixed = {self.broken_objects[d] for d in repair.repaired if d in self.broken_objects}
        # what is still broken is said as it now is: a corrupt object was removed either way
        still = {
            self.broken_objects[d]: f"object {d}: {'corrupt and removed' if d in repair.removed else 'missing'}, "
            f"not repaired: {reason}"
            for d, reason in repair.unrepaired.items()
            if d in self.broken_objects
        }
        return VerifyReport(
            objects_checked=self.objects_checked,
            records_checked=self.records_checked,
            problems=[
                still.get(p, p)
                for p in self.problems
                if p not in fixed and not any(p == self.broken_records.get(d) for d in repair.records_repaired)
            ],
            broken_objects={d: p for d, p in self.broken_objects.items() if d not in repair.repaired},
            repair=repair,
        )

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(repo: Repository, progress: Progress | None = None, *, missing_ok: set[str] | None = None) -> VerifyReport:
    """Check everything the store holds; report every problem, never trust what is broken.

    In order: SQLite's own structure check (``PRAGMA integrity_check``, foreign
    keys), every manifest record against its digest, the rows that have no
    checksum (versions, aliases, artifacts) for values that cannot be right,
    the declared sizes and file counts of directories and versions against
    what their records add up to, and every cached object re-hashed (and its
    size compared with what manifests declare). Corrupt objects are reported
    (and left for ``gc``/re-add to deal with), never trusted.
    """
    report = VerifyReport()
    missing_ok = missing_ok or set()
    _check_database(repo, report)
    _check_schema(repo, report)
    try:
        for digest, body in repo.db.execute("SELECT digest, body FROM trees"):
            report.records_checked += 1
            try:
                parse_record(bytes(body), repo.algorithm, expected_digest=digest)
            except RefstoreError as exc:
                report.problems.append(f"manifest record {digest}: {exc}")
                if isinstance(digest, str) and hashing.is_digest(digest, repo.algorithm):
                    report.broken_records[digest] = report.problems[-1]
    except (sqlite3.DatabaseError, ValueError) as exc:
        report.problems.append(f"database: cannot read manifest records ({exc})")
    _check_rows(repo, report)
    declared = _check_tree_totals(repo, report)
    try:
        _, needed, _ = reachable(repo)
    except (RefstoreError, sqlite3.DatabaseError, ValueError) as exc:
        report.problems.append(f"manifests: {exc}")
        needed = set()
    present: set[str] = set()
    done_bytes = 0
    for digest in repo.cache.digests():
        if not hashing.is_digest(digest, repo.algorithm):
            report.problems.append(f"object {digest}: unexpected file name in the object cache")
            continue
        present.add(digest)
        path = repo.cache.path(digest)
        actual, size = hashing.hash_file(path, repo.algorithm)
        report.objects_checked += 1
        done_bytes += size
        if actual != digest:
            problem = f"object {digest}: corrupt (hashes to {actual}); run 'refstore verify --repair' or re-add the file"
            report.problems.append(problem)
            report.broken_objects[digest] = problem
        elif digest in declared and declared[digest] != {size}:
            sizes = ", ".join(str(s) for s in sorted(declared[digest]))
            report.problems.append(f"object {digest}: {size} bytes, but manifests declare {sizes}")
        if progress is not None:
            progress(report.objects_checked, done_bytes)
    absent = sorted(needed - present - missing_ok)
    for digest in absent:
        problem = f"object {digest}: missing from the cache; run 'refstore verify --repair' or re-add the file"
        report.problems.append(problem)
        report.broken_objects[digest] = problem
    return report


def _check_database(repo: Repository, report: VerifyReport) -> None:
    """SQLite's structural check: b-tree pages, record formats, indexes against tables."""
    try:
        rows = [str(row[0]) for row in repo.db.execute("PRAGMA integrity_check(20)")]
        if rows != ["ok"]:
            report.problems.extend(f"database: {row}" for row in rows)
        for table, rowid, parent, _ in repo.db.execute("PRAGMA foreign_key_check"):
            report.problems.append(f"database: {table} row {rowid} points at a missing {parent} row")
    except (sqlite3.DatabaseError, ValueError) as exc:
        report.problems.append(f"database: {exc}; restore refstore.db from a backup or re-pull from a remote")


def _check_schema(repo: Repository, report: VerifyReport) -> None:
    """The schema must be exactly what the store's format version's migrations create.

    The schema text lives in ``sqlite_master`` without any checksum; a flipped byte
    there renames a column or table silently until a query needs it.
    """
    query = "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'"
    try:
        version = repo.db.format_version()
        actual = {tuple(str(v) for v in row) for row in repo.db.execute(query)}
    except (sqlite3.DatabaseError, ValueError) as exc:
        report.problems.append(f"database: cannot read the schema ({exc}); restore refstore.db from a backup")
        return
    if not 0 < version <= len(MIGRATIONS):
        report.problems.append(f"database: format version {version} is not one this refstore writes")
        return
    expected_db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        expected_db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for _, apply in MIGRATIONS[:version]:
            apply(expected_db)
        expected = {tuple(str(v) for v in row) for row in expected_db.execute(query)}
    finally:
        expected_db.close()
    for kind, name, _, _ in sorted(actual - expected):
        report.problems.append(f"database: {kind} {name!r} differs from format {version}'s schema (corrupt schema)")
    for kind, name, _, _ in sorted(expected - actual):
        if (kind, name) not in {(k, n) for k, n, _, _ in actual}:
            report.problems.append(f"database: {kind} {name!r} of format {version} is missing")


def _check_rows(repo: Repository, report: VerifyReport) -> None:
    """Rows without a checksum: reject values no refstore could have written."""
    try:
        for key, value in repo.db.execute("SELECT key, value FROM config"):
            if not isinstance(key, str) or not isinstance(value, str):
                report.problems.append(f"config {key!r}: invalid value {value!r}")
        for art_id, project, name, type_, _description, created_at in repo.db.execute(
            "SELECT id, project, name, type, description, created_at FROM artifacts"
        ):
            if not isinstance(created_at, str) or not _TIMESTAMP.fullmatch(created_at):
                report.problems.append(f"artifact {art_id}: invalid creation time {created_at!r}")
            for value, what in ((project, "project"), (name, "name"), (type_, "type")):
                try:
                    check_name(value, what)
                except RefstoreError:
                    report.problems.append(f"artifact {art_id}: invalid {what} {value!r}")
        for vid, number, digest, size, count, metadata, created_at, _description, _run in repo.db.execute(
            "SELECT id, number, digest, size, file_count, metadata, created_at, description, run_id FROM versions"
        ):
            where = f"version row {vid}"
            if not isinstance(created_at, str) or not _TIMESTAMP.fullmatch(created_at):
                report.problems.append(f"{where}: invalid creation time {created_at!r}")
            if not isinstance(number, int) or number < 0:
                report.problems.append(f"{where}: invalid version number {number!r}")
            if not isinstance(digest, str) or not hashing.is_digest(digest, repo.algorithm):
                report.problems.append(f"{where}: invalid manifest digest {digest!r}")
            if not isinstance(size, int) or not isinstance(count, int) or size < 0 or count < 0:
                report.problems.append(f"{where}: invalid size or file count ({size!r}, {count!r})")
            try:
                if not isinstance(json.loads(metadata), dict):
                    raise ValueError("not an object")
            except (TypeError, ValueError):
                report.problems.append(f"{where}: metadata is not a JSON object")
        for art_id, alias, vid, owner in repo.db.execute(
            "SELECT a.artifact_id, a.alias, a.version_id, v.artifact_id"
            " FROM aliases a LEFT JOIN versions v ON v.id = a.version_id"
        ):
            try:
                check_alias(alias)
            except RefstoreError:
                report.problems.append(f"alias {alias!r} of artifact {art_id}: invalid name")
            if owner != art_id:
                report.problems.append(f"alias {alias!r} of artifact {art_id}: points at version row {vid} of another artifact")
    except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: text that is no longer UTF-8
        report.problems.append(f"database: cannot read version rows ({exc})")


def _check_tree_totals(repo: Repository, report: VerifyReport) -> dict[str, set[int]]:
    """Compare declared directory and version sizes/counts with their records; return declared object sizes."""
    totals: dict[str, tuple[int, int]] = {}
    declared: dict[str, set[int]] = {}

    def total(digest: str) -> tuple[int, int]:
        if digest in totals:
            return totals[digest]
        size = count = 0
        for node in repo.record(digest):
            if node.type == DIR:
                assert node.digest is not None
                sub = total(node.digest)
                if sub != (node.size, node.count):
                    report.problems.append(
                        f"manifest record {digest}: directory {node.name!r} declares {node.size} bytes in {node.count} "
                        f"files, its record holds {sub[0]} bytes in {sub[1]} files"
                    )
                size, count = size + sub[0], count + sub[1]
            else:
                if node.type != REF and node.digest is not None:
                    declared.setdefault(node.digest, set()).add(node.size)
                size, count = size + node.size, count + 1
        totals[digest] = (size, count)
        return totals[digest]

    try:
        rows = repo.db.execute(
            "SELECT v.id, a.name, v.number, v.digest, v.size, v.file_count FROM versions v "
            "JOIN artifacts a ON a.id = v.artifact_id"
        ).fetchall()
        for vid, name, number, digest, size, count in rows:
            try:
                actual = total(digest)
            except (RefstoreError, RecursionError) as exc:
                report.problems.append(f"version {name}:v{number} (row {vid}): manifest unreadable ({exc})")
                continue
            if actual != (size, count):
                report.problems.append(
                    f"version {name}:v{number}: row says {size} bytes in {count} files, "
                    f"its manifest holds {actual[0]} bytes in {actual[1]} files"
                )
    except (sqlite3.DatabaseError, ValueError) as exc:
        report.problems.append(f"database: cannot read versions ({exc})")
    return declared


@dataclass
class GcReport:
    objects: list[str]
    records: list[str]
    temp_files: int
    bytes: int


def collect_garbage(repo: Repository, *, dry_run: bool = False) -> GcReport:
    """Remove objects and manifest records no version needs, and stale temp files."""
    with repo.exclusive():
        records, objects, referenced = reachable(repo)
        keep = objects | referenced
        dead_objects = sorted(d for d in repo.cache.digests() if d not in keep)
        dead_records = sorted({row[0] for row in repo.db.execute("SELECT digest FROM trees")} - records)
        size = 0
        for digest in dead_objects:
            try:
                size += repo.cache.path(digest).stat().st_size
            except (OSError, RefstoreError):
                pass
        temp_count = len(list(repo.cache.tmp.iterdir())) if repo.cache.tmp.is_dir() else 0
        if not dry_run:
            for digest in dead_objects:
                try:
                    repo.cache.remove(digest)
                except RefstoreError:
                    (repo.cache.objects / digest[:2] / digest[2:]).unlink(missing_ok=True)
            with repo.db.transaction():
                for start in range(0, len(dead_records), 500):
                    chunk = dead_records[start : start + 500]
                    repo.db.execute(f"DELETE FROM trees WHERE digest IN ({','.join('?' * len(chunk))})", chunk)
            repo.cache.clean_tmp()
    return GcReport(dead_objects, dead_records, temp_count, size)
