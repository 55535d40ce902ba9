"""Downloading reference entries into the object cache, and re-checking them.

Registered with :mod:`refstore.services.fetch`, so ``download``/``get`` of a
version with references just works. For each reference:

- the bytes of a digest already known (``file://`` entries, or remembered from
  an earlier download in ``reference_digests``) and present in the cache are
  not fetched again;
- a recorded S3 VersionId or GCS generation is fetched exactly;
- otherwise the object's current metadata is compared with the recorded one
  first, and a difference is a :class:`ChangedError` naming the path and what
  changed; while streaming, the bytes are hashed (store digest, plus md5 when
  the recorded metadata has one) and checked again, so different bytes are
  never handed over even if the object changes between the check and the read.

Bytes are staged in ``.refstore/tmp`` and published under their digest only
after those checks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO

from refstore.core import refdigests
from refstore.core.objects import fsync_dir
from refstore.core.repo import Repository
from refstore.core.tree import Entry
from refstore.errors import ChangedError, IntegrityError, NotFoundError, RefstoreError
from refstore.services.fetch import register
from refstore.services.refbackends import INFORMATIONAL, Backend, backend_for, is_unchecked, local_path, translate

log = logging.getLogger(__name__)
WORKERS = 8
# The CLI sets this to show a progress bar: called with (files done, bytes done).
PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("refstore_reference_progress", default=None)


class _HashingReader:
    """Wraps a stream so an md5 of everything read is computed on the way."""

    def __init__(self, source: BinaryIO, md5: bool) -> None:
        self.source = source
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data and self.md5 is not None:
            self.md5.update(data)
        return bytes(data or b"")

    def readinto(self, view: memoryview) -> int:
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def changes(entry: Entry, current: Mapping[str, Any], size: int | None) -> list[str]:
    """What differs between the recorded entry and the object's current metadata."""
    assert entry.ref is not None
    found = []
    if size is not None and size != entry.size:
        found.append(f"size {entry.size} -> {size}")
    for key, old in sorted(entry.ref.items()):
        if key in INFORMATIONAL or old is None:
            continue
        new = current.get(key)
        if new != old:
            found.append(f"{key} {old} -> {new}")
    return found


def _changed(entry: Entry, what: list[str]) -> ChangedError:
    assert entry.ref is not None
    return ChangedError(
        f"{entry.path} ({entry.ref['uri']}) changed since it was recorded: {', '.join(what)}; "
        "log the reference again to record the new version"
    )


def _stage(repo: Repository, stream: BinaryIO, md5: bool) -> tuple[str, int, Path, str | None]:
    reader = _HashingReader(stream, md5)
    digest, size, temp = repo.cache.stage_stream(reader)  # type: ignore[arg-type]
    return digest, size, temp, reader.md5.hexdigest() if reader.md5 is not None else None


def _missing_version(backend: Backend, entry: Entry, name: str, exc: BaseException) -> RefstoreError:
    """A pinned version is gone: say whether the object was overwritten (and how) or deleted."""
    assert entry.ref is not None
    label = "generation" if backend.kind == "gcs" else "version"
    pinned = f"{label} {entry.ref.get('version_id') or entry.ref.get('generation')}"
    try:
        info = backend.info(name)
    except Exception:
        return NotFoundError(f"{entry.path} ({entry.ref['uri']}) was deleted; the recorded {pinned} is gone too")
    what = changes(entry, backend.metadata(info), info.get("size"))
    return _changed(entry, [f"the recorded {pinned} no longer exists", *what])


def fetch_remote(repo: Repository, backend: Backend, entry: Entry) -> tuple[str, Path]:
    """Stream one reference into a staged temp file; returns (digest, temp) after every check."""
    assert entry.ref is not None
    ref = entry.ref
    uri = str(ref["uri"])
    unchecked = is_unchecked(entry)
    if backend.kind == "file":
        path = local_path(uri)
        try:
            with open(path, "rb") as stream:
                digest, size, temp, _ = _stage(repo, stream, md5=False)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{entry.path} ({uri}) was deleted since it was recorded") from exc
        except OSError as exc:
            raise translate(exc, uri) from exc
        if entry.digest is not None and digest != entry.digest:
            temp.unlink(missing_ok=True)
            raise _changed(
                entry, [f"the file was overwritten (size {entry.size} -> {size}, digest {entry.digest[:12]} -> {digest[:12]})"]
            )
        return digest, temp
    name = backend.strip(uri)
    try:
        if not unchecked and not backend.exact(ref):
            info = backend.info(name)
            what = changes(entry, backend.metadata(info), info.get("size"))
            if what:
                raise _changed(entry, what)
        expected_md5 = None if unchecked else backend.expected_md5(ref)
        with backend.open(name, ref) as stream:
            digest, size, temp, md5 = _stage(repo, stream, md5=expected_md5 is not None)
    except RefstoreError:
        raise
    except FileNotFoundError as exc:
        if backend.exact(ref):
            raise _missing_version(backend, entry, name, exc) from exc
        raise translate(exc, uri) from exc
    except Exception as exc:
        raise translate(exc, uri) from exc
    what = []
    if not unchecked and size != entry.size:
        what.append(f"size {entry.size} -> {size} bytes read")
    if expected_md5 is not None and md5 != expected_md5:
        what.append(f"md5 {expected_md5} -> {md5} of the bytes read")
    if entry.digest is not None and digest != entry.digest:
        what.append(f"digest {entry.digest[:12]} -> {digest[:12]}")
    if what:
        temp.unlink(missing_ok=True)
        raise _changed(entry, what)
    return digest, temp


def _publish(repo: Repository, digest: str, temp: Path) -> None:
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    repo.cache.publish(temp, digest)
    fsync_dir(repo.cache.path(digest).parent)


@register
def fetch_references(repo: Repository, entries: Sequence[Entry]) -> dict[str, str]:
    """The fetcher for reference entries: cache first, then the backend, concurrently."""
    refs = [e for e in entries if e.ref is not None]
    if not refs:
        return {}
    keys = {e.path: refdigests.identity(e.size, e.ref, repo.algorithm) for e in refs if e.ref is not None}
    known = refdigests.lookup(repo.db, list(keys.values()))
    provided: dict[str, str] = {}
    todo: list[Entry] = []
    for entry in refs:
        digest = entry.digest or (None if is_unchecked(entry) else known.get(keys[entry.path]))
        if digest is not None and repo.cache.has(digest):
            provided[entry.path] = digest
        else:
            todo.append(entry)
    if not todo:
        return provided
    backends = Backends(repo)
    progress = PROGRESS.get()
    errors: list[RefstoreError] = []
    remember: list[tuple[str, str]] = []
    done = [0, 0]
    log.info("fetching %d reference(s)", len(todo))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures: list[tuple[Entry, Future[tuple[str, Path]]]] = []
        for entry in todo:
            futures.append((entry, pool.submit(fetch_remote, repo, backends.for_entry(entry), entry)))
        for entry, future in futures:
            try:
                digest, temp = future.result()
            except RefstoreError as exc:
                errors.append(exc)
                continue
            _publish(repo, digest, temp)
            provided[entry.path] = digest
            if not is_unchecked(entry):
                remember.append((keys[entry.path], digest))
            done[0] += 1
            done[1] += entry.size
            if progress is not None:
                progress(done[0], done[1])
    if remember:
        refdigests.remember(repo.db, remember)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            first.message = f"{first.message} (and {len(errors) - 1} more reference(s) failed)"
            first.args = (first.message,)
        raise first
    return provided


def protocol_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


class Backends:
    """One backend per protocol for the length of one operation (clients are costly to set up)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._open: dict[str, Backend] = {}

    def for_entry(self, entry: Entry) -> Backend:
        assert entry.ref is not None
        protocol = protocol_of(str(entry.ref["uri"]))
        if protocol not in self._open:
            self._open[protocol] = backend_for(self.repo, protocol)
        return self._open[protocol]


def check_entry(repo: Repository, backend: Backend, entry: Entry, *, download: bool = False) -> None:
    """Raise unless the reference still matches its recorded metadata (and bytes, with ``download``)."""
    assert entry.ref is not None
    uri = str(entry.ref["uri"])
    if backend.kind == "file":
        path = local_path(uri)
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{entry.path} ({uri}) was deleted since it was recorded") from exc
        what = changes(entry, {"mtime_ns": st.st_mtime_ns}, st.st_size)
        if what and not download:
            raise _changed(entry, what)
    elif not download:
        name = backend.strip(uri)
        try:
            info = backend.info(name, entry.ref)
        except FileNotFoundError as exc:
            if backend.exact(entry.ref):
                raise _missing_version(backend, entry, name, exc) from exc
            raise translate(exc, uri) from exc
        except Exception as exc:
            raise translate(exc, uri) from exc
        what = changes(entry, backend.metadata(info), info.get("size"))
        if what:
            raise _changed(entry, what)
        return
    if download:
        digest, temp = fetch_remote(repo, backend, entry)
        temp.unlink(missing_ok=True)
        known = refdigests.lookup(repo.db, [refdigests.identity(entry.size, entry.ref, repo.algorithm)])
        remembered = next(iter(known.values()), None)
        if remembered is not None and remembered != digest:
            raise IntegrityError(
                f"{entry.path} ({uri}) now hashes to {digest[:12]}, not {remembered[:12]} as when it was downloaded; "
                "the remote bytes changed without a metadata change",
                expected=remembered,
                got=digest,
            )
