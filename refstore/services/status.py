"""How a tracked path on disk differs from the version it is pinned to.

Fast by construction: the pinned manifest is walked from the database (no
file bytes), the directory is scanned with ``os.scandir`` (one stat per file),
and a file is read only when its stat key is not in the stat cache *and* its
size equals the pinned size. A file whose bytes had to be hashed and turned
out equal is remembered in the stat cache (when outside the racy window), so
the next status does not read it again - as ``git status`` refreshes its index.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstore.core import hashing
from refstore.core.location import STORE_DIRNAME
from refstore.core.repo import Repository
from refstore.core.statcache import StatKey, stat_key
from refstore.core.tree import Entry, walk
from refstore.errors import IntegrityError, NotFoundError, RefstoreError
from refstore.services.gitpin import Pin
from refstore.services.ingest import WORKERS

log = logging.getLogger(__name__)
SKIP_NAMES = frozenset({STORE_DIRNAME})  # the same rule as ingest.scan_dir, so track and status agree

CLEAN, MODIFIED, MISSING, UNKNOWN = "clean", "modified", "missing", "unknown"


@dataclass(frozen=True)
class FileChange:
    """One file that differs: ``added`` (on disk, not pinned), ``modified``, or ``removed`` (pinned, not on disk)."""

    status: str
    path: str  # relative to the tracked path
    digest: str | None = None  # digest of the bytes on disk, when it was computed


@dataclass
class PathStatus:
    """The state of one tracked path: clean, modified, missing, or unknown (pinned version not in this store)."""

    pin: Pin
    state: str
    changes: list[FileChange] = field(default_factory=list)
    detail: str = ""
    hashed: int = 0  # files whose bytes had to be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.pin.display,
            "artifact": self.pin.artifact,
            "version": self.pin.version,
            "digest": self.pin.digest,
            "state": self.state,
            "detail": self.detail,
            "changes": [{"status": c.status, "path": c.path} for c in self.changes],
        }


@dataclass(frozen=True)
class _OnDisk:
    path: str  # relative to the checkout base
    source: str  # absolute
    key: StatKey


def checkout_base(root: Path, pin: Pin) -> Path:
    """The directory the pinned manifest's paths are relative to."""
    target = Path(os.path.abspath(root / pin.path))
    return target if pin.is_dir else target.parent


def pinned_entries(repo: Repository, pin: Pin) -> dict[str, Entry]:
    """The pinned manifest as ``{path: entry}``; NotFoundError when its records are not in this store."""
    entries = {entry.path: entry for entry in walk(repo.record, pin.digest)}
    if not pin.is_dir:
        name = pin.path.rsplit("/", 1)[-1]
        if set(entries) != {name}:
            raise IntegrityError(
                f"{pin.display} is pinned as a file but {pin.spec} holds {len(entries)} entries; "
                f"re-run 'refstore track {pin.display}'"
            )
    return entries


def scan(root: Path, pin: Pin) -> tuple[list[_OnDisk], str]:
    """Files on disk for ``pin`` (paths relative to its base) and a note when the path has the wrong type."""
    base = checkout_base(root, pin)
    if not pin.is_dir:
        target = base / pin.path.rsplit("/", 1)[-1]
        try:
            st = os.stat(target)
        except (FileNotFoundError, NotADirectoryError):
            return [], ""
        if not stat.S_ISREG(st.st_mode):
            return [], f"{pin.display} is not a regular file"
        return [_OnDisk(target.name, str(target), stat_key(st))], ""
    if not base.exists():
        return [], ""
    if not base.is_dir() or base.is_symlink():
        return [], f"{pin.display} is not a directory"
    found: list[_OnDisk] = []
    stack = [(str(base), "")]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as items:
            for item in items:
                if item.name in SKIP_NAMES:
                    continue
                if item.is_dir(follow_symlinks=False):
                    stack.append((item.path, f"{rel}{item.name}/"))
                elif item.is_file(follow_symlinks=True):
                    found.append(_OnDisk(rel + item.name, item.path, stat_key(item.stat(follow_symlinks=True))))
    return found, ""


def compare(repo: Repository, root: Path, pin: Pin, *, want_digests: bool = False, remember: bool = True) -> PathStatus:
    """Compare the tracked path with its pin.

    ``want_digests`` also hashes files that differ by size or are new, so a
    checkout can tell whether their bytes are already safe in the cache.
    """
    try:
        expected = pinned_entries(repo, pin)
    except NotFoundError as exc:
        log.debug("pin %s: %s", pin.display, exc.message)
        return PathStatus(
            pin,
            UNKNOWN,
            detail=f"{pin.label} is not in this store; 'refstore checkout {pin.display}' pulls it when a remote is configured",
        )
    started_ns = time.time_ns()
    on_disk, note = scan(root, pin)
    base = checkout_base(root, pin)
    known = (
        repo.stat_cache.load(str(base) + os.sep) if pin.is_dir else repo.stat_cache.load(str(base / pin.path.rsplit("/", 1)[-1]))
    )
    changes: list[FileChange] = []
    to_hash: list[tuple[_OnDisk, Entry | None]] = []
    for item in on_disk:
        entry = expected.pop(item.path, None)
        cached = known.get(item.source)
        digest = cached[1] if cached is not None and cached[0] == item.key else None
        if entry is None:
            if digest is None and want_digests:
                to_hash.append((item, None))
            else:
                changes.append(FileChange("added", item.path, digest))
        elif digest is not None:
            if digest != entry.digest:
                changes.append(FileChange("modified", item.path, digest))
        elif item.key[1] != entry.size:
            if want_digests:
                to_hash.append((item, entry))
            else:
                changes.append(FileChange("modified", item.path))
        elif entry.digest is not None:
            to_hash.append((item, entry))
    remembered: list[tuple[str, StatKey, str]] = []
    if to_hash:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            digests = list(pool.map(lambda pair: _digest(pair[0].source, repo.algorithm), to_hash))
        for (item, entry), digest in zip(to_hash, digests, strict=True):
            if digest is None:  # vanished while we looked: it is removed
                if entry is not None:
                    changes.append(FileChange("removed", item.path))
                continue
            if entry is None:
                changes.append(FileChange("added", item.path, digest))
            elif digest != entry.digest:
                changes.append(FileChange("modified", item.path, digest))
            elif repo.stat_cache.is_safe(item.key, started_ns):
                remembered.append((item.source, item.key, digest))
    changes.extend(FileChange("removed", path) for path in expected)
    changes.sort(key=lambda c: c.path)
    if remember and remembered:
        _remember(repo, remembered)
    state = MISSING if not on_disk and not note else MODIFIED if changes or note else CLEAN
    return PathStatus(pin, state, changes, note, hashed=len(to_hash))


def _digest(path: str, algorithm: str) -> str | None:
    try:
        return hashing.hash_file(Path(path), algorithm)[0]
    except FileNotFoundError:
        return None


def _remember(repo: Repository, rows: list[tuple[str, StatKey, str]]) -> None:
    """Best effort: a busy database only means the next status hashes these files again."""
    try:
        with repo.db.transaction():
            repo.stat_cache.record(rows)
    except (RefstoreError, sqlite3.OperationalError) as exc:
        log.debug("could not update the stat cache: %s", exc)
