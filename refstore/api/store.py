"""``Store``: an open ``.refstore`` and everything a user does with it."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from refstore.api.artifact import Artifact, ArtifactVersion
from refstore.core import hashing
from refstore.core.repo import DEFAULT_PROJECT, Repository, init_repository, open_repository
from refstore.core.tree import Change, build_tree, diff
from refstore.errors import UsageError
from refstore.services import maintenance, references, versions
from refstore.services.ingest import ingest

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
            referenced, ref_stat_rows = references.resolve(self.repo, artifact.reference_requests)  # no lock held
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

    def delete(self, spec: str, *, delete_aliases: bool = False) -> None:
        """Delete a version; its bytes are freed by the next :meth:`gc`."""
        versions.delete_version(self.repo, spec, delete_aliases=delete_aliases)

    # -- maintenance ---------------------------------------------------------
    def verify(self, progress: Progress | None = None) -> maintenance.VerifyReport:
        """Re-hash every cached object and manifest record."""
        return maintenance.verify_store(self.repo, progress)

    def gc(self, dry_run: bool = False) -> maintenance.GcReport:
        """Delete objects and records that no version needs."""
        return maintenance.collect_garbage(self.repo, dry_run=dry_run)


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
