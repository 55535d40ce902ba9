"""Plain-file access to a remote through fsspec, with the few primitives sync needs.

A remote is any fsspec URL. Sync needs only: one recursive listing, reads,
overwriting writes (content-addressed files, whose bytes never differ), and an
*exclusive create* that fails when the file already exists. Exclusive create
is what keeps two writers from losing each other's version numbers:

- local directories: the bytes go to a temp file, then ``os.link`` puts it
  under its name, which fails atomically when the name exists;
- ``s3://`` (``If-None-Match: *``), ``gs://`` (``ifGenerationMatch=0``),
  ``az://``/``abfs://`` (``overwrite=False``) and ``memory://``: fsspec's
  ``pipe_file(mode="create")``;
- any other backend: check, write, read back and compare. That detects most
  races but has a window; ``exclusive`` is False there and docs say so.

Every backend failure becomes a :class:`BackendError` with one clear line.
fsspec and its backends are imported only when a remote is opened.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from refstore.core.objects import write_all
from refstore.errors import BackendError, RefstoreError, UsageError

T = TypeVar("T")
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # out of space or quota on the remote
# A directory remote's tmp/*.part untouched this long is garbage from a killed writer. A live
# writer's file is written in one go and renamed by the same call, and every write refreshes
# its mtime, so only a writer stalled for a whole day could lose its file - and then its
# rename fails with an error; nothing half-written ever appears under a real name.
STALE_PART_SECONDS = 24 * 3600
EXCLUSIVE_PROTOCOLS = frozenset({"file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
_INSTALL_HINT = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "http": "aiohttp"}


def is_local_url(url: str) -> bool:
    return "://" not in url or url.startswith(("file://", "local://"))


def normalize_url(url: str) -> str:
    """A URL as stored: local paths become absolute paths; others are kept, minus a trailing '/'."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError("empty remote URL; give a directory or an fsspec URL such as s3://bucket/prefix")
    url = url.strip()
    if is_local_url(url):
        path = url.split("://", 1)[1] if "://" in url else url
        return str(Path(path).expanduser().absolute())
    protocol, _, rest = url.partition("://")
    if not protocol.replace("+", "").replace("-", "").isalnum():
        raise UsageError(f"invalid remote URL {url!r}; give a directory or an fsspec URL such as s3://bucket/prefix")
    return f"{protocol}://{rest.rstrip('/')}"


class RemoteFS:
    """One remote root: relative POSIX paths below it are read and written."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = normalize_url(url)
        self.options = dict(options or {})
        self.local = is_local_url(self.url)
        if self.local:
            self.fs: Any = None
            self.root = self.url
            self.protocol = "file"
        else:
            self.fs, self.root, self.protocol = _open_fsspec(self.url, self.options)
        self.exclusive = self.protocol in EXCLUSIVE_PROTOCOLS

    def __repr__(self) -> str:
        return f"<RemoteFS {self.url}>"

    def _full(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if self.root else rel

    # -- error mapping ---------------------------------------------------------
    def call(self, what: str, func: Callable[[], T], *, writing: bool = False) -> T:
        """Run one backend call; any failure becomes a one-line BackendError.

        FileNotFoundError stays itself for reads (callers handle absent files);
        for a write it means the bucket or container is missing.
        """
        try:
            return func()
        except FileNotFoundError as exc:
            if not writing:
                raise
            raise BackendError(
                f"remote {self.url} failed while {what}: the bucket, container or directory does not exist ({describe(exc)}); "
                "create it first"
            ) from exc
        except (RefstoreError, FileExistsError):
            raise
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise BackendError(
                    f"remote {self.url} failed while {what}: {describe(exc)}; "
                    "free space where the remote lives and run the command again"
                ) from exc
            raise BackendError(
                f"remote {self.url} failed while {what}: {describe(exc)}; check the URL, network and credentials"
            ) from exc
        except Exception as exc:
            raise BackendError(
                f"remote {self.url} failed while {what}: {describe(exc)}; check the URL, network and credentials"
            ) from exc

    def _forget_listings(self) -> None:
        """Drop fsspec's listings cache: another writer may have changed the remote since.

        (s3fs answers ``info``/``cat_file`` from the cache that ``find`` filled,
        and would report a file another process just created as missing.)
        """
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()

    def _fresh(self, func: Callable[[], T]) -> T:
        """Run a read; on FileNotFoundError forget cached listings and try once more."""
        try:
            return func()
        except FileNotFoundError:
            self._forget_listings()
            return func()

    # -- listing ---------------------------------------------------------------
    def list_all(self) -> set[str]:
        """Every file below the root, as relative paths (one recursive listing)."""
        if self.local:
            return self.call("listing", lambda: set(_walk_local(Path(self.root))))

        def run() -> set[str]:
            prefix = self.root.rstrip("/") + "/"
            try:
                found = self.fs.find(self.root)
                if not found:
                    # Some backends (fsspec's HTTP walk) swallow connection errors and
                    # list nothing; a direct lookup tells "empty" from "unreachable".
                    self.fs.ls(self.root, detail=False)
            except FileNotFoundError:
                return set()
            finally:
                self._forget_listings()
            return {p[len(prefix) :] for p in found if p.startswith(prefix)}

        return self.call("listing", run)

    # -- reading ---------------------------------------------------------------
    def read(self, rel: str) -> bytes:
        if self.local:
            return self.call(f"reading {rel}", lambda: Path(self.root, rel).read_bytes())
        return self.call(f"reading {rel}", lambda: bytes(self._fresh(lambda: self.fs.cat_file(self._full(rel)))))

    def read_many(self, rels: Sequence[str]) -> dict[str, bytes]:
        """Several small files in one batched call (concurrent requests on async backends)."""
        if not rels:
            return {}
        if self.local or len(rels) == 1:
            return {rel: self.read(rel) for rel in rels}

        def run() -> dict[str, bytes]:
            full = {self._full(rel): rel for rel in rels}
            found = self.fs.cat(list(full), on_error="return")
            result: dict[str, bytes] = {}
            for path, value in found.items():
                if isinstance(value, BaseException):
                    raise value
                result[full[path]] = bytes(value)
            return result

        return self.call(f"reading {len(rels)} files", lambda: self._fresh(run))

    @contextlib.contextmanager
    def open_read(self, rel: str) -> Iterator[BinaryIO]:
        if self.local:
            try:
                handle: BinaryIO = open(Path(self.root, rel), "rb")  # noqa: SIM115
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise BackendError(f"remote {self.url} failed while reading {rel}: {describe(exc)}") from exc
        else:
            handle = self.call(f"opening {rel}", lambda: self._fresh(lambda: self.fs.open(self._full(rel), "rb")))
        with handle:
            yield handle

    # -- writing ---------------------------------------------------------------
    def write(self, rel: str, data: bytes) -> None:
        """Write (or overwrite) one file atomically."""
        if self.local:
            self.call(f"writing {rel}", lambda: self._local_write(rel, data, exclusive=False), writing=True)
            return
        self.call(f"writing {rel}", lambda: self.fs.pipe_file(self._full(rel), data), writing=True)

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Several small files in one batched call."""
        if not files:
            return
        if self.local:
            self.call(f"writing {len(files)} files", lambda: self._local_write_many(files), writing=True)
            return
        if len(files) == 1:
            for rel, data in files.items():
                self.write(rel, data)
            return
        self.call(f"writing {len(files)} files", lambda: self.fs.pipe({self._full(r): d for r, d in files.items()}), writing=True)

    def upload(self, rel: str, source: Path) -> None:
        """Copy a local file to ``rel`` (atomically on every backend we know)."""
        if self.local:
            self.call(f"writing {rel}", lambda: self._local_copy(rel, source), writing=True)
            return
        self.call(f"uploading {rel}", lambda: self.fs.put_file(str(source), self._full(rel)), writing=True)

    def create(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` only if absent: True when this call created it, False when it existed.

        On backends without exclusive create, a read-back after the write
        detects a concurrent writer that overwrote us (returns False then).
        """
        if self.local:
            try:
                self.call(f"creating {rel}", lambda: self._local_write(rel, data, exclusive=True), writing=True)
            except FileExistsError:
                return False
            return True
        full = self._full(rel)
        if self.exclusive:
            try:
                self.call(f"creating {rel}", lambda: self.fs.pipe_file(full, data, mode="create"), writing=True)
            except FileExistsError:
                return False
            return True
        if self.call(f"checking {rel}", lambda: self.fs.exists(full)):
            return False
        self.call(f"writing {rel}", lambda: self.fs.pipe_file(full, data), writing=True)
        return self.read(rel) == data

    def remove_stale_parts(self, max_age: float = STALE_PART_SECONDS) -> int:
        """Delete a directory remote's ``tmp/*.part`` files not modified for ``max_age`` seconds.

        Killed pushes leave them; listings skip ``tmp/`` so they are never read.
        Returns how many were removed (0 on other backends, which stage nothing).
        """
        if not self.local:
            return 0
        tmp = Path(self.root, "tmp")
        removed = 0
        limit = time.time() - max_age
        try:
            candidates = [p for p in tmp.iterdir() if p.name.endswith(".part")]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise BackendError(f"remote {self.url} failed while listing tmp/: {describe(exc)}") from exc
        for path in candidates:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # renamed or removed by its writer (or another cleaner) meanwhile
            except OSError as exc:
                raise BackendError(f"remote {self.url} failed while removing {path.name}: {describe(exc)}") from exc
        return removed

    def local_batch(self) -> LocalBatch:
        """A :class:`LocalBatch` for this (local-directory) remote."""
        if not self.local:
            raise UsageError(f"remote {self.url} is not a local directory")
        return LocalBatch(self.root)

    # -- local directory helpers ---------------------------------------------
    def _local_temp(self) -> Path:
        tmp = Path(self.root, "tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}.part"

    def _local_write(self, rel: str, data: bytes, *, exclusive: bool) -> None:
        temp = self._local_temp()
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._local_place(temp, rel, exclusive=exclusive)
        finally:
            temp.unlink(missing_ok=True)

    def _local_write_many(self, files: Mapping[str, bytes]) -> None:
        """Stage every file, flush them all with one ``syncfs``, then rename each into place."""
        with self.local_batch() as batch:
            for rel, data in files.items():
                batch.stage(rel, data)
            batch.place()

    def _local_copy(self, rel: str, source: Path) -> None:
        import shutil

        temp = self._local_temp()
        try:
            with open(source, "rb") as src, open(temp, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            self._local_place(temp, rel, exclusive=False)
        finally:
            temp.unlink(missing_ok=True)

    def _local_place(self, temp: Path, rel: str, *, exclusive: bool) -> None:
        target = Path(self.root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if exclusive:
            os.link(temp, target)  # atomic; FileExistsError when another writer was first
        else:
            os.replace(temp, target)


class LocalBatch:
    """Many small files written to a local-directory remote with one flush for all of them.

    Files are staged in the remote's ``tmp/`` (from several threads: names are a
    per-batch prefix and a counter, created relative to one directory handle),
    then :meth:`place` flushes the remote's filesystem once, renames each file
    under its name and flushes again. So a name on the remote never points at
    bytes that are not on disk, at the cost of two ``syncfs`` per batch instead
    of an ``fsync`` (or a machine-wide ``sync``) per handful of files.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        self._tmp = os.open(tmp, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count()
        self._staged: list[tuple[str, str]] = []  # (temp name in tmp/, relative target)
        self._lock = threading.Lock()  # place() may run while other threads stage
        self._made: set[str] = set()

    def __len__(self) -> int:
        return len(self._staged)

    def __enter__(self) -> LocalBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stage(self, rel: str, data: bytes) -> None:
        """Write ``data`` to a new temp file meant for ``rel`` (safe from several threads)."""
        name = f"{self._prefix}.{next(self._counter)}.part"  # next() on a count is atomic under the GIL
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=self._tmp)
        try:
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=self._tmp)
            raise
        os.close(fd)
        with self._lock:
            self._staged.append((name, rel))

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        """A new temp file meant for ``rel``, to write a large file through; dropped if the block raises."""
        name = f"{self._prefix}.{next(self._counter)}.part"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._tmp)
            raise
        with self._lock:
            self._staged.append((name, rel))

    def place(self) -> int:
        """Flush, move every staged file under its name, flush again; returns how many were placed.

        A few files (up to ``SYNC_EACH_UP_TO``) are fsynced one by one, with
        their directories: a filesystem-wide flush would also wait for every
        other writer's dirty pages, which costs seconds on a busy disk.
        """
        from refstore.core.objects import SYNC_EACH_UP_TO, durable_sync, fsync_dir

        with self._lock:  # files staged from here on wait for the next place()
            staged, self._staged = self._staged, []
        if not staged:
            return 0
        count, root, staged_names = len(staged), Path(self.root), list(staged)
        few = count <= SYNC_EACH_UP_TO
        try:
            if few:
                for name, _ in staged:
                    fd = os.open(name, os.O_RDONLY, dir_fd=self._tmp)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            else:
                durable_sync(root)  # bytes on disk before any name points at them
            for parent in {rel.rpartition("/")[0] for _, rel in staged} - self._made:
                os.makedirs(f"{self.root}/{parent}", exist_ok=True)
                self._made.add(parent)
            while staged:
                name, rel = staged[-1]
                os.rename(name, f"{self.root}/{rel}", src_dir_fd=self._tmp)
                staged.pop()
        finally:
            with self._lock:
                self._staged.extend(staged)  # not placed: removed by close()
        if few:
            for parent in sorted({rel.rpartition("/")[0] for _, rel in staged_names}):
                fsync_dir(Path(self.root, parent))
        else:
            durable_sync(root)  # names on disk before anything that refers to them is written
        return count

    def close(self) -> None:
        """Remove whatever is still staged (a failed or abandoned batch)."""
        for name, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._tmp)
        self._staged = []
        os.close(self._tmp)


def _walk_local(root: Path) -> Iterator[str]:
    if not root.is_dir():
        return
    for directory, dirs, files in os.walk(root):
        rel_dir = Path(directory).relative_to(root).as_posix()
        if rel_dir == "tmp":
            dirs[:] = []
            continue
        for name in files:
            yield name if rel_dir == "." else f"{rel_dir}/{name}"


def _open_fsspec(url: str, options: Mapping[str, Any]) -> tuple[Any, str, str]:
    import fsspec
    from fsspec.core import url_to_fs

    protocol = url.split("://", 1)[0]
    try:
        fs, root = url_to_fs(url, **options)
    except ImportError as exc:
        package = _INSTALL_HINT.get(protocol, f"the fsspec backend for {protocol}://")
        raise BackendError(f"remote {url} needs {package}; install it (pip install {package})") from exc
    except ValueError as exc:
        if "Protocol not known" in str(exc) or protocol not in fsspec.available_protocols():
            raise UsageError(f"unknown protocol {protocol}:// in remote URL {url}; use a directory or an fsspec URL") from exc
        raise UsageError(f"cannot open remote {url}: {exc}") from exc
    except TypeError as exc:
        raise UsageError(f"bad option for remote {url}: {exc}; see 'refstore remote list --json'") from exc
    names = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    canonical = protocol if protocol in names else names[0]
    return fs, str(root).rstrip("/"), canonical


def describe(exc: BaseException) -> str:
    """A short one-line reason for a backend exception."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}"[:300] if text else name
