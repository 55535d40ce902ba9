"""Materialising a version into a directory, and checking a directory against one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from refstore.core import hashing
from refstore.core.linking import check_mode, check_object, matches, materialize, materialize_new
from refstore.core.objects import TEMP_BESIDE
from refstore.core.paths import safe_join
from refstore.core.repo import Repository
from refstore.core.tree import Entry, walk
from refstore.errors import IntegrityError
from refstore.services.fetch import fill_cache
from refstore.services.ingest import BATCH_BYTES, BATCH_FILES, WORKERS
from refstore.services.versions import VersionRecord

Progress = Callable[[int, int], None]


def entries(repo: Repository, version: VersionRecord) -> list[Entry]:
    try:
        return list(walk(repo.record, version.digest))
    except RecursionError as exc:  # a hostile manifest nested deeper than any real directory tree
        raise IntegrityError(f"manifest of {version.qualified} nests directories too deeply; it is corrupt") from exc


def check_totals(version: VersionRecord, items: list[Entry]) -> None:
    """Refuse a manifest that does not add up to its version's recorded size and file count."""
    if (sum(e.size for e in items), len(items)) != (version.size, version.file_count):
        raise IntegrityError(f"manifest of {version.qualified} does not add up to its recorded size and file count")


def check_declared(repo: Repository, version: VersionRecord, items: list[Entry], digests: dict[str, str]) -> None:
    """Refuse entries whose objects are not the size the manifest declares, before anything is written."""
    for entry in items:
        digest = digests[entry.path]
        if entry.ref is None and os.stat(repo.cache.path(digest)).st_size != entry.size:
            repo.cache.verified_path(digest)  # a damaged object is reported (and removed) as such
            raise IntegrityError(
                f"manifest of {version.qualified} declares {entry.size} bytes for {entry.path}, "
                f"but object {digest} has a different size; the manifest is corrupt"
            )


def check_objects(repo: Repository, version: VersionRecord, items: list[Entry], digests: dict[str, str]) -> None:
    """Re-hash every object a link checkout will hand over, and check its declared size, before anything is written.

    What :func:`check_declared` guarantees for a copy (no write before the sizes
    add up), plus the per-object re-hash a link needs, in one read per object
    and no ``stat``: the link pass then needs no read of its own.
    """

    def check(batch: list[Entry]) -> None:
        for entry in batch:
            try:
                check_object(repo.cache, digests[entry.path], entry.size if entry.ref is None else None)
            except ValueError as exc:
                raise IntegrityError(
                    f"manifest of {version.qualified} declares {entry.size} bytes for {entry.path}, "
                    f"but object {digests[entry.path]} has a different size; the manifest is corrupt"
                ) from exc

    batches = [items[i : i + BATCH_FILES] for i in range(0, len(items), BATCH_FILES)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for _ in pool.map(check, batches):
            pass


@dataclass
class CheckoutResult:
    root: Path
    written: int
    unchanged: int
    modes: dict[str, int]


def _plan(root: Path, items: list[Entry]) -> dict[str, list[tuple[Entry, str]]]:
    """Group entries by target directory, refusing any path that escapes ``root``.

    The full :func:`safe_join` check (normalization and symlink resolution)
    runs once per directory; each file name inside it only needs to be one
    clean path component, which is checked cheaply.
    """
    plan: dict[str, list[tuple[Entry, str]]] = {}
    checked: dict[str, str] = {}
    for entry in items:
        parent, _, name = entry.path.rpartition("/")
        directory = checked.get(parent)
        if directory is None:
            target = safe_join(root, entry.path)
            directory = checked[parent] = str(target.parent)
        elif name in ("", ".", "..") or "/" in name or "\\" in name or ":" in name or "\x00" in name:
            safe_join(root, entry.path)  # raises with the precise reason
        plan.setdefault(directory, []).append((entry, name))
    return plan


def _batches(plan: dict[str, list[tuple[Entry, str]]]) -> list[list[tuple[Entry, str, str]]]:
    batches: list[list[tuple[Entry, str, str]]] = []
    current: list[tuple[Entry, str, str]] = []
    weight = 0
    for directory, members in plan.items():
        for entry, name in members:
            current.append((entry, directory, name))
            weight += entry.size
            if len(current) >= BATCH_FILES or weight >= BATCH_BYTES:
                batches.append(current)
                current, weight = [], 0
    if current:
        batches.append(current)
    return batches


def download(
    repo: Repository,
    version: VersionRecord,
    root: Path,
    *,
    link: str = "copy",
    progress: Progress | None = None,
    only: Collection[str] | None = None,
) -> CheckoutResult:
    """Write every file of ``version`` under ``root``, verified.

    Files already there with the right bytes are left alone; others are
    replaced atomically. Extra files in ``root`` are not touched. ``only``
    limits the work to those manifest paths (the git integration passes the
    files its status found different, so unchanged files are not re-read).
    Each target directory is created and listed once; files absent from the
    listing take the fast path of :func:`materialize_new`, in batches on
    worker threads.
    """
    check_mode(link)
    items = entries(repo, version)
    check_totals(version, items)
    if only is not None:
        items = [entry for entry in items if entry.path in only]
    plan = _plan(root, items)  # refuse escapes before writing
    with repo.writing():
        digests = fill_cache(repo, items)
    linking = link in ("hardlink", "symlink")
    if linking:
        check_objects(repo, version, items, digests)
    else:
        check_declared(repo, version, items, digests)
    root.mkdir(parents=True, exist_ok=True)
    present: dict[str, set[str]] = {}
    for directory, members in plan.items():
        os.makedirs(directory, exist_ok=True)
        present[directory] = set(os.listdir(directory))
        _remove_stale_temps(directory, {name for _, name in members}, present[directory])
    modes: dict[str, int] = {}
    done = [0, 0]
    mode = [link]
    objects = f"{repo.cache.objects}/"
    dir_fds: dict[str, int] = {}

    def place(entry: Entry, directory: str, name: str) -> str | None:
        digest = digests[entry.path]
        if name not in present[directory]:
            fd = dir_fds.get(directory)
            if fd is not None:  # a verified hardlink into a fresh name: linkat relative to the open directory
                try:
                    os.link(f"{objects}{digest[:2]}/{digest[2:]}", name, dst_dir_fd=fd)
                    return "hardlink"
                except OSError:
                    pass  # the name appeared, another device, too many links: the general path decides
            return materialize_new(repo.cache, digest, f"{directory}/{name}", mode[0], verified=linking)
        target = Path(directory, name)
        if mode[0] in ("copy", "auto", "reflink") and matches(target, digest, entry.size, repo.algorithm):
            return None
        return materialize(repo.cache, digest, target, mode[0])

    batches = _batches(plan)
    try:
        if link == "hardlink":
            for directory in plan:
                dir_fds[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        unchanged = _place_all(batches, place, link, mode, modes, done, progress)
    finally:
        for fd in dir_fds.values():
            os.close(fd)
    return CheckoutResult(root, sum(modes.values()), unchanged, modes)


def _place_all(
    batches: list[list[tuple[Entry, str, str]]],
    place: Callable[[Entry, str, str], str | None],
    link: str,
    mode: list[str],
    modes: dict[str, int],
    done: list[int],
    progress: Progress | None,
) -> int:
    """Run ``place`` over every batch on worker threads; return how many files were already right."""
    unchanged = 0

    def place_batch(batch: list[tuple[Entry, str, str]]) -> list[str | None]:
        return [place(*item) for item in batch]

    if link == "auto" and batches:
        # Probe reflink support once; without it "auto" is a plain copy for every file.
        first = batches[0][0]
        used = place(*first)
        if used == "copy":
            mode[0] = "copy"
        batches[0] = batches[0][1:]
        _count(first[0], used, modes, done, progress)
        if used is None:
            unchanged += 1
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for batch, results in zip(batches, pool.map(place_batch, batches), strict=True):
            for (entry, _, _), used in zip(batch, results, strict=True):
                if used is None:
                    unchanged += 1
                _count(entry, used, modes, done, None)
            if progress is not None:
                progress(done[0], done[1])
    return unchanged


def _remove_stale_temps(directory: str, names: set[str], present: set[str]) -> None:
    """Remove temp files a killed checkout left beside the files this one writes.

    Only names of :func:`named_temp_beside`'s exact pattern for a file of this
    version are touched (``.NAME.<16 hex>.tmp``); anything else in the target is
    the user's. A checkout running into the same directory at the same time
    could lose its temp file and fail; it never leaves a wrong file behind.
    """
    for leftover in sorted(present):
        match = TEMP_BESIDE.fullmatch(leftover)
        if match is None or match.group(1) not in names:
            continue
        path = os.path.join(directory, leftover)
        if os.path.isfile(path) or os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            present.discard(leftover)


def _count(entry: Entry, used: str | None, modes: dict[str, int], done: list[int], progress: Progress | None) -> None:
    if used is not None:
        modes[used] = modes.get(used, 0) + 1
    done[0] += 1
    done[1] += entry.size
    if progress is not None:
        progress(done[0], done[1])


@dataclass(frozen=True)
class Problem:
    status: str  # "missing" | "modified" | "extra"
    path: str
    detail: str = ""


def verify_directory(repo: Repository, version: VersionRecord, root: Path, *, allow_extra: bool = False) -> list[Problem]:
    """Compare ``root`` with ``version`` byte for byte (by digest)."""
    problems: list[Problem] = []
    expected: set[str] = set()
    for entry in entries(repo, version):
        expected.add(entry.path)
        target = safe_join(root, entry.path)
        if not target.is_file():
            problems.append(Problem("missing", entry.path))
            continue
        if entry.digest is None:
            if entry.ref is not None and entry.ref.get("checksum") == "none":
                continue  # recorded with checksum=False: no size or digest to compare
            size = target.stat().st_size
            if size != entry.size:
                problems.append(Problem("modified", entry.path, f"size {size}, expected {entry.size}"))
            continue
        digest, size = hashing.hash_file(target, repo.algorithm)
        if digest != entry.digest:
            problems.append(Problem("modified", entry.path, f"digest {digest}, expected {entry.digest}"))
    if not allow_extra and root.is_dir():
        for directory, _, files in os.walk(root):
            for name in files:
                rel = Path(directory, name).relative_to(root).as_posix()
                if rel not in expected:
                    problems.append(Problem("extra", rel))
    return sorted(problems, key=lambda p: p.path)
