"""Whole-store checks (``verify``) and garbage collection (``gc``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from refstore.core import hashing, refdigests
from refstore.core.repo import Repository
from refstore.core.tree import DIR, REF, parse_record
from refstore.errors import RefstoreError

Progress = Callable[[int, int], None]


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

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(repo: Repository, progress: Progress | None = None, *, missing_ok: set[str] | None = None) -> VerifyReport:
    """Re-hash every cached object and manifest record; check every version is complete.

    Corrupt objects are reported (and left for ``gc``/re-add to deal with), never trusted.
    """
    report = VerifyReport()
    missing_ok = missing_ok or set()
    for digest, body in repo.db.execute("SELECT digest, body FROM trees"):
        report.records_checked += 1
        try:
            parse_record(bytes(body), repo.algorithm, expected_digest=digest)
        except RefstoreError as exc:
            report.problems.append(f"manifest record {digest}: {exc}")
    try:
        _, needed, _ = reachable(repo)
    except RefstoreError as exc:
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
            report.problems.append(f"object {digest}: corrupt (hashes to {actual}); re-add the file or pull it from a remote")
        if progress is not None:
            progress(report.objects_checked, done_bytes)
    absent = sorted(needed - present - missing_ok)
    for digest in absent:
        report.problems.append(f"object {digest}: missing from the cache; re-add the file or pull it from a remote")
    return report


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
