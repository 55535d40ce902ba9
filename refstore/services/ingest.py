"""Turning local files into entries: scan, look up the stat cache, hash, stage.

Only files whose (inode, size, mtime_ns) changed since they were last hashed
are read. New bytes are staged on several threads, in batches of many small
files (one task per file would cost more in hand-offs than the work itself),
flushed with one sync, and then published under their digests. The caller
commits the version only after :func:`ingest` returns, so a version row never
names an object that is not whole in the cache.

Hot loops here run once per file of datasets with a million files, so they
use plain tuples, avoid re-validating names that ``os.scandir`` already
guarantees to be single path components, and ask the object cache about
stat-cache hits in bulk rather than with one ``stat`` per object.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from refstore.core import hashing
from refstore.core.objects import SYNC_EACH_UP_TO, durable_sync, fsync_file
from refstore.core.paths import MAX_PATH_LENGTH, normalize
from refstore.core.repo import Repository
from refstore.core.statcache import StatKey
from refstore.core.tree import Entry
from refstore.errors import RefstoreError, UsageError

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (files done, bytes done)
WORKERS = min(8, os.cpu_count() or 2)  # more threads than cores only fight over the GIL (2 vs 4: 15k vs 290k futex calls)
BATCH_FILES = 128  # small files per worker task
BATCH_BYTES = 16 << 20  # ... or fewer when they add up to this much
LARGE_FSYNC = 64 << 20  # objects at least this large are flushed by the worker that staged them
PUBLISH_EVERY = 4096  # staged objects flushed and published together, while later batches are staged


class LocalFile(NamedTuple):
    """A file to add: its path inside the artifact and on disk (absolute)."""

    path: str
    source: str


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


def _needs_normalize(path: str) -> bool:
    """False when ``path`` built from scandir names is already a clean manifest path.

    Names from ``os.scandir`` are single components (no ``/``, no NUL, never
    ``.`` or ``..``); only a backslash, a drive-like colon, excessive length or
    Windows rules can make :func:`normalize` change or refuse them.
    """
    return "\\" in path or ":" in path or len(path) > MAX_PATH_LENGTH or os.name == "nt"


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
            items = os.scandir(directory)
        except PermissionError as exc:
            raise UsageError(f"{directory}: permission denied; fix its permissions or leave it out") from exc
        with items:
            for item in items:
                name = item.name
                if name == ".refstore":
                    continue
                if item.is_dir(follow_symlinks=False):
                    stack.append((item.path, f"{rel}{name}/"))
                elif item.is_file(follow_symlinks=True):
                    path = rel + name
                    found.append(LocalFile(normalize(path) if _needs_normalize(path) else path, item.path))
                elif item.is_symlink() and item.is_dir():
                    log.warning("skipping symlinked directory %s", item.path)
    if not found:
        raise UsageError(f"{source} contains no files; an artifact needs at least one file")
    return found


class _Hashed(NamedTuple):
    file: LocalFile
    key: StatKey
    digest: str
    size: int
    temp: str | None  # staged bytes (a str: a million Path objects cost ~300 MB more)


class _Cancelled(Exception):
    """Another batch failed; stop early."""


def _hash_one(repo: Repository, file: LocalFile, key: StatKey) -> _Hashed:
    if key[1] < hashing.CHUNK:  # most files: few syscalls, no file object
        small = repo.cache.stage_small_file(file.source, key[1])
        if small is not None:
            digest, temp_path, after = small
            if (after.st_ino, after.st_size, after.st_mtime_ns) != key:
                _unlink(temp_path)
                raise RefstoreError(f"{file.source} changed while it was being read; retry when it is no longer being written")
            return _Hashed(file, key, digest, key[1], temp_path)
    with open(file.source, "rb") as handle:
        digest, size, temp = repo.cache.stage_stream(handle)
        after = os.fstat(handle.fileno())  # same inode we read; cheaper than a path lookup
    if (after.st_ino, after.st_size, after.st_mtime_ns) != key or size != key[1]:
        temp.unlink(missing_ok=True)
        raise RefstoreError(f"{file.source} changed while it was being read; retry when it is no longer being written")
    if size >= LARGE_FSYNC:
        # Flush a large object here, on the worker, while other files are still being
        # copied: the disk writes overlap the copying instead of all waiting for the
        # publish step (which then finds it clean).
        fsync_file(temp)
    return _Hashed(file, key, digest, key[1], str(temp))


def _batches(items: list[tuple[LocalFile, StatKey]]) -> list[list[tuple[LocalFile, StatKey]]]:
    """Group files into worker tasks: many small files, or one large file, per task."""
    batches: list[list[tuple[LocalFile, StatKey]]] = []
    current: list[tuple[LocalFile, StatKey]] = []
    weight = 0
    for item in items:
        current.append(item)
        weight += item[1][1]
        if len(current) >= BATCH_FILES or weight >= BATCH_BYTES:
            batches.append(current)
            current, weight = [], 0
    if current:
        batches.append(current)
    return batches


def _hash_all(repo: Repository, to_hash: list[tuple[LocalFile, StatKey]], on_done: Callable[[list[_Hashed]], None]) -> None:
    """Hash and stage ``to_hash`` on worker threads, handing each finished batch to ``on_done``.

    Batches handed over are the caller's to publish or clean up; on any failure
    the temp files of batches not handed over are removed here and the error raised.
    """
    stop = threading.Event()

    def run(batch: list[tuple[LocalFile, StatKey]]) -> tuple[list[_Hashed], BaseException | None]:
        done: list[_Hashed] = []
        try:
            for file, key in batch:
                if stop.is_set():
                    raise _Cancelled
                done.append(_hash_one(repo, file, key))
        except BaseException as exc:  # handed to the caller, which cleans up every batch
            stop.set()
            return done, exc
        return done, None

    kept: list[_Hashed] = []  # staged by batches that were not handed over
    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for done, exc in pool.map(run, _batches(to_hash)):
                if exc is not None and (failure is None or isinstance(failure, _Cancelled)):
                    failure = exc
                if failure is None:
                    on_done(done)
                else:
                    kept.extend(done)
    except BaseException as exc:
        stop.set()
        failure = exc
    if failure is not None:
        for item in kept:
            if item.temp is not None:
                _unlink(item.temp)
        raise failure


def ingest(
    repo: Repository, files: Iterable[LocalFile], progress: Progress | None = None
) -> tuple[list[Entry], list[tuple[str, StatKey, str]]]:
    """Store the bytes of ``files`` in the cache; return their entries and new stat-cache rows.

    Must run under ``repo.writing()`` so gc cannot remove what is staged here.
    """
    files = list(files)
    if not files:
        return [], []
    started_ns = time.time_ns()
    # A character prefix is enough for the range query (and min/max is far cheaper than commonpath).
    sources = [f.source for f in files]
    known = repo.stat_cache.load_rows(os.path.commonprefix([min(sources), max(sources)]))  # noqa: RUF071
    # Hits become entries at once and keep no stat key: at a million files every
    # per-file object counts (peak memory is a target, see docs/benchmarks.md).
    entries: list[Entry] = []
    hit_files: list[LocalFile] = []
    to_hash: list[tuple[LocalFile, StatKey]] = []
    lookup, stat_path = known.get, os.stat
    # Stat-cache hits are resolved here: a thread hand-off per file would cost more than the lookup.
    for file in files:
        try:
            st = stat_path(file.source)
        except FileNotFoundError:
            raise UsageError(f"{file.source} disappeared while adding it; retry") from None
        cached = lookup(file.source)  # (path, inode, size, mtime_ns, digest)
        if cached is not None and cached[1] == st.st_ino and cached[3] == st.st_mtime_ns and cached[2] == st.st_size:
            entries.append(Entry(file.path, st.st_size, cached[4]))
            hit_files.append(file)
        else:
            to_hash.append((file, (st.st_ino, st.st_size, st.st_mtime_ns)))
    # Only rows of files about to be hashed are needed from here on.
    prior = {
        file.source: ((row[1], row[2], row[3]), row[4]) for file, _ in to_hash if (row := known.get(file.source)) is not None
    }
    del known, lookup
    # A remembered digest is only trusted while its object is still cached (gc, quarantine).
    gone = repo.cache.missing(e.digest for e in entries if e.digest is not None) if entries else set()
    if gone:
        kept: list[Entry] = []
        for entry, file in zip(entries, hit_files, strict=True):
            if entry.digest in gone:
                try:
                    st = stat_path(file.source)
                except FileNotFoundError:
                    raise UsageError(f"{file.source} disappeared while adding it; retry") from None
                to_hash.append((file, (st.st_ino, st.st_size, st.st_mtime_ns)))
            else:
                kept.append(entry)
        entries = kept
    del hit_files
    done = [len(entries), sum(entry.size for entry in entries)]
    if progress is not None and entries:
        progress(done[0], done[1])

    # Per-file results become entries and stat rows as soon as their objects
    # are published, so no per-file staging record outlives its chunk (memory
    # at a million files is a target).
    unpublished: list[_Hashed] = []
    new_rows: list[tuple[str, StatKey, str]] = []
    is_safe = repo.stat_cache.is_safe

    unflushed = [False]  # names published without their final flush (see publish_durably)

    def publish(last: bool = False) -> None:
        batched = _publish(repo, unpublished, flush_names=last) > SYNC_EACH_UP_TO  # else fsynced one by one
        if not last and batched:
            unflushed[0] = True
        if last and unflushed[0] and not batched:  # a batched last publish flushed every earlier name too
            durable_sync(repo.cache.root)
        for item in unpublished:
            entries.append(Entry(item.file.path, item.size, item.digest))
            if is_safe(item.key, started_ns) and prior.get(item.file.source) != (item.key, item.digest):
                new_rows.append((item.file.source, item.key, item.digest))
        unpublished.clear()

    def advance(batch: list[_Hashed]) -> None:
        done[0] += len(batch)
        done[1] += sum(item.size for item in batch)
        if progress is not None:
            progress(done[0], done[1])
        # Publish in chunks while the workers stage more: the flush and the
        # renames overlap with reading instead of following it.
        unpublished.extend(batch)
        if len(unpublished) >= PUBLISH_EVERY:
            publish()

    try:
        if to_hash:
            _hash_all(repo, to_hash, advance)
        del to_hash
        publish(last=True)
    except BaseException:
        for item in unpublished:  # published ones are gone from tmp/ already
            if item.temp is not None:
                _unlink(item.temp)
        raise
    return entries, new_rows


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _publish(repo: Repository, hashed: list[_Hashed], *, flush_names: bool) -> int:
    """Make staged objects durable and visible under their digests (or drop the ones already cached).

    Returns how many objects were published.
    """
    staged = _keep_new_objects(repo, hashed)
    if staged:
        repo.cache.publish_durably(staged, flush_names=flush_names)
    return len(staged)


def _keep_new_objects(repo: Repository, hashed: list[_Hashed]) -> list[tuple[str, str]]:
    """Staged temp files worth publishing: one per digest not already cached; remove the rest."""
    if not hashed:
        return []
    absent = repo.cache.missing({item.digest for item in hashed})
    keep: dict[str, str] = {}
    for item in hashed:
        if item.temp is None:
            continue
        if item.digest in absent and item.digest not in keep:
            keep[item.digest] = item.temp
        else:
            _unlink(item.temp)
    return [(temp, digest) for digest, temp in keep.items()]
