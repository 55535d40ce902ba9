"""Put a cached object at a user's path: copy, reflink, hardlink or symlink.

Every mode verifies the bytes: copy and reflink hash what was written, hardlink
and symlink hash the object before linking it. Objects are read-only files, so
a linked file cannot be edited in place by a normal user; an editor that saves
by writing a new file and renaming it replaces the link and leaves the object
alone. (root ignores file modes: ``refstore verify`` detects such an edit.)
Targets are replaced atomically: a temp file beside the target, then rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import uuid
from pathlib import Path

from refstore.core import hashing
from refstore.core.objects import ObjectCache, named_temp_beside
from refstore.errors import IntegrityError, NotFoundError, UsageError

log = logging.getLogger(__name__)

LINK_MODES = ("auto", "copy", "reflink", "hardlink", "symlink")
_FICLONE = 0x40049409
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EPERM}


def check_mode(mode: str) -> str:
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}; use one of {', '.join(LINK_MODES)}")
    return mode


def _reflink(source: Path, target: Path) -> bool:
    """Clone ``source`` into a new ``target``; False when the filesystem cannot."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        except OSError as exc:
            if exc.errno in _NO_REFLINK:
                dst.close()
                target.unlink(missing_ok=True)
                return False
            raise
    return True


def _copy_verified(cache: ObjectCache, digest: str, temp: Path) -> None:
    with open(cache.path(digest), "rb") as src, open(temp, "xb") as dst:
        actual, _ = hashing.copy_and_hash(src, dst, cache.algorithm)
    if actual != digest:
        temp.unlink(missing_ok=True)
        raise cache.remove_corrupt(digest, actual)


def materialize(cache: ObjectCache, digest: str, target: Path, mode: str = "copy") -> str:
    """Write object ``digest`` to ``target`` using ``mode``; return the mode actually used."""
    check_mode(mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        raise UsageError(f"{target} is a directory, but the artifact has a file there; move it away and retry")
    temp = named_temp_beside(target)
    used = mode
    try:
        if mode in ("reflink", "auto"):
            if _reflink(cache.path(digest), temp):
                actual, _ = hashing.hash_file(temp, cache.algorithm)
                if actual != digest:
                    cache.quarantine(digest)
                    raise IntegrityError(f"cached object {digest} is corrupt; it was removed - re-add or pull it")
                used = "reflink"
            else:
                _copy_verified(cache, digest, temp)
                used = "copy"
        elif mode == "copy":
            _copy_verified(cache, digest, temp)
        elif mode == "hardlink":
            source = cache.verified_path(digest)
            try:
                os.link(source, temp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                log.info("hardlink impossible for %s (%s); copying", target, exc.strerror)
                _copy_verified(cache, digest, temp)
                used = "copy"
        else:  # symlink
            source = cache.verified_path(digest)
            os.symlink(os.path.abspath(source), temp)
        if used in ("copy", "reflink"):
            os.chmod(temp, 0o644)
        os.replace(temp, target)
        if used == "hardlink":
            # rename() between two links to one inode does nothing and leaves the temp name behind.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return used


def _verify_object(cache: ObjectCache, digest: str) -> str:
    """The object's path after re-hashing it (one open, no separate existence check)."""
    source = f"{cache.objects}/{digest[:2]}/{digest[2:]}"
    try:
        actual, _ = hashing.hash_file(source, cache.algorithm)
    except FileNotFoundError:
        raise NotFoundError(f"object {digest} is not in the cache; pull it from a remote or re-add the file") from None
    if actual != digest:
        raise cache.remove_corrupt(digest, actual)
    return source


SMALL_OBJECT = 1 << 20  # objects up to this size are read in one call when verified


def check_object(cache: ObjectCache, digest: str, size: int | None) -> None:
    """Re-hash object ``digest`` and check it holds ``size`` bytes (``None``: any size).

    A small object is read with one ``open``/``read``/``close`` and no ``stat``
    (a read of ``size + 1`` bytes returns exactly ``size`` for an intact object);
    anything unexpected falls back to a streaming hash, which decides. A corrupt
    object is removed and reported; an intact object of another size means the
    manifest that declares ``size`` is wrong (:class:`ValueError`, the caller
    names the manifest). ``digest`` must already be validated.
    """
    source = f"{cache.objects}/{digest[:2]}/{digest[2:]}"
    actual = got = None
    if size is not None and size <= SMALL_OBJECT:
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"object {digest} is not in the cache; pull it from a remote or re-add the file") from None
        try:
            data = os.read(fd, size + 1)
        except OSError:
            data = None  # e.g. a directory under an object's name: the streaming hash reports it
        finally:
            os.close(fd)
        if data is not None and len(data) == size:
            actual, got = hashing.hash_bytes(data, cache.algorithm), size
    if actual is None or actual != digest:
        try:
            actual, got = hashing.hash_file(source, cache.algorithm)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"object {digest} is not in the cache; pull it from a remote or re-add the file") from None
    if actual != digest:
        raise cache.remove_corrupt(digest, actual)
    if size is not None and got != size:
        raise ValueError(f"object {digest} holds {got} bytes, not {size}")


def materialize_new(cache: ObjectCache, digest: str, target: str, mode: str, *, verified: bool = False) -> str:
    """:func:`materialize` for a ``target`` whose directory exists and which was absent when listed.

    The common case of a checkout into a fresh directory. A hardlink or symlink
    is created under its final name directly (``link``/``symlink`` are atomic
    and never follow or overwrite an existing name), saving a temp name and a
    rename per file; a copy is still written beside the target and renamed, so
    a killed checkout never leaves a partial file under a user's file name.
    ``digest`` must already be validated (it comes from a parsed record). Falls
    back to :func:`materialize` if the name appeared meanwhile. ``reflink`` and
    ``auto`` always take that general path. ``verified`` says the caller has
    just re-hashed the object (:func:`check_object`), so a link needs no second read.
    """
    if mode in ("hardlink", "symlink"):
        source = f"{cache.objects}/{digest[:2]}/{digest[2:]}" if verified else _verify_object(cache, digest)
        try:
            if mode == "hardlink":
                os.link(source, target)
            else:
                os.symlink(os.path.abspath(source), target)
            return mode
        except FileExistsError:
            pass
        except OSError as exc:
            if mode == "symlink" or exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            log.info("hardlink impossible for %s (%s); copying", target, exc.strerror)
            return materialize(cache, digest, Path(target), "copy")
    elif mode == "copy":
        temp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex[:16]}.tmp"
        try:
            _copy_verified(cache, digest, Path(temp))
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return mode
    return materialize(cache, digest, Path(target), mode)


def matches(path: Path, digest: str, size: int, algorithm: str) -> bool:
    """True when the file at ``path`` already holds exactly these bytes."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != size:
            return False
        return hashing.hash_file(path, algorithm)[0] == digest
    except OSError:
        return False
