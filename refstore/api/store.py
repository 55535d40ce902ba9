"""``Store``: an open ``.refstore`` and everything a user does with it.

Services other than the ones ``put`` and ``get`` need are imported inside the
methods that use them: a command pays only for what it runs (``refstore put``
of an unchanged tree is dominated by start-up, and each module costs ms).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from refstore.api.artifact import Artifact, ArtifactVersion
from refstore.core import hashing
from refstore.core.repo import DEFAULT_PROJECT, Repository, init_repository, open_repository
from refstore.core.tree import Change, Entry, build_tree, diff
from refstore.errors import NotFoundError, UsageError
from refstore.services import versions
from refstore.services.ingest import ingest

if TYPE_CHECKING:
    from refstore.api.run import Run
    from refstore.core.statcache import StatKey
    from refstore.services import lineage, maintenance
    from refstore.services.importers.progress import ImportReport
    from refstore.services.sync_common import SyncResult

Progress = Callable[[int, int], None]


class Store:
    """A refstore store. Get one with :func:`refstore.open` or :func:`refstore.init`."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def __repr__(self) -> str:
        return f"<Store {self.repo.dir}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.repo.close()

    @property
    def path(self) -> Path:
        """The ``.refstore`` directory."""
        return self.repo.dir

    @property
    def default_project(self) -> str:
        return self.repo.default_project

    # -- logging -------------------------------------------------------------
    def log_artifact(
        self,
        artifact: Artifact,
        aliases: Sequence[str] = (),
        *,
        run_id: str | None = None,
        progress: Progress | None = None,
    ) -> ArtifactVersion:
        """Record ``artifact`` as a new version, or return the latest if its content is equal."""
        if artifact.is_empty():
            raise UsageError(f"artifact {artifact.name} has no files; add files, a directory or references first")
        try:
            referenced, ref_stat_rows = _resolve_references(self, artifact)  # no lock held
            with self.repo.writing():
                entries, stat_rows = ingest(self.repo, artifact.local_files, progress)
                tree = build_tree([*entries, *artifact.prepared_entries, *referenced], self.repo.algorithm)
                record = versions.commit_version(
                    self.repo,
                    artifact.name,
                    artifact.type,
                    tree,
                    description=artifact.description,
                    metadata=artifact.metadata,
                    aliases=aliases,
                    run_id=run_id,
                    stat_rows=[*stat_rows, *ref_stat_rows],
                )
        finally:
            artifact.cleanup()
        return ArtifactVersion(self, record)

    # -- reading -------------------------------------------------------------
    def artifact(self, spec: str) -> ArtifactVersion:
        """The version ``spec`` names: ``name``, ``name:v3``, ``name:best``, ``name@3f2a91bc``."""
        return ArtifactVersion(self, versions.resolve(self.repo, spec))

    def versions(self, name: str) -> list[ArtifactVersion]:
        """All versions of ``name``, newest first."""
        return [ArtifactVersion(self, r) for r in versions.list_versions(self.repo, name)]

    def artifacts(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every artifact with its type, number of versions and latest version."""
        return versions.list_artifacts(self.repo, project)

    def diff(self, old: str, new: str) -> list[Change]:
        """Added, removed and modified paths from version ``old`` to ``new``."""
        a, b = versions.resolve(self.repo, old), versions.resolve(self.repo, new)
        return list(diff(self.repo.record, a.digest, b.digest))

    # -- aliases -------------------------------------------------------------
    def set_alias(self, spec: str, alias: str) -> ArtifactVersion:
        return ArtifactVersion(self, versions.set_alias(self.repo, spec, alias))

    def remove_alias(self, name: str, alias: str) -> None:
        versions.remove_alias(self.repo, name, alias)

    # -- runs and lineage ----------------------------------------------------
    def run(
        self,
        job_type: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        *,
        project: str | None = None,
        command: str | None = None,
    ) -> Run:
        """Start a run (status ``running``); use it in a ``with`` block so it ends finished or failed.

        The run records the git commit and dirty flag of the working directory
        (when it is in a git repository) and ``command`` (default: ``sys.argv``).
        """
        from refstore.api.run import Run
        from refstore.services import runs

        record = runs.start_run(
            self.repo, job_type=job_type, name=name, project=project, config=config, tags=tags, command=command
        )
        return Run(self, record)

    def get_run(self, run_id: str) -> Run:
        """An existing run by id (or unique prefix)."""
        from refstore.api.run import Run
        from refstore.services import runs

        return Run(self, runs.get_run(self.repo, run_id))

    def runs(
        self,
        filter: Mapping[str, Any] | None = None,
        order: str | Sequence[str] | None = "-created_at",
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Run]:
        """Runs matching a MongoDB-style filter, e.g. ``{"$or": [{"config.lr": 0.01}, {"summary.acc": {"$gt": 0.9}}]}``."""
        from refstore.api.run import Run
        from refstore.services import runs

        return [Run(self, r) for r in runs.list_runs(self.repo, filter, order, limit, offset)]

    def runs_csv(
        self,
        filter: Mapping[str, Any] | None = None,
        order: str | Sequence[str] | None = "-created_at",
        limit: int | None = None,
        offset: int | None = None,
    ) -> str:
        """The matching runs as CSV text (config.* and summary.* flattened into columns)."""
        from refstore.services import export, runs

        return export.to_csv(runs.list_runs(self.repo, filter, order, limit, offset))

    def lineage(self, spec: str, direction: str = "downstream", depth: int | None = None) -> lineage.Graph:
        """Runs and versions upstream or downstream of ``spec`` (a version spec, or ``run:ID``)."""
        from refstore.services import lineage

        return lineage.lineage(self.repo, spec, direction, depth)

    def export_runs_csv(self, path: str | os.PathLike[str], filter: Mapping[str, Any] | None = None) -> int:
        """Write the runs matching ``filter`` to a CSV file (atomically); returns how many."""
        from refstore.services import export, runs

        found = runs.list_runs(self.repo, filter, "created_at")
        target = Path(path)
        temp = target.with_name(f".{target.name}.tmp")
        try:
            temp.write_text(export.to_csv(found), encoding="utf-8")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return len(found)

    def runs_dataframe(self, filter: Mapping[str, Any] | None = None) -> Any:
        """The matching runs as a pandas DataFrame (one row per run, dotted config./summary. columns)."""
        from refstore.services import export, runs

        try:
            import pandas
        except ImportError as exc:
            raise UsageError("runs_dataframe needs pandas; install it with 'pip install pandas'") from exc
        columns, rows = export.flat_rows(runs.list_runs(self.repo, filter, "created_at"))
        return pandas.DataFrame(rows, columns=columns)

    # -- imports -------------------------------------------------------------
    def import_mlflow(
        self,
        tracking_uri: str,
        *,
        experiment: str | None = None,
        project: str | None = None,
        artifacts: bool = True,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Import new and changed MLflow runs (params, metrics, tags, artifacts); the source is only read."""
        from refstore.services.importers.mlflow import import_mlflow

        return import_mlflow(
            self.repo, tracking_uri, experiment=experiment, project=project, artifacts=artifacts, progress=progress
        )

    def import_store(
        self,
        path: str | os.PathLike[str],
        *,
        remap: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> ImportReport:
        """Import what is new in another refstore: a store directory, or a remote (any URL ``add_remote`` takes).

        Projects are renamed by ``remap``; ``options`` go to the remote's fsspec backend
        (no credentials: those come from the environment).
        """
        from refstore.services.importers.refstore_dir import import_store
        from refstore.services.importers.refstore_remote import import_remote, is_remote

        source = os.fspath(path)
        if is_remote(source):
            return import_remote(self.repo, source, options=options, remap=remap, progress=progress)
        if options:
            raise UsageError("backend options apply to remote URLs only, not to a store directory")
        return import_store(self.repo, source, remap=remap, progress=progress)

    # -- remotes -------------------------------------------------------------
    def add_remote(self, name: str, url: str, **options: Any) -> dict[str, Any]:
        """Remember remote ``name`` at ``url`` (any fsspec URL or a directory).

        ``options`` go to the fsspec backend (e.g. ``client_kwargs``); anything that
        looks like a credential is refused - credentials come from the environment.
        """
        from refstore.services import remotes

        return remotes.add_remote(self.repo, name, url, options).as_dict()

    def remotes(self) -> list[dict[str, Any]]:
        """The configured remotes: name, url and options."""
        from refstore.services import remotes

        return [remote.as_dict() for remote in remotes.list_remotes(self.repo)]

    def remove_remote(self, name: str) -> None:
        from refstore.services import remotes

        remotes.remove_remote(self.repo, name)

    def push(
        self, remote: str | None = None, specs: Sequence[str] = (), jobs: int = 8, progress: Progress | None = None
    ) -> SyncResult:
        """Send versions (all, or ``NAME``/``NAME:vN`` and the ones before it), their objects, aliases and runs.

        ``result.renumbered`` lists versions that took a later number because another
        store pushed first; ``result.conflicts`` lists alias moves that were not applied;
        ``result.runs`` the runs whose new state was sent (those that used or logged a pushed version).
        """
        from refstore.services.push import push

        return push(self.repo, remote, specs, jobs=_jobs(jobs), progress=progress)

    def pull(
        self,
        remote: str | None = None,
        specs: Sequence[str] = (),
        objects: bool = False,
        jobs: int = 8,
        progress: Progress | None = None,
    ) -> SyncResult:
        """Merge the remote's versions, aliases and runs; with ``objects=True`` also fetch their bytes."""
        from refstore.services.pull import pull

        return pull(self.repo, remote, specs, objects=objects, jobs=_jobs(jobs), progress=progress)

    def delete(self, spec: str, *, delete_aliases: bool = False) -> None:
        """Delete a version; its bytes are freed by the next :meth:`gc`."""
        versions.delete_version(self.repo, spec, delete_aliases=delete_aliases)

    # -- maintenance ---------------------------------------------------------
    def verify(self, progress: Progress | None = None, *, repair: bool = False, jobs: int = 8) -> maintenance.VerifyReport:
        """Re-hash every cached object and manifest record.

        Objects absent from the cache are not problems when a remote holds them
        (versions pushed to or pulled from it): a lazily pulled clone lacks them by design.
        With ``repair=True``, corrupt objects are removed and corrupt or missing
        ones refetched (verified) from the configured remotes or, for reference
        bytes, from an unchanged reference source; corrupt manifest records are
        replaced by a remote's copy that hashes to their key (then everything is
        checked again, since walks beneath them could not run); the report then lists only what
        is still broken, and ``report.repair`` says what was fixed, from where.
        """
        from refstore.services import maintenance, remotes
        from refstore.services.repair import RepairReport, repair_objects, repair_records

        report = maintenance.verify_store(self.repo, progress, missing_ok=remotes.objects_on_remotes(self.repo))
        if not repair:
            return report
        fixed = RepairReport()
        if report.broken_records:
            repair_records(self.repo, report.broken_records, fixed)
            if fixed.records_repaired:  # the walks beneath them could not run before: check again
                report = maintenance.verify_store(self.repo, progress, missing_ok=remotes.objects_on_remotes(self.repo))
        return report.after_repair(repair_objects(self.repo, report.broken_objects, jobs=_jobs(jobs), report=fixed))

    def gc(self, dry_run: bool = False) -> maintenance.GcReport:
        """Delete objects and records that no version needs."""
        from refstore.services import maintenance

        return maintenance.collect_garbage(self.repo, dry_run=dry_run)


def _jobs(jobs: int) -> int:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= 256:
        raise UsageError(f"jobs must be a number from 1 to 256, not {jobs!r}")
    return jobs


def clone(url: str, path: str | os.PathLike[str] | None = None, *, remote: str = "origin", **options: Any) -> Store:
    """Create a store in ``path`` whose remote ``origin`` is ``url``, and pull its metadata.

    Objects are fetched on demand (``get``/``download``) or with ``pull(objects=True)``.
    Nothing is left behind when the clone fails.
    """
    import shutil

    from refstore.core.location import new_store_dir
    from refstore.core.remotefs import RemoteFS
    from refstore.services import remotes
    from refstore.services.remote_layout import MARKER, parse_marker

    target = new_store_dir(Path(path) if path is not None else None)
    if target.exists():
        raise UsageError(f"{target} already exists; clone into a new directory")
    remotes.check_options(dict(options))
    fs = RemoteFS(url, options)
    try:
        algorithm = parse_marker(fs.read(MARKER), fs.url)
    except FileNotFoundError:
        raise NotFoundError(f"{fs.url} is not a refstore remote (no {MARKER}); push to it first") from None
    created_parent = not target.parent.exists()
    store = init(target.parent, algorithm=algorithm)
    try:
        store.add_remote(remote, url, **options)
        store.pull(remote)
    except BaseException:
        store.close()
        shutil.rmtree(target, ignore_errors=True)
        if created_parent:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return store


def open(path: str | os.PathLike[str] | None = None) -> Store:
    """Open the store for ``path``: its ``.refstore`` or the nearest one above it."""
    return Store(open_repository(Path(path) if path is not None else None))


def init(
    path: str | os.PathLike[str] | None = None,
    *,
    algorithm: str = hashing.DEFAULT_ALGORITHM,
    project: str = DEFAULT_PROJECT,
) -> Store:
    """Create a store in ``path`` (default: the working directory), or open the one there."""
    return Store(init_repository(Path(path) if path is not None else None, algorithm=algorithm, project=project))


def _resolve_references(store: Store, artifact: Artifact) -> tuple[list[Entry], list[tuple[str, StatKey, str]]]:
    """Entries of the artifact's reference requests (the references service loads only when there are some)."""
    if not artifact.reference_requests:
        return [], []
    from refstore.services import references

    return references.resolve(store.repo, artifact.reference_requests)
