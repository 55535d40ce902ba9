"""Turning local files into entries: scan, look up the stat cache, hash, stage.

Only files whose (inode, size, mtime_ns) changed since they were last hashed
are read. New bytes are staged in the cache's temp directory on several
threads, flushed with one sync, and then published under their digests. The
caller commits the version only after :func:`ingest` returns, so a version
row never names an object that is not whole in the cache.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from refstore.core.objects import durable_sync
from refstore.core.paths import normalize
from refstore.core.repo import Repository
from refstore.core.statcache import StatKey, stat_key
from refstore.core.tree import Entry
from refstore.errors import RefstoreError, UsageError

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (files done, bytes done)
WORKERS = min(8, (os.cpu_count() or 2) * 2)


@dataclass(frozen=True)
class LocalFile:
    """A file to add: its path inside the artifact and on disk."""

    path: str
    source: str  # absolute path


def scan_file(source: str | os.PathLike[str], name: str | None = None) -> LocalFile:
    """One local file, validated now so errors surface at add time."""
    absolute = os.path.abspath(source)
    try:
        st = os.stat(absolute)
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file; check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{source} is a directory; use add_dir (or pass it to 'refstore put' as a directory)")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{source} is not a regular file")
    return LocalFile(normalize(name if name is not None else os.path.basename(absolute)), absolute)


def scan_dir(source: str | os.PathLike[str], prefix: str | None = None) -> list[LocalFile]:
    """Every regular file under ``source`` (file symlinks followed, directory symlinks not)."""
    root = os.path.abspath(source)
    if not os.path.exists(root):
        raise UsageError(f"{source}: no such directory; check the path")
    if not os.path.isdir(root):
        raise UsageError(f"{source} is a file; use add_file (or pass it to 'refstore put' as a file)")
    base = normalize(prefix) + "/" if prefix not in (None, "", ".") else ""
    found: list[LocalFile] = []
    stack = [(root, base)]
    while stack:
        directory, rel = stack.pop()
        try:
            items = list(os.scandir(directory))
        except PermissionError as exc:
            raise UsageError(f"{directory}: permission denied; fix its permissions or leave it out") from exc
        for item in items:
            if item.name == ".refstore":
                continue
            if item.is_dir(follow_symlinks=False):
                stack.append((item.path, f"{rel}{item.name}/"))
            elif item.is_file(follow_symlinks=True):
                found.append(LocalFile(normalize(rel + item.name), item.path))
            elif item.is_symlink() and item.is_dir():
                log.warning("skipping symlinked directory %s", item.path)
    if not found:
        raise UsageError(f"{source} contains no files; an artifact needs at least one file")
    return found


@dataclass
class _Hashed:
    file: LocalFile
    key: StatKey
    digest: str
    size: int
    temp: Path | None  # staged bytes, when the object was not yet cached


def _hash_one(repo: Repository, file: LocalFile, key: StatKey) -> _Hashed:
    with open(file.source, "rb") as handle:
        digest, size, temp = repo.cache.stage_stream(handle)
    try:
        after = os.stat(file.source)
    except FileNotFoundError:
        after = None
    if after is None or stat_key(after) != key or size != key[1]:
        temp.unlink(missing_ok=True)
        raise RefstoreError(f"{file.source} changed while it was being read; retry when it is no longer being written")
    if repo.cache.has_fast(digest):
        temp.unlink(missing_ok=True)
        return _Hashed(file, key, digest, size, None)
    return _Hashed(file, key, digest, size, temp)


def ingest(
    repo: Repository, files: Iterable[LocalFile], progress: Progress | None = None
) -> tuple[list[Entry], list[tuple[str, StatKey, str]]]:
    """Store the bytes of ``files`` in the cache; return their entries and new stat-cache rows.

    Must run under ``repo.writing()`` so gc cannot remove what is staged here.
    """
    files = list(files)
    started_ns = time.time_ns()
    prefix = os.path.commonpath([f.source for f in files]) if files else ""
    known = repo.stat_cache.load(prefix) if files else {}
    results: list[_Hashed] = []
    to_hash: list[tuple[LocalFile, StatKey]] = []
    done_files = done_bytes = 0
    # Stat-cache hits are resolved here: a thread hand-off per file would cost more than the lookup.
    for file in files:
        try:
            key = stat_key(os.stat(file.source))
        except FileNotFoundError:
            raise UsageError(f"{file.source} disappeared while adding it; retry") from None
        cached = known.get(file.source)
        if cached is not None and cached[0] == key and repo.cache.has_fast(cached[1]):
            results.append(_Hashed(file, key, cached[1], key[1], None))
            done_files += 1
            done_bytes += key[1]
        else:
            to_hash.append((file, key))
    if progress is not None and done_files:
        progress(done_files, done_bytes)
    try:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for item in pool.map(lambda pair: _hash_one(repo, *pair), to_hash):
                results.append(item)
                done_files += 1
                done_bytes += item.size
                if progress is not None:
                    progress(done_files, done_bytes)
    except BaseException:
        for item in results:
            if item.temp is not None:
                item.temp.unlink(missing_ok=True)
        raise
    staged = [item for item in results if item.temp is not None]
    if staged:
        durable_sync()
        for item in staged:
            assert item.temp is not None
            repo.cache.publish(item.temp, item.digest)
        durable_sync()
    entries = [Entry(item.file.path, item.size, item.digest) for item in results]
    new_rows = [
        (item.file.source, item.key, item.digest)
        for item in results
        if repo.stat_cache.is_safe(item.key, started_ns) and known.get(item.file.source) != (item.key, item.digest)
    ]
    return entries, new_rows
