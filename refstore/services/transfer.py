"""Moving objects between the cache and a remote: concurrent, batched, verified.

Objects larger than ``SMALL`` travel one per task (streamed). Smaller ones go in
batches of up to ``BATCH_FILES`` objects / ``BATCH_BYTES`` bytes, each batch one
fsspec ``pipe``/``cat`` call: on the async backends (s3fs, gcsfs, adlfs) that
runs the batch's requests concurrently on one event loop instead of paying a
thread hop and a call setup per object (measured in ``benchmarks/remote_batching.py``).
At most ``jobs`` tasks run at once.

Downloads are untrusted: every object is hashed while it is staged and must
match the digest it was asked for; it is published under that digest only then,
after the batch is flushed to disk, so a kill at any point leaves only temp files.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from refstore.core.objects import SYNC_EACH_UP_TO, durable_sync, fsync_file
from refstore.core.remotefs import LocalBatch, RemoteFS
from refstore.core.repo import Repository
from refstore.errors import IntegrityError, NotFoundError
from refstore.services.remote_layout import object_path

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (files done, bytes done)
SMALL = 256 * 1024
BATCH_FILES = 64
BATCH_BYTES = 8 * 1024 * 1024
LARGE_FSYNC = 64 << 20  # downloaded objects this large are flushed by the worker that staged them
LOCAL_BATCH_FILES = 256  # a local copy is cheap: fewer, larger tasks
LOCAL_PLACE_EVERY = 4096  # objects staged before one flush-and-place (bounds memory and leftovers)
LOCAL_QUEUED = 16  # tasks waiting per thread: enough for the workers to go on while this thread places a batch
LOCAL_JOBS = 2  # copying threads for a local directory: more only contend for the GIL (8 threads: 1M futex calls / 20k)


def batches(items: Sequence[tuple[str, int]], *, batch: bool = True, files: int = BATCH_FILES) -> Iterator[list[tuple[str, int]]]:
    """Group (digest, size) pairs: large ones alone, small ones together."""
    group: list[tuple[str, int]] = []
    group_bytes = 0
    for digest, size in items:
        if not batch or size > SMALL:
            yield [(digest, size)]
            continue
        group.append((digest, size))
        group_bytes += size
        if len(group) >= files or group_bytes >= BATCH_BYTES:
            yield group
            group, group_bytes = [], 0
    if group:
        yield group


def _run(
    tasks: Iterator[list[tuple[str, int]]],
    work: Callable[[list[tuple[str, int]]], int],
    jobs: int,
    progress: Progress | None,
    *,
    queued: int = 2,
) -> tuple[int, int]:
    """Run ``work`` over the batches with at most ``jobs`` running and ``queued`` per job waiting.

    Progress is reported from this thread as tasks finish. A caller whose
    ``progress`` does slow work of its own (placing a local batch) asks for a
    deeper queue, so the workers are not left idle meanwhile.
    """
    done_files = done_bytes = 0
    jobs = max(1, jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: dict[Future[int], list[tuple[str, int]]] = {}
        try:
            for group in tasks:
                if len(pending) >= jobs * queued:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        group_done = pending.pop(future)
                        done_files += future.result()
                        done_bytes += sum(s for _, s in group_done)
                        if progress is not None:
                            progress(done_files, done_bytes)
                pending[pool.submit(work, group)] = group
            for future in list(pending):
                group_done = pending.pop(future)
                done_files += future.result()
                done_bytes += sum(s for _, s in group_done)
                if progress is not None:
                    progress(done_files, done_bytes)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return done_files, done_bytes


def upload_objects(
    repo: Repository,
    remote: RemoteFS,
    items: Sequence[tuple[str, int]],
    *,
    jobs: int,
    progress: Progress | None = None,
    batch: bool = True,
) -> tuple[int, int]:
    """Copy objects (digest, size) from the cache to the remote. Returns (files, bytes)."""
    if remote.local:
        return _upload_local(repo, remote, items, jobs=jobs, progress=progress, batch=batch)

    def work(group: list[tuple[str, int]]) -> int:
        if len(group) == 1 and group[0][1] > SMALL:
            digest = group[0][0]
            remote.upload(object_path(digest), repo.cache.verified_path(digest))
            return 1
        payload = {object_path(d): _read_verified(repo, d) for d, _ in group}
        remote.write_many(payload)
        return len(group)

    return _run(batches(items, batch=batch), work, jobs, progress)


def _upload_local(
    repo: Repository,
    remote: RemoteFS,
    items: Sequence[tuple[str, int]],
    *,
    jobs: int,
    progress: Progress | None,
    batch: bool,
) -> tuple[int, int]:
    """:func:`upload_objects` to a local directory: small objects staged, then placed with one flush.

    A per-batch sync (the generic path) cost two machine-wide ``sync`` calls per
    64 objects; here every ``LOCAL_PLACE_EVERY`` staged objects share two
    ``syncfs``, placed by this thread while the workers go on staging.
    """
    with remote.local_batch() as staging:

        def work(group: list[tuple[str, int]]) -> int:
            if len(group) == 1 and group[0][1] > SMALL:
                _copy_verified(repo, group[0][0], staging, remote)
                return 1
            for digest, size in group:
                data, rel = _read_verified(repo, digest, size), object_path(digest)
                remote.call(f"writing {rel}", functools.partial(staging.stage, rel, data), writing=True)
            return len(group)

        def report(files: int, size: int) -> None:
            if len(staging) >= LOCAL_PLACE_EVERY:
                remote.call("writing objects", staging.place, writing=True)
            if progress is not None:
                progress(files, size)

        tasks = batches(items, batch=batch, files=LOCAL_BATCH_FILES)
        done = _run(tasks, work, min(jobs, LOCAL_JOBS), report, queued=LOCAL_QUEUED)
        remote.call("writing objects", staging.place, writing=True)
    return done


def _copy_verified(repo: Repository, digest: str, staging: LocalBatch, remote: RemoteFS) -> None:
    """Stream a large object to the staging area, hashing on the way: read once, never push corrupt bytes.

    The remote side goes through ``remote.call`` so a full disk there is one clear
    line; the corruption check raises inside the staged file's block, so a
    corrupt copy is dropped, never placed.
    """
    from refstore.core import hashing

    rel = object_path(digest)
    with open(repo.cache.path(digest), "rb") as source:

        def copy() -> None:
            with staging.open(rel) as target:
                actual, _ = hashing.copy_and_hash(source, target, repo.algorithm)
                if actual != digest:
                    repo.cache.quarantine(digest)
                    raise IntegrityError(
                        f"cached object {digest} is corrupt (hashes to {actual}); it was removed - re-add it",
                        expected=digest,
                        got=actual,
                    )

        remote.call(f"writing {rel}", copy, writing=True)


def _read_verified(repo: Repository, digest: str, size: int | None = None) -> bytes:
    """Never push bytes that are corrupt in the local cache."""
    from refstore.core import hashing

    path = f"{repo.cache.objects}/{digest[:2]}/{digest[2:]}"  # digest from our own records
    if size is None:
        with open(path, "rb", buffering=0) as handle:
            data = handle.readall()
    else:  # one read when the size is known; a mismatch is re-read whole before it counts
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
    actual = hashing.hash_bytes(data, repo.algorithm)
    if actual != digest and size is not None:
        return _read_verified(repo, digest)
    if actual != digest:
        repo.cache.quarantine(digest)
        raise IntegrityError(
            f"cached object {digest} is corrupt (hashes to {actual}); it was removed - re-add it", expected=digest, got=actual
        )
    return data


def download_objects(
    repo: Repository,
    remote: RemoteFS,
    items: Sequence[tuple[str, int]],
    *,
    jobs: int,
    progress: Progress | None = None,
    missing_ok: bool = False,
    batch: bool = True,
) -> tuple[int, int]:
    """Fetch objects (digest, size) from the remote into the cache, verifying each digest.

    Staged objects are published every ``LOCAL_PLACE_EVERY`` (by this thread,
    while the workers go on fetching) with the cache's batched durable publish:
    one ``syncfs`` before and after the renames, not a flush per batch of 64.
    """
    from refstore.core import hashing

    length = hashing.digest_length(repo.algorithm)
    for digest, _ in items:  # names from the remote become paths: refuse anything but a digest
        if len(digest) != length or digest.strip("0123456789abcdef"):
            raise IntegrityError(f"invalid object digest {digest!r}")
    absent = repo.cache.missing(d for d, _ in items)
    items = [(d, s) for d, s in items if d in absent]
    staged: list[tuple[str, str]] = []  # (temp, digest)
    lock = threading.Lock()

    def keep(temp: Path, digest: str) -> None:
        with lock:
            staged.append((str(temp), digest))

    def work(group: list[tuple[str, int]]) -> int:
        count = 0
        if len(group) == 1 and group[0][1] > SMALL:
            digest = group[0][0]
            try:
                with remote.open_read(object_path(digest)) as handle:
                    temp = _stage(repo, remote, handle, digest)
                if group[0][1] >= LARGE_FSYNC:
                    fsync_file(temp)  # here, overlapping other downloads, rather than all at publish time
                keep(temp, digest)
                count += 1
            except FileNotFoundError:
                if not missing_ok:
                    raise _missing(remote, digest) from None
            return count
        if remote.local:  # one open and one read per object, staged from the buffer
            for digest, size in group:
                data = remote.call(f"reading {object_path(digest)}", functools.partial(_read_local, remote, digest, size))
                if data is None:
                    if not missing_ok:
                        raise _missing(remote, digest)
                    continue
                keep(Path(_stage_bytes(repo, remote, data, digest)), digest)
                count += 1
            return count
        try:
            found = remote.read_many([object_path(d) for d, _ in group])
        except FileNotFoundError:
            found = {}
            for digest, _ in group:
                try:
                    found[object_path(digest)] = remote.read(object_path(digest))
                except FileNotFoundError:
                    if not missing_ok:
                        raise _missing(remote, digest) from None
        for digest, _ in group:
            data = found.get(object_path(digest))
            if data is not None:
                keep(_stage(repo, remote, io.BytesIO(data), digest), digest)
                count += 1
        return count

    unflushed = [False]  # set once a batch was published without flushing its names

    def publish(last: bool = True) -> None:
        with lock:  # objects staged from here on wait for the next publish
            ready = staged[:]
            del staged[:]
        try:
            # Names of an intermediate batch are made durable by the next batch's first flush
            # (the last batch flushes its own): one syncfs saved per intermediate batch.
            repo.cache.publish_durably(ready, flush_names=last)
            if last and unflushed[0] and len(ready) <= SYNC_EACH_UP_TO:
                durable_sync(repo.cache.root)  # a small last batch syncs only its own files and shards
            unflushed[0] = unflushed[0] or not last
        except BaseException:
            with lock:
                staged.extend(ready)  # removed below (the published ones are gone from tmp/)
            raise

    def report(files: int, size: int) -> None:
        if len(staged) >= LOCAL_PLACE_EVERY:
            publish(last=False)
        if progress is not None:
            progress(files, size)

    with repo.writing():
        try:
            if remote.local:  # as for uploads: a local copy is cheap, more threads only fight over the GIL
                tasks, jobs, queued = batches(items, batch=batch, files=LOCAL_BATCH_FILES), min(jobs, LOCAL_JOBS), LOCAL_QUEUED
            else:
                tasks, queued = batches(items, batch=batch), 2
            done = _run(tasks, work, jobs, report, queued=queued)
            publish()
        finally:
            for temp, _ in staged:  # not published: a failure stopped the transfer
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
    return done


def _read_local(remote: RemoteFS, digest: str, size: int) -> bytes | None:
    """An object of a local-directory remote (None when absent), read with one ``read`` when it has ``size`` bytes."""
    try:
        fd = os.open(f"{remote.root}/{object_path(digest)}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, size + 1)
        if len(data) != size:  # not the size the manifest says: read it all, the hash decides
            while chunk := os.read(fd, 1 << 20):
                data += chunk
    finally:
        os.close(fd)
    return data


def _stage_bytes(repo: Repository, remote: RemoteFS, data: bytes, digest: str) -> str:
    """Stage downloaded bytes after checking they hash to ``digest``."""
    from refstore.core import hashing

    actual = hashing.hash_bytes(data, repo.algorithm)
    if actual != digest:
        raise IntegrityError(
            f"object {digest} on remote {remote.url} is corrupt (bytes hash to {actual}); it was not stored - repair the remote",
            expected=digest,
            got=actual,
        )
    return repo.cache.stage_bytes(data)


def _stage(repo: Repository, remote: RemoteFS, handle: io.BufferedIOBase | object, digest: str) -> Path:
    try:
        _, _, temp = repo.cache.stage_stream(handle, expected=digest)  # type: ignore[arg-type]
    except IntegrityError as exc:
        raise IntegrityError(
            f"object {digest} on remote {remote.url} is corrupt ({exc.message}); it was not stored - repair the remote",
            expected=digest,
            got=exc.got,
        ) from exc
    return temp


def _missing(remote: RemoteFS, digest: str) -> NotFoundError:
    return NotFoundError(f"object {digest} is not on remote {remote.url}; push it from a store that has it")
