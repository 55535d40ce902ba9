"""The content-addressed object cache under ``.refstore/objects``.

An object lives at ``objects/<first two hex>/<rest>``, read-only. Writes are
staged in ``.refstore/tmp`` and only renamed under their digest after the
bytes are durable, so an object is never visible
half-written. A batch of objects is flushed with one ``syncfs`` before any
rename (a handful are fsynced one by one), which keeps the crash guarantee
without one fsync per file.
Objects are re-hashed whenever they are read for a user; a corrupt one is
removed and reported, never handed over.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from refstore.core import hashing
from refstore.errors import IntegrityError, NotFoundError

log = logging.getLogger(__name__)
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
SYNC_EACH_UP_TO = 64  # up to this many new objects, fsync each instead of flushing the filesystem
_LIST_SHARD_AT = 16  # from this many lookups in one shard, listing it beats stat per object


def durable_sync(path: Path | None = None) -> None:
    """Flush dirty pages to disk: one call for a whole batch of files.

    With ``path``, only its filesystem is flushed (``syncfs``, Linux), so a
    store does not wait for unrelated writes elsewhere on the machine.
    """
    if path is not None and _syncfs(path):
        return
    os.sync()


def _syncfs(path: Path) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return bool(syncfs(fd) == 0)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a single write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make one file's bytes durable (cheaper than a global sync for a handful of files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ObjectCache:
    """Objects stored once under their digest."""

    def __init__(self, root: Path, algorithm: str) -> None:
        self.root = root
        self.algorithm = algorithm
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        # Staged names: a random prefix per process and a counter (no random syscall per file).
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count()

    def _temp_name(self) -> str:
        return f"{self.tmp}/{self._prefix}.{next(self._counter)}.part"  # next() on a count is atomic under the GIL

    # -- naming -----------------------------------------------------------
    def path(self, digest: str) -> Path:
        if not hashing.is_digest(digest, self.algorithm):
            raise IntegrityError(f"invalid object digest {digest!r}")
        return self.objects / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        if not hashing.is_digest(digest, self.algorithm):
            raise IntegrityError(f"invalid object digest {digest!r}")
        return os.path.isfile(f"{self.objects}/{digest[:2]}/{digest[2:]}")  # no Path objects: called per entry

    def has_fast(self, digest: str) -> bool:
        """``has`` without validating ``digest`` (for digests this store computed itself)."""
        return os.path.isfile(f"{self.objects}/{digest[:2]}/{digest[2:]}")

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The subset of ``digests`` (computed by this store) that is not in the cache.

        Asking about many objects lists their shard directories once instead of
        one ``stat`` per object: a stat-cache hit then costs no syscall of its own.
        """
        by_shard: dict[str, list[str]] = {}
        for digest in digests:
            by_shard.setdefault(digest[:2], []).append(digest)
        absent: set[str] = set()
        for shard, wanted in by_shard.items():
            if len(wanted) < _LIST_SHARD_AT:
                absent.update(d for d in wanted if not self.has_fast(d))
                continue
            try:
                names = set(os.listdir(f"{self.objects}/{shard}"))
            except FileNotFoundError:
                names = set()
            absent.update(d for d in wanted if d[2:] not in names)
        return absent

    def digests(self) -> Iterator[str]:
        """Every digest present in the cache (order unspecified; staged temp files are skipped)."""
        if not self.objects.is_dir():
            return
        for shard in os.scandir(self.objects):
            if shard.is_dir() and len(shard.name) == 2:
                for item in os.scandir(shard.path):
                    if not item.name.startswith("."):
                        yield shard.name + item.name

    # -- writing ----------------------------------------------------------
    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open, new, read-only file in the staging directory (writable through the handle)."""
        path = Path(self._temp_name())
        return os.fdopen(os.open(path, _CREATE, 0o444), "wb"), path

    def stage_bytes(self, data: bytes | memoryview) -> str:
        """Write ``data`` to a new read-only staged temp file and return its path (not yet durable)."""
        temp = self._temp_name()
        try:
            fd = os.open(temp, _CREATE, 0o444)
        except FileNotFoundError:
            os.makedirs(self.tmp, exist_ok=True)
            fd = os.open(temp, _CREATE, 0o444)
        try:
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        return temp

    def stage_small_file(self, source: str, size: int) -> tuple[str, str, os.stat_result] | None:
        """Stage a file expected to hold ``size`` (< ``hashing.CHUNK``) bytes, in as few syscalls as it takes.

        One open, one read, one ``fstat`` (returned, so the caller can tell
        whether the file changed while it was read), one close, then one
        create, write and close for the staged copy: half the calls of the
        buffered-file path, which matters at a million files. Returns None,
        staging nothing, when the file does not hold exactly ``size`` bytes
        (it changed; the caller's general path reports it).
        """
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            data = os.read(fd, size + 1)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if len(data) != size:
            return None
        digest = hashing.hash_bytes(data, self.algorithm)
        return digest, self.stage_bytes(data), after

    def stage_stream(self, source: BinaryIO, expected: str | None = None) -> tuple[str, int, Path]:
        """Copy ``source`` to a staged temp file, hashing on the way.

        A stream that fits in one read (most files) is hashed from that one
        buffer and written with one ``write``; larger streams are copied
        through a reused buffer. Both are staged in ``tmp/`` (the format's
        staging area: everything there is garbage after a crash), read-only
        from creation, and nothing appears under a digest name before
        :meth:`publish`. Raises :class:`IntegrityError` (and removes the temp
        file) when the bytes do not hash to ``expected``.
        """
        first = source.read(hashing.CHUNK)
        more = source.read(hashing.CHUNK) if first else b""  # a short read is not always the end
        if not more:
            digest = hashing.hash_bytes(first, self.algorithm)
            if expected is not None and digest != expected:
                raise IntegrityError(f"bytes hash to {digest}, expected {expected}", expected=expected, got=digest)
            return digest, len(first), Path(self.stage_bytes(first))
        handle, staged = self.temp_file()
        try:
            with handle:
                handle.write(first)
                handle.write(more)
                digest, size = hashing.copy_and_hash(source, handle, self.algorithm, prefix=(first, more))
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        if expected is not None and digest != expected:
            staged.unlink(missing_ok=True)
            raise IntegrityError(f"bytes hash to {digest}, expected {expected}", expected=expected, got=digest)
        return digest, size, staged

    def publish(self, temp: Path, digest: str) -> None:
        """Move a staged, already durable temp file under its digest.

        Replacing an existing object is harmless (same bytes, same name), so
        there is no existence check: one rename per object.
        """
        target = self.path(digest)
        if os.stat(temp).st_mode & 0o222:
            os.chmod(temp, READ_ONLY)
        try:
            os.replace(temp, target)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)

    def publish_durably(self, staged: Sequence[tuple[str | Path, str]], *, flush_names: bool = True) -> None:
        """Make staged temp files durable, then publish them and make the names durable.

        A few objects are fsynced one by one (with their shard directories);
        a batch gets one filesystem-wide flush before and after the renames.
        Either way no name points at bytes that are not on disk. A caller that
        publishes several batches in a row may pass ``flush_names=False`` for
        all but the last: the next batch's first flush makes the earlier names
        durable too, and the last batch's final flush covers everything, so
        one ``syncfs`` per batch is saved. (Its names must be durable before
        anything that needs them commits: call :func:`durable_sync` otherwise.)
        """
        if len(staged) <= SYNC_EACH_UP_TO:
            for temp, _ in staged:
                fsync_file(temp)
            self.publish_many(staged)
            for shard in sorted({digest[:2] for _, digest in staged}):
                fsync_dir(self.objects / shard)
            return
        durable_sync(self.root)  # bytes on disk before any name points at them
        self.publish_many(staged)
        if flush_names:
            durable_sync(self.root)  # names on disk before a version that needs them commits

    def publish_many(self, staged: Iterable[tuple[str | Path, str]]) -> None:
        """:meth:`publish` for a batch of temp files this store staged itself (read-only already)."""
        objects = str(self.objects)
        for temp, digest in staged:
            target = f"{objects}/{digest[:2]}/{digest[2:]}"
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(temp, target)

    def add_stream(self, source: BinaryIO, expected: str | None = None) -> tuple[str, int]:
        """Store one stream durably now (fsync, rename, fsync dir)."""
        digest, size, temp = self.stage_stream(source, expected)
        if self.has(digest):
            temp.unlink(missing_ok=True)
            return digest, size
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        self.publish(temp, digest)
        fsync_dir(self.path(digest).parent)
        return digest, size

    def add_bytes(self, data: bytes) -> str:
        import io

        digest, _ = self.add_stream(io.BytesIO(data))
        return digest

    # -- reading ----------------------------------------------------------
    def check(self, digest: str) -> bool:
        """Re-hash an object; False when it is missing or corrupt."""
        path = self.path(digest)
        try:
            actual, _ = hashing.hash_file(path, self.algorithm)
        except FileNotFoundError:
            return False
        return actual == digest

    def verified_path(self, digest: str) -> Path:
        """The object's path after re-hashing it; a corrupt object is removed and reported."""
        path = self.path(digest)
        if not path.is_file():
            raise NotFoundError(f"object {digest} is not in the cache; pull it from a remote or re-add the file")
        actual, _ = hashing.hash_file(path, self.algorithm)
        if actual != digest:
            raise self.remove_corrupt(digest, actual)
        return path

    def remove_corrupt(self, digest: str, actual: str) -> IntegrityError:
        """Quarantine an object found to hash to ``actual``; returns the error for the caller to raise."""
        self.quarantine(digest)
        return IntegrityError(
            f"cached object {digest} is corrupt (hashes to {actual}); it was removed - re-add or pull it",
            expected=digest,
            got=actual,
        )

    def quarantine(self, digest: str) -> None:
        """Remove a corrupt object so nothing trusts it again."""
        path = self.path(digest)
        log.warning("removing corrupt object %s", digest)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, READ_ONLY | stat.S_IWUSR)
            path.unlink()

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def clean_tmp(self, older_than: float = 0.0) -> list[Path]:
        """Delete staging leftovers (from crashes) older than ``older_than`` seconds.

        Leftovers live in ``tmp/`` and, for small objects, as hidden
        ``.<random>.part`` files in the shard directories.
        """
        import time

        removed: list[Path] = []
        cutoff = time.time() - older_than
        candidates: list[Path] = list(self.tmp.iterdir()) if self.tmp.is_dir() else []
        if self.objects.is_dir():
            for shard in os.scandir(self.objects):
                if shard.is_dir() and len(shard.name) == 2:
                    candidates.extend(Path(i.path) for i in os.scandir(shard.path) if i.name.startswith("."))
        for item in candidates:
            with contextlib.suppress(FileNotFoundError):
                if item.stat().st_mtime <= cutoff:
                    item.unlink()
                    removed.append(item)
        return removed


def named_temp_beside(target: Path) -> Path:
    """A unique temp path in ``target``'s directory, for atomic replacement.

    Random rather than ``mkstemp``: creating and deleting a placeholder costs two
    metadata operations per file, which dominates checkouts of many small files.
    The name matches :data:`TEMP_BESIDE`, so a later checkout can recognise
    (and remove) the leftovers of a killed one.
    """
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:16]}.tmp")


# ``named_temp_beside``'s names: group 1 is the name of the file it was going to replace.
TEMP_BESIDE = re.compile(r"\.(.+)\.[0-9a-f]{16}\.tmp", re.DOTALL)
