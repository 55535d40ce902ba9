"""Reference entries: objects tracked by metadata only, the bytes stay where they are.

``add_reference`` requests are resolved when the artifact is logged (that is
when the store — its digest algorithm and storage options — is known): each
URI is listed once with the backend's bulk listing, checked against
``max_objects`` before anything is written, and turned into entries whose
``ref`` holds the remote identity (see :mod:`refstore.services.refbackends`).
Entries are deterministic for unchanged remote objects, so logging the same
references again gives the same manifest digest and no new version.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from refstore.core import hashing
from refstore.core.fs import check_no_credentials, split_uri
from refstore.core.paths import normalize
from refstore.core.repo import Repository
from refstore.core.statcache import StatKey, stat_key
from refstore.core.tree import Entry
from refstore.errors import ChangedError, NotFoundError, RefstoreError, UsageError
from refstore.services import reffetch  # noqa: F401  (registers the reference fetcher for downloads)
from refstore.services.refbackends import UNCHECKED, backend_for, is_unchecked, local_path, relative, translate

DEFAULT_MAX_OBJECTS = 10_000


@dataclass(frozen=True)
class ReferenceRequest:
    """One ``add_reference`` call, resolved at log time."""

    uri: str
    name: str | None = None
    checksum: bool = True
    max_objects: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise UsageError("a reference needs a URI such as s3://bucket/prefix or file:///data")
        split_uri(self.uri)
        check_no_credentials(self.uri)
        if self.name is not None:
            normalize(self.name)
        if self.max_objects is not None and (not isinstance(self.max_objects, int) or self.max_objects < 1):
            raise UsageError(f"max_objects must be a positive integer, not {self.max_objects!r}")


StatRow = tuple[str, StatKey, str]


def resolve(repo: Repository, requests: Sequence[ReferenceRequest]) -> tuple[list[Entry], list[StatRow]]:
    """Entries for every request, and stat-cache rows for local files hashed on the way.

    Raises before anything is written on any bad input.
    """
    entries: list[Entry] = []
    rows: list[StatRow] = []
    for request in requests:
        entries.extend(resolve_one(repo, request, rows))
    return entries, rows


def resolve_one(repo: Repository, request: ReferenceRequest, rows: list[StatRow] | None = None) -> list[Entry]:
    protocol, uri = split_uri(request.uri)
    if not request.checksum:
        base = request.name or posixpath.basename(uri.rstrip("/")) or "reference"
        return [Entry(normalize(base), 0, None, {"uri": uri, "checksum": UNCHECKED})]
    limit = request.max_objects or DEFAULT_MAX_OBJECTS
    backend = backend_for(repo, protocol)
    if backend.kind == "file":
        return _resolve_local(repo, request, limit, rows if rows is not None else [])
    try:
        listed = backend.list(uri)
    except Exception as exc:
        raise translate(exc, uri) from exc
    if not listed:
        raise NotFoundError(f"nothing at {uri}: no object and no objects under it; check the bucket/container and path")
    _check_limit(uri, len(listed), limit)
    root = backend.strip(uri)
    single = len(listed) == 1 and next(iter(listed)) == root.rstrip("/")
    entries = []
    for name, info in sorted(listed.items()):
        rel = posixpath.basename(name) if single else relative(root, name)
        path = _entry_path(request.name, rel, single)
        size = info.get("size")
        if not isinstance(size, int):
            try:
                size = int(backend.info(name)["size"])
            except Exception as exc:
                raise translate(exc, backend.uri(name)) from exc
        entries.append(Entry(path, size, None, {"uri": backend.uri(name), **backend.metadata(info)}))
    return entries


def _entry_path(name: str | None, rel: str, single: bool) -> str:
    if single:
        return normalize(name or rel)
    return normalize(posixpath.join(name, rel) if name else rel)


def _check_limit(uri: str, count: int, limit: int) -> None:
    if count > limit:
        raise UsageError(
            f"{uri} holds {count} objects, more than max_objects={limit}; "
            f"raise the limit (add_reference(..., max_objects={count}) or --max-objects {count}) or reference a narrower prefix"
        )


def _resolve_local(repo: Repository, request: ReferenceRequest, limit: int, rows: list[StatRow]) -> list[Entry]:
    """file:// (and NFS mounts): size, mtime_ns and the content digest of every file.

    Files unchanged since they were last hashed (same inode, size, mtime_ns in
    the stat cache) are not read again; newly hashed ones are added to ``rows``.
    """
    root = local_path(request.uri)
    if os.path.isfile(root):
        files = [(root, posixpath.basename(root))]
        single = True
    elif os.path.isdir(root):
        single = False
        files = []
        for directory, dirs, names in os.walk(root):
            dirs.sort()
            for item in sorted(names):
                full = os.path.join(directory, item)
                if os.path.isfile(full):
                    files.append((full, os.path.relpath(full, root).replace(os.sep, "/")))
    else:
        raise NotFoundError(f"{request.uri} does not exist; check the path (is the share mounted?)")
    _check_limit(request.uri, len(files), limit)
    started_ns = time.time_ns()
    known = repo.stat_cache.load(root)
    entries = []
    for full, rel in files:
        try:
            key = stat_key(os.stat(full))
        except OSError as exc:
            raise NotFoundError(f"cannot read file://{full} ({exc.strerror}); check the path and permissions") from exc
        cached = known.get(full)
        if cached is not None and cached[0] == key:
            digest, size, mtime_ns = cached[1], key[1], key[2]
        else:
            digest, size, mtime_ns = hash_local(full, repo.algorithm)
            key = (key[0], size, mtime_ns)
            if repo.stat_cache.is_safe(key, started_ns):
                rows.append((full, key, digest))
        ref: dict[str, str | int | None] = {"uri": "file://" + full, "mtime_ns": mtime_ns}
        entries.append(Entry(_entry_path(request.name, rel, single), size, digest, ref))
    return entries


def hash_local(path: str, algorithm: str) -> tuple[str, int, int]:
    """(digest, size, mtime_ns) of a local file, refusing one that changes while it is read."""
    try:
        before = os.stat(path)
        digest, size = hashing.hash_file(path, algorithm)
        after = os.stat(path)
    except OSError as exc:
        raise NotFoundError(f"cannot read file://{path} ({exc.strerror}); check the path and permissions") from exc
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or size != after.st_size:
        raise ChangedError(f"file://{path} changed while it was being hashed; retry when it is no longer written to")
    return digest, size, after.st_mtime_ns


@dataclass(frozen=True)
class RefProblem:
    """One reference that no longer matches what was recorded."""

    status: str  # "changed" | "missing" | "error" | "unchecked"
    path: str
    detail: str


def verify(repo: Repository, entries: Iterable[Entry], *, download: bool = False) -> list[RefProblem]:
    """Re-check reference entries against their backends (metadata only, or bytes with ``download``)."""
    from refstore.services.reffetch import Backends, check_entry

    backends = Backends(repo)
    problems: list[RefProblem] = []
    for entry in entries:
        if entry.ref is None:
            continue
        if is_unchecked(entry):
            problems.append(RefProblem("unchecked", entry.path, "recorded with checksum=False; nothing to compare"))
            continue
        try:
            check_entry(repo, backends.for_entry(entry), entry, download=download)
        except ChangedError as exc:
            problems.append(RefProblem("changed", entry.path, exc.message))
        except NotFoundError as exc:
            problems.append(RefProblem("missing", entry.path, exc.message))
        except RefstoreError as exc:
            problems.append(RefProblem("error", entry.path, exc.message))
    return problems
