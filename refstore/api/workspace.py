"""``Workspace``: a working tree whose data directories are pinned in ``refstore.lock``.

The workspace root is the top of the git working tree (a linked worktree's
own top), or the directory holding ``.refstore`` outside git. Paths given by
the user are relative to the current directory, so commands work from any
subdirectory; the lock stores them relative to the root.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstore.api.artifact import Artifact, ArtifactVersion
from refstore.api.store import Store
from refstore.core.paths import safe_join
from refstore.core.repo import Repository
from refstore.errors import ConflictError, NotFoundError, RefstoreError, UsageError
from refstore.services import checkout, versions
from refstore.services.gitpin import ATTRIBUTES_LINE, LOCK_NAME, LockFile, Pin, check_lock_path, ensure_line, ignore_line
from refstore.services.gitutil import ls_files, worktree_root
from refstore.services.status import CLEAN, UNKNOWN, PathStatus, checkout_base, compare

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass
class TrackResult:
    pin: Pin
    version: ArtifactVersion
    previous: Pin | None
    ignored: bool  # .gitignore gained a line
    committed_files: list[str] = field(default_factory=list)  # files git already tracks under the path


@dataclass
class CheckoutOutcome:
    pin: Pin
    action: str  # "unchanged" | "updated"
    written: int = 0
    removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.pin.display,
            "version": self.pin.label,
            "action": self.action,
            "written": self.written,
            "removed": self.removed,
        }


def remote_names(store: Store) -> list[str]:
    """Names of the store's remotes, when this refstore has remotes (an optional feature)."""
    if not hasattr(store, "remotes"):
        return []
    names: list[str] = []
    for item in store.remotes():
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", item)
        names.append(str(name))
    return names


def push_spec(repo: Repository, pin: Pin) -> str:
    """The ``project/name:vN`` remotes push: this store's number for the pinned content (numbers are per store)."""
    record = versions.resolve(repo, pin.spec)
    return f"{record.project}/{record.name}:v{record.number}"


class Workspace:
    """Track directories and files of a working tree, and keep them matching ``refstore.lock``."""

    def __init__(self, store: Store, start: Path | None = None) -> None:
        self.store = store
        git_root = worktree_root(start if start is not None else Path.cwd())
        self.in_git = git_root is not None
        self.root = Path(os.path.abspath(git_root or store.path.parent))
        self.lock = LockFile(self.root)

    @property
    def repo(self) -> Repository:
        return self.store.repo

    # -- paths -------------------------------------------------------------
    def relative(self, path: str | os.PathLike[str]) -> str:
        """A user's path (relative to the cwd) as a path relative to the workspace root."""
        absolute = Path(os.path.abspath(path))
        # git reports the root with symlinks resolved; the cwd may reach it through one
        resolved = Path(os.path.realpath(absolute.parent), absolute.name)
        for candidate, root in ((absolute, self.root), (resolved, Path(os.path.realpath(self.root)))):
            try:
                rel = candidate.relative_to(root).as_posix()
                break
            except ValueError:
                continue
        else:
            raise UsageError(f"{path} is outside the workspace {self.root}; track paths inside it")
        if rel in ("", "."):
            raise UsageError(f"cannot track the workspace root {self.root} itself; track a directory inside it")
        first = rel.split("/", 1)[0]
        if first in (".git", ".refstore"):
            raise UsageError(f"{path} is inside {first}/; track your data, not refstore's or git's own files")
        return check_lock_path(rel)[0]

    def pins(self) -> list[Pin]:
        return self.lock.read()

    def select(self, paths: Iterable[str | os.PathLike[str]] = (), pins: Sequence[Pin] | None = None) -> list[Pin]:
        """The pins named by ``paths`` (all of them when empty)."""
        pins = list(self.pins() if pins is None else pins)
        wanted = [self.relative(p) for p in paths]
        if not wanted:
            return pins
        by_path = {pin.path: pin for pin in pins}
        missing = [w for w in wanted if w not in by_path]
        if missing:
            tracked = ", ".join(p.display for p in pins) or "nothing yet"
            raise UsageError(f"{missing[0]} is not tracked in {LOCK_NAME} (tracked: {tracked}); use 'refstore track' first")
        return [by_path[w] for w in dict.fromkeys(wanted)]

    # -- track ---------------------------------------------------------------
    def track(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        *,
        aliases: Sequence[str] = (),
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> TrackResult:
        """Record ``path`` as the next version of an artifact and pin that version in the lock."""
        rel = self.relative(path)
        pins = self.pins()
        previous = next((p for p in pins if p.path == rel), None)
        self._check_overlap(rel, pins)
        target = self.root / rel
        if not target.exists():
            raise UsageError(f"{path}: no such file or directory; check the path")
        is_dir = target.is_dir()
        if name is None:
            if previous is None:
                raise UsageError(f"{rel} is not tracked yet; give the artifact a name with --name")
            name = previous.artifact
        if type is None:
            type = self._existing_type(name) or "dataset"
        artifact = Artifact(name, type=type, description=description, metadata=metadata)
        if is_dir:
            artifact.add_dir(target)
        else:
            artifact.add_file(target, name=target.name)
        version = self.store.log_artifact(artifact, aliases=aliases, progress=progress)
        pin = Pin(rel, is_dir, f"{version.project}/{version.name}", version.version, version.digest)
        ignored = False
        with self.lock.editing(self.store.path):  # another track may have pinned a path meanwhile
            current = self.pins()
            self._check_overlap(rel, current)
            self.lock.write([*(p for p in current if p.path != rel), pin])
            if self.in_git:
                ignored = ensure_line(self.root / ".gitignore", ignore_line(pin))
                ensure_line(self.root / ".gitattributes", ATTRIBUTES_LINE)
        committed = ls_files(self.root, pin.display) if self.in_git else []
        return TrackResult(pin, version, previous, ignored, committed)

    @staticmethod
    def _check_overlap(rel: str, pins: Sequence[Pin]) -> None:
        for other in pins:
            if other.path != rel and (rel.startswith(other.path + "/") or other.path.startswith(rel + "/")):
                raise UsageError(f"{rel} overlaps tracked {other.display}; track one or the other")

    def _existing_type(self, name: str) -> str | None:
        try:
            return self.store.artifact(name).type
        except NotFoundError:
            return None

    def untrack(self, path: str | os.PathLike[str]) -> Pin:
        """Drop a path from the lock (its data and versions stay)."""
        pin = self.select([path])[0]
        with self.lock.editing(self.store.path):
            self.lock.write(p for p in self.pins() if p.path != pin.path)
        return pin

    # -- status --------------------------------------------------------------
    def status(self, paths: Iterable[str | os.PathLike[str]] = (), pins: Sequence[Pin] | None = None) -> list[PathStatus]:
        """How each tracked path differs from its pin; reads only files whose stat changed."""
        return [compare(self.repo, self.root, pin) for pin in self.select(paths, pins)]

    # -- checkout ------------------------------------------------------------
    def checkout(
        self,
        paths: Iterable[str | os.PathLike[str]] = (),
        *,
        force: bool = False,
        link: str = "copy",
        pins: Sequence[Pin] | None = None,
    ) -> list[CheckoutOutcome]:
        """Make tracked paths match the lock. Refuses to drop bytes the store does not hold unless ``force``."""
        return [self.checkout_pin(pin, force=force, link=link) for pin in self.select(paths, pins)]

    def checkout_pin(self, pin: Pin, *, force: bool = False, link: str = "copy") -> CheckoutOutcome:
        state = compare(self.repo, self.root, pin, want_digests=True)
        if state.state == UNKNOWN and self.fetch_pin(pin):
            state = compare(self.repo, self.root, pin, want_digests=True)
        if state.state == UNKNOWN:
            raise NotFoundError(
                f"{pin.display}: pinned {pin.label} is not in this store; pull it from a remote "
                f"('refstore pull'), or record the data again with 'refstore track {pin.display}'"
            )
        if state.state == CLEAN:
            return CheckoutOutcome(pin, "unchanged")
        base = checkout_base(self.root, pin)
        if state.detail:
            if not force:
                raise ConflictError(f"{state.detail}; move it away, or rerun with --force to replace it")
            obstacle = self.root / pin.path
            if obstacle.is_dir() and not obstacle.is_symlink():
                raise ConflictError(f"{state.detail}; it is a directory, so refstore will not delete it: move it away")
            obstacle.unlink()
        unsafe = [c for c in state.changes if c.status != "removed" and not (c.digest and self.repo.cache.has(c.digest))]
        if unsafe and not force:
            sample = ", ".join(f"{c.status} {c.path}" for c in unsafe[:3])
            more = f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else ""
            raise ConflictError(
                f"{pin.display} has changes no version records ({sample}{more}); record them with "
                f"'refstore track {pin.display}', or discard them with 'refstore checkout --force {pin.display}'"
            )
        record = versions.resolve(self.repo, pin.spec)
        removed = 0
        for change in state.changes:
            if change.status == "added":
                safe_join(base, change.path).unlink(missing_ok=True)
                removed += 1
        if removed:
            _prune_empty_dirs(base)
        wanted = {c.path for c in state.changes if c.status in ("modified", "removed")}
        written = 0
        if wanted:
            result = checkout.download(self.repo, record, base, link=link, only=wanted)
            written = result.written
        return CheckoutOutcome(pin, "updated", written, removed)

    def fetch_pin(self, pin: Pin) -> bool:
        """Try each remote (when this refstore has remotes) for a pinned version missing here.

        Remotes pull by artifact name (metadata; bytes come on download through
        the remote's fetcher), so pull the artifact and check the pinned digest arrived.
        """
        pull: Callable[..., Any] | None = getattr(self.store, "pull", None)
        if pull is None:
            return False
        for remote in remote_names(self.store):
            try:
                pull(remote, [pin.artifact])
            except RefstoreError as exc:
                log.warning("could not pull %s from remote %s: %s", pin.artifact, remote, exc)
                continue
            if self.repo.db.scalar("SELECT 1 FROM trees WHERE digest = ?", (pin.digest,)) is not None:
                return True
        return False


def _prune_empty_dirs(base: Path) -> None:
    """Remove directories left empty under ``base`` (never ``base`` itself, never through symlinks)."""
    for directory, _, _ in os.walk(base, topdown=False):
        if Path(directory) != base and not os.listdir(directory):
            os.rmdir(directory)


def open_workspace(path: str | os.PathLike[str] | None = None) -> Workspace:
    """The workspace for ``path`` (default cwd) and the store it uses."""
    import refstore

    store = refstore.open(path)
    return Workspace(store, Path(path) if path is not None else None)
