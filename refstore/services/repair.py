"""``verify --repair``: refetch corrupt or missing cache objects from where they came from.

``verify`` names the objects it found corrupt or missing (``VerifyReport.broken_objects``).
Repair first moves every corrupt one out of the way (removes it, as a read
would), so no wrong bytes stay under a digest whatever happens next, then asks,
in order:

1. every configured remote, for stored objects: the same verified download as
   ``pull --objects`` (:func:`refstore.services.transfer.download_objects`), so
   bytes are re-hashed on arrival and published under their digest only when
   they match;
2. the reference source, for bytes cached from a reference: the references
   fetcher (:func:`refstore.services.reffetch.fetch_references`), which refuses
   a source that changed since it was recorded.

Corrupt manifest records (``VerifyReport.broken_records``) are replaced by a
remote's copy under ``trees/`` that hashes to their digest
(:func:`repair_records`); the caller then verifies again, since the walks
beneath a broken record could not run.

What no source could provide is reported with the reason from each source
tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from refstore.core import refdigests
from refstore.core.repo import Repository
from refstore.core.tree import DIR, REF, Entry, parse_record
from refstore.errors import BackendError, IntegrityError, RefstoreError
from refstore.services.remote_layout import tree_path
from refstore.services.remotes import list_remotes
from refstore.services.transfer import download_objects

log = logging.getLogger(__name__)
NO_SOURCE = (
    "no remote configured; add one that has it with 'refstore remote add NAME URL' and run "
    "'refstore verify --repair' again, or re-add the file with 'refstore put'"
)


@dataclass
class RepairReport:
    """What a repair did, by object digest."""

    repaired: dict[str, str] = field(default_factory=dict)  # digest -> where its bytes came from
    unrepaired: dict[str, str] = field(default_factory=dict)  # digest -> why no source could provide it
    removed: list[str] = field(default_factory=list)  # corrupt objects moved out of the way
    sources: list[str] = field(default_factory=list)  # every source asked, in order
    records_repaired: dict[str, str] = field(default_factory=dict)  # manifest record digest -> remote
    records_unrepaired: dict[str, str] = field(default_factory=dict)  # manifest record digest -> why not


def repair_records(repo: Repository, broken: Mapping[str, str], report: RepairReport) -> None:
    """Replace corrupt manifest records by a remote's copy (``trees/…``), checked against the digest first.

    Records are content-addressed like objects, so a remote's copy that parses
    and hashes to the key is exactly the record that was lost. Rows are
    replaced in one transaction at the end.
    """
    good: dict[str, bytes] = {}
    reasons: dict[str, list[str]] = {}
    for config in list_remotes(repo):
        todo = sorted(d for d in broken if d not in good)
        if not todo:
            break
        where = f"remote {config.name} ({config.url})"
        if where not in report.sources:
            report.sources.append(where)
        try:
            remote = config.open()
            for digest in todo:
                try:
                    body = remote.read(tree_path(digest))
                    parse_record(body, repo.algorithm, expected_digest=digest)
                except FileNotFoundError:
                    reasons.setdefault(digest, []).append(f"not on {where}")
                    continue
                except IntegrityError as exc:
                    reasons.setdefault(digest, []).append(f"{where}: its copy is corrupt too ({exc.message})")
                    continue
                good[digest] = body
                report.records_repaired[digest] = where
        except BackendError as exc:
            for digest in todo:
                if digest not in good:
                    reasons.setdefault(digest, []).append(f"{where}: {exc.message}")
    if good:
        with repo.writing(), repo.db.transaction():
            for digest, body in sorted(good.items()):
                repo.db.execute("UPDATE trees SET body = ? WHERE digest = ?", (body, digest))
    for digest in sorted(set(broken) - good.keys()):
        report.records_unrepaired[digest] = "; ".join(reasons.get(digest) or [NO_SOURCE])


def repair_objects(
    repo: Repository, broken: Mapping[str, str], *, jobs: int = 8, report: RepairReport | None = None
) -> RepairReport:
    """Remove the corrupt objects among ``broken`` and refetch every one a version needs."""
    report = report if report is not None else RepairReport()
    if not broken:
        return report
    with repo.writing():
        for digest in sorted(broken):
            if repo.cache.has(digest) and not repo.cache.check(digest):
                repo.cache.remove(digest)  # not quarantine(): the report says it, no warning on stderr too
                report.removed.append(digest)
    stored, references = _needed(repo, set(broken))
    for digest in sorted(set(broken) - stored.keys() - references.keys()):
        report.repaired[digest] = "removed: no version needs it"
    reasons: dict[str, list[str]] = {}
    _from_remotes(repo, stored, jobs, report, reasons)
    _from_references(repo, references, report, reasons)
    for digest in sorted(stored.keys() | references.keys()):
        if digest not in report.repaired:
            report.unrepaired[digest] = "; ".join(reasons.get(digest) or [NO_SOURCE])
    return report


def _needed(repo: Repository, wanted: set[str]) -> tuple[dict[str, int], dict[str, Entry]]:
    """Of ``wanted``: stored objects some version needs (digest → size), and cached reference bytes (→ an entry)."""
    stored: dict[str, int] = {}
    references: dict[str, Entry] = {}
    unknown: dict[str, Entry] = {}  # reference identity → entry, when the digest is only remembered
    seen: set[str] = set()
    stack = [(row[0], "") for row in repo.db.execute("SELECT DISTINCT digest FROM versions")]
    while stack:
        digest, prefix = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            nodes = repo.record(digest)
        except RefstoreError as exc:  # verify reports it; nothing to fetch beneath it
            log.info("%s", exc)
            continue
        for node in nodes:
            path = prefix + node.name
            if node.type == DIR:
                assert node.digest is not None
                stack.append((node.digest, path + "/"))
            elif node.type == REF:
                entry = Entry(path, node.size, node.digest, node.ref)
                if node.digest is not None and node.digest in wanted:
                    references.setdefault(node.digest, entry)
                elif node.digest is None and node.ref is not None:
                    unknown.setdefault(refdigests.identity(node.size, node.ref, repo.algorithm), entry)
            elif node.digest in wanted:
                stored[node.digest] = node.size
    for identity, digest in refdigests.lookup(repo.db, list(unknown)).items():
        if digest in wanted:
            references.setdefault(digest, unknown[identity])
    return stored, references


def _from_remotes(
    repo: Repository, stored: dict[str, int], jobs: int, report: RepairReport, reasons: dict[str, list[str]]
) -> None:
    for config in list_remotes(repo):
        todo = sorted((d, s) for d, s in stored.items() if not repo.cache.has(d))
        if not todo:
            return
        where = f"remote {config.name} ({config.url})"
        if where not in report.sources:
            report.sources.append(where)
        try:
            remote = config.open()
            download_objects(repo, remote, todo, jobs=jobs, missing_ok=True)
        except BackendError as exc:  # unreachable or failing: no use asking it once per object
            log.info("%s", exc)
            for digest, _ in todo:
                if not repo.cache.has(digest):
                    reasons.setdefault(digest, []).append(f"{where}: {exc.message}")
        except RefstoreError as exc:
            # One bad object fails its batch: retry one by one to tell which.
            log.info("%s", exc)
            for digest, size in todo:
                try:
                    download_objects(repo, config.open(), [(digest, size)], jobs=1, missing_ok=True)
                except RefstoreError as one:
                    reasons.setdefault(digest, []).append(f"{where}: {one.message}")
        for digest, _ in todo:
            if repo.cache.has(digest):
                report.repaired[digest] = where
            elif not any(r.startswith(where) for r in reasons.get(digest, [])):
                reasons.setdefault(digest, []).append(f"not on {where}")


def _from_references(repo: Repository, references: dict[str, Entry], report: RepairReport, reasons: dict[str, list[str]]) -> None:
    from refstore.services.reffetch import fetch_references

    for digest, entry in sorted(references.items()):
        assert entry.ref is not None
        where = f"reference {entry.ref.get('uri')}"
        report.sources.append(where)
        try:
            got = fetch_references(repo, [entry]).get(entry.path)
        except RefstoreError as exc:
            reasons.setdefault(digest, []).append(f"{where}: {exc.message}")
            continue
        if got == digest and repo.cache.check(digest):
            report.repaired[digest] = where
        else:
            reasons.setdefault(digest, []).append(f"{where}: its bytes now hash to {got}, not {digest}")
