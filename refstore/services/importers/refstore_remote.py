"""Import artifacts, versions, aliases and runs from a refstore *remote* (any URL ``remote add`` takes).

The remote layout (docs/format.md, "Remote layout") is read, never written:
number claims, version records, manifest records, alias moves and run
snapshots. Everything is untrusted and validated exactly as ``pull`` does
(records against their digests, manifests with sizes adding up, run snapshots
field by field); objects are **copied** into this store's cache, re-hashed on
arrival, so an imported version is complete here without any remote configured
(the source is not added as a remote, so a lazy fetch would have nowhere to go).

Mapping is the directory importer's: projects renamed by ``remap``; version
numbers assigned here, after this store's own; run ids kept; an alias copied only
when the artifact here lacks it.

Incremental, with progress in ``import_progress`` under ``remote:<url>``:

- ``version:PROJECT/NAME:vN`` — a number claim is immutable, so a done claim is
  never read again (fingerprint: its version record digest; target: the local id);
- ``alias:PROJECT/NAME/ALIAS`` — fingerprint: the move number last seen;
- ``run:<id>`` — fingerprint: the digest of the winning snapshot.

A second import of an unchanged remote therefore makes one listing (plus the
marker read) and nothing else. A failed item (corrupt object, hostile record) is
recorded with its error and retried by the next import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from refstore.core.fs import check_no_credentials
from refstore.core.remotefs import RemoteFS, is_local_url, normalize_url
from refstore.core.repo import Repository
from refstore.core.tree import DIR, FILE, parse_record
from refstore.errors import IntegrityError, NotFoundError, RefstoreError
from refstore.services.importers.common import CopiedVersion, insert_copied_version
from refstore.services.importers.progress import ImportReport, Tracker
from refstore.services.importers.refstore_dir import parse_remap
from refstore.services.pull import check_totals, fetch_trees
from refstore.services.remote_layout import (
    MARKER,
    Listing,
    RunKey,
    VersionData,
    alias_path,
    number_path,
    parse_alias,
    parse_claim,
    parse_version,
    record_path,
    run_path,
)
from refstore.services.remotes import check_options
from refstore.services.run_records import RunData, parse_run
from refstore.services.run_sync import apply_runs
from refstore.services.sync_common import read_listing
from refstore.services.transfer import download_objects

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
JOBS = 8
RUN_BATCH = 500


def is_remote(source: str) -> bool:
    """A URL other than file://, or a directory that holds a remote's marker file (not a store)."""
    if not is_local_url(source):
        return True
    return Path(normalize_url(source), MARKER).is_file()


def import_remote(
    repo: Repository,
    url: str,
    *,
    options: Mapping[str, Any] | None = None,
    remap: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import what is new on the remote at ``url`` into ``repo``; the remote is only read."""
    mapping = parse_remap(remap)
    check_no_credentials(url)
    remote = RemoteFS(url, check_options(dict(options or {})))
    listing = read_listing(repo, remote, create=False)
    if not listing.has_marker:
        raise NotFoundError(f"{remote.url} is not a refstore remote (no refstore-remote.json); check the URL")
    tracker = Tracker(repo, f"remote:{remote.url}")
    report = ImportReport(tracker.source)
    importer = _Importer(repo, remote, listing, tracker, report, mapping)
    claims = [(p, n, k) for (p, n), info in sorted(listing.artifacts.items()) for k in sorted(info.numbers)]
    aliases = [(p, n, a, seq) for (p, n), info in sorted(listing.artifacts.items()) for a, seq in sorted(info.aliases.items())]
    runs = sorted((run_id, max(keys)) for run_id, keys in listing.runs.items() if keys)
    importer.total = len(claims) + len(aliases) + len(runs)
    importer.progress = progress
    importer.versions(claims)
    importer.aliases(aliases)
    importer.runs(runs)
    return report


class _Importer:
    """One import run: the remote, what is done, and the map from remote version records to local ids."""

    def __init__(
        self,
        repo: Repository,
        remote: RemoteFS,
        listing: Listing,
        tracker: Tracker,
        report: ImportReport,
        mapping: dict[str, str],
    ) -> None:
        self.repo, self.remote, self.listing = repo, remote, listing
        self.tracker, self.report, self.mapping = tracker, report, mapping
        self.records: dict[tuple[str, str, str], int] = {}  # remote identity -> local version id
        self.total = self.done = 0
        self.progress: Progress | None = None

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def project(self, project: str) -> str:
        return self.mapping.get(project, project)

    # -- versions ----------------------------------------------------------------
    def versions(self, claims: list[tuple[str, str, int]]) -> None:
        todo: dict[str, tuple[str, str, int]] = {}
        for project, name, number in claims:
            state = self.tracker.state(f"version:{project}/{name}:v{number}")
            if state is not None and state.status == "done" and state.target:
                self.records[(project, name, state.fingerprint)] = int(state.target)
                self.report.skipped += 1
                self.step()
            else:
                todo[number_path(project, name, number)] = (project, name, number)
        bodies = self._read_each(sorted(todo))
        digests: dict[tuple[str, str, int], str] = {}
        for path, (project, name, number) in todo.items():
            body = bodies.get(path)
            try:
                if body is None:
                    raise IntegrityError(f"number claim {path} could not be read from {self.remote.url}")
                digests[(project, name, number)] = parse_claim(body, self.repo.algorithm, path)
            except RefstoreError as exc:
                self._fail_version(project, name, number, exc)
        record_bodies = self._read_each(sorted({record_path(p, n, d) for (p, n, _), d in digests.items()}))
        for (project, name, number), record in sorted(digests.items()):
            try:
                body = record_bodies.get(record_path(project, name, record))
                if body is None:
                    raise IntegrityError(f"{project}/{name}:v{number} names a missing version record; the remote is damaged")
                data = parse_version(body, self.repo.algorithm, record, project, name)
                version_id = self._copy_version(data, number)
            except (RefstoreError, OSError) as exc:
                self._fail_version(project, name, number, exc)
                continue
            self.records[(project, name, record)] = version_id
            self.tracker.done(f"version:{project}/{name}:v{number}", record, str(version_id))
            self.report.imported.append(f"{self.project(project)}/{name}:v{number}")
            self.step()

    def _fail_version(self, project: str, name: str, number: int, exc: Exception) -> None:
        message = exc.message if isinstance(exc, RefstoreError) else str(exc)
        self.tracker.failed(f"version:{project}/{name}:v{number}", message)
        self.report.failed[f"{project}/{name}:v{number}"] = message
        self.step()

    def _read_each(self, paths: list[str]) -> dict[str, bytes]:
        """Read files; one that is missing is left out (its item fails, the others go on)."""
        if not paths:
            return {}
        try:
            return self.remote.read_many(paths)
        except FileNotFoundError:
            found: dict[str, bytes] = {}
            for path in paths:
                try:
                    found[path] = self.remote.read(path)
                except FileNotFoundError:
                    continue
            return found

    def _copy_version(self, data: VersionData, number: int) -> int:
        """Validate the manifest, copy its objects (verified), then insert the version in one transaction."""
        repo = self.repo
        new_trees = fetch_trees(repo, self.remote, [data.manifest])
        check_totals(repo, new_trees, data, number)
        objects: dict[str, int] = {}
        stack, seen = [data.manifest], set()
        while stack:
            digest = stack.pop()
            if digest in seen:
                continue
            seen.add(digest)
            body = new_trees.get(digest)
            nodes = parse_record(body, repo.algorithm) if body is not None else repo.record(digest)
            for node in nodes:
                if node.type == DIR and node.digest is not None:
                    stack.append(node.digest)
                elif node.type == FILE and node.digest is not None and not repo.cache.has(node.digest):
                    objects[node.digest] = node.size
        project = self.project(data.project)
        with repo.writing():
            download_objects(repo, self.remote, sorted(objects.items()), jobs=JOBS)
            version = CopiedVersion(
                project=project,
                name=data.name,
                type=data.type,
                digest=data.manifest,
                size=data.size,
                file_count=data.files,
                description=data.description,
                metadata=data.metadata,
                created_at=data.created_at,
                run_id=data.run_id,
            )
            with repo.db.transaction():
                return insert_copied_version(repo, version, new_trees, source="the remote")

    # -- aliases -----------------------------------------------------------------
    def aliases(self, moves: list[tuple[str, str, str, int]]) -> None:
        todo = {}
        for project, name, alias, seq in moves:
            if self.tracker.is_done(f"alias:{project}/{name}/{alias}", str(seq)):
                self.report.skipped += 1
                self.step()
            else:
                todo[alias_path(project, name, alias, seq)] = (project, name, alias, seq)
        bodies = self._read_each(sorted(todo))
        for path, (project, name, alias, seq) in sorted(todo.items()):
            item = f"alias:{project}/{name}/{alias}"
            try:
                body = bodies.get(path)
                if body is None:
                    raise IntegrityError(f"alias move {path} could not be read from {self.remote.url}")
                version_id = self.records.get((project, name, parse_alias(body, self.repo.algorithm, path)))
                if version_id is None:
                    raise NotFoundError(f"alias {alias} of {project}/{name} names a version that was not imported")
            except RefstoreError as exc:
                self.tracker.failed(item, exc.message)
                self.report.failed[f"{project}/{name}:{alias}"] = exc.message
                self.step()
                continue
            with self.repo.db.transaction():
                art_id = self.repo.db.scalar("SELECT artifact_id FROM versions WHERE id = ?", (version_id,))
                added = self.repo.db.execute(
                    "INSERT OR IGNORE INTO aliases (artifact_id, alias, version_id) VALUES (?, ?, ?)", (art_id, alias, version_id)
                ).rowcount
                self.tracker.done(item, str(seq), str(version_id))
            if added:
                self.report.imported.append(f"{self.project(project)}/{name}:{alias}")
            else:
                self.report.skipped += 1  # this store has that alias already: an import never moves it
            self.step()

    # -- runs --------------------------------------------------------------------
    def runs(self, winners: list[tuple[str, RunKey]]) -> None:
        todo = {}
        for run_id, key in winners:
            if self.tracker.is_done(f"run:{run_id}", key.digest):
                self.report.skipped += 1
                self.step()
            else:
                todo[run_path(run_id, key)] = (run_id, key)
        bodies = self._read_each(sorted(todo))
        on_remote = {(p, n, d) for (p, n), info in self.listing.artifacts.items() for d in info.records}
        valid: list[tuple[RunData, RunKey, bool]] = []
        for path, (run_id, key) in sorted(todo.items()):
            item = f"run:{run_id}"
            existed = self.tracker.state(item) is not None or self.repo.db.scalar("SELECT 1 FROM runs WHERE id = ?", (run_id,))
            try:
                body = bodies.get(path)
                if body is None:
                    raise IntegrityError(f"run record {path} could not be read from {self.remote.url}")
                run = parse_run(body, self.repo.algorithm, run_id, key)
                if any(i in on_remote and i not in self.records for i in run.inputs):
                    raise NotFoundError(f"run {run_id} used versions that failed to import; retry the import")
            except RefstoreError as exc:
                self._fail_run(item, exc.message)
                continue
            valid.append((run, key, bool(existed)))
        # validated runs go in by batches: one transaction (one sync) per batch, not per run
        for start in range(0, len(valid), RUN_BATCH):
            batch = valid[start : start + RUN_BATCH]
            try:
                with self.repo.db.transaction():
                    apply_runs(self.repo, [run for run, _, _ in batch], dict(self.records), self.mapping)
                    for run, key, _ in batch:
                        self.tracker.done(f"run:{run.id}", key.digest, run.id)
            except RefstoreError as exc:
                for run, _, _ in batch:
                    self._fail_run(f"run:{run.id}", exc.message)
                continue
            for run, _, existed in batch:
                (self.report.updated if existed else self.report.imported).append(f"run {run.id}")
                self.step()

    def _fail_run(self, item: str, message: str) -> None:
        self.tracker.failed(item, message)
        self.report.failed[item] = message
        self.step()
