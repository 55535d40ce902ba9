"""The content-addressed object cache under ``.refstore/objects``.

An object lives at ``objects/<first two hex>/<rest>``, read-only. Writes are
staged in ``.refstore/tmp`` and only renamed under their digest after the
bytes are durable, so an object is never visible half-written. Many small
objects are staged as a batch that is flushed with one ``sync`` before any
rename, which keeps the crash guarantee without one fsync per file.
Objects are re-hashed whenever they are read for a user; a corrupt one is
removed and reported, never handed over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from refstore.core import hashing
from refstore.errors import IntegrityError, NotFoundError

log = logging.getLogger(__name__)
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def durable_sync() -> None:
    """Flush every dirty page to disk (one call for a whole batch of files)."""
    os.sync()


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

    # -- naming -----------------------------------------------------------
    def path(self, digest: str) -> Path:
        if not hashing.is_digest(digest, self.algorithm):
            raise IntegrityError(f"invalid object digest {digest!r}")
        return self.objects / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def has_fast(self, digest: str) -> bool:
        """``has`` without validating ``digest`` (for digests this store computed itself)."""
        return os.path.isfile(f"{self.objects}/{digest[:2]}/{digest[2:]}")

    def digests(self) -> Iterator[str]:
        """Every digest present in the cache (order unspecified)."""
        if not self.objects.is_dir():
            return
        for shard in os.scandir(self.objects):
            if shard.is_dir() and len(shard.name) == 2:
                for item in os.scandir(shard.path):
                    yield shard.name + item.name

    # -- writing ----------------------------------------------------------
    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open, new file in the staging directory."""
        path = self.tmp / f"{uuid.uuid4().hex}.part"
        return open(path, "xb"), path

    def stage_stream(self, source: BinaryIO, expected: str | None = None) -> tuple[str, int, Path]:
        """Copy ``source`` to a staged temp file, hashing on the way.

        Raises :class:`IntegrityError` (and removes the temp file) when the
        bytes do not hash to ``expected``.
        """
        handle, temp = self.temp_file()
        try:
            with handle:
                digest, size = hashing.copy_and_hash(source, handle, self.algorithm)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if expected is not None and digest != expected:
            temp.unlink(missing_ok=True)
            raise IntegrityError(f"bytes hash to {digest}, expected {expected}", expected=expected, got=digest)
        return digest, size, temp

    def publish(self, temp: Path, digest: str) -> None:
        """Move a staged, already durable temp file under its digest."""
        target = self.path(digest)
        if target.exists():
            temp.unlink(missing_ok=True)
            return
        os.chmod(temp, READ_ONLY)
        try:
            os.replace(temp, target)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
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
            self.quarantine(digest)
            raise IntegrityError(
                f"cached object {digest} is corrupt (hashes to {actual}); it was removed - re-add or pull it",
                expected=digest,
                got=actual,
            )
        return path

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
        """Delete staging leftovers (from crashes) older than ``older_than`` seconds."""
        import time

        removed: list[Path] = []
        if not self.tmp.is_dir():
            return removed
        cutoff = time.time() - older_than
        for item in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if item.stat().st_mtime <= cutoff:
                    item.unlink()
                    removed.append(item)
        return removed


def named_temp_beside(target: Path) -> Path:
    """A unique temp path in ``target``'s directory, for atomic replacement.

    Random rather than ``mkstemp``: creating and deleting a placeholder costs two
    metadata operations per file, which dominates checkouts of many small files.
    """
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:16]}.tmp")
