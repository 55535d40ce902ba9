"""Corruption of remote data: single-byte flips in a remote's objects and records.

A remote is untrusted. Each flip is made in place on the remote, then a fresh
clone reads it: ``pull`` for records (version, manifest, number claim, alias),
``pull --objects`` and ``get`` for objects. Every flip must be *detected* (an
error naming the corrupt digest or file, nothing imported, no object under a
digest with other bytes) or *harmless* (the import is exactly what the
unflipped remote gives - e.g. a flip in the ``number`` hint of an alias record,
which pull does not use). *Silent* (something else imported) must never happen.
The counts are in docs/reliability.md (run with ``-s`` to print them).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import make_tree
from faultkit import snapshot
from servers import ServerHandle

import refstore
from refstore.errors import RefstoreError

FILES = {
    "a.txt": b"a small object of some bytes, pushed to a remote!\n",
    "sub/b.bin": bytes(range(256))[:150],
    "big.bin": random.Random(5).randbytes(300_000),  # above transfer.SMALL: streamed, not batched
}
# Files larger than this get sampled positions (header, middle, end and random), smaller ones every byte.
EVERY_BYTE_UP_TO = 1024
SAMPLES = 40


@dataclass
class Tally:
    detected: int = 0
    harmless: int = 0
    silent: list[str] = field(default_factory=list)


def positions(size: int, seed: int, count: int = SAMPLES) -> list[int]:
    if size <= EVERY_BYTE_UP_TO:
        return list(range(size))
    fixed = {0, 1, 2, size // 2, size - 2, size - 1}
    rng = random.Random(seed)
    return sorted(fixed | {rng.randrange(size) for _ in range(count - len(fixed))})


class DirRemote:
    """Flip bytes of a directory remote in place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.chmod(0o644)
        path.write_bytes(data)


class S3Remote:
    def __init__(self, fs: object, url: str) -> None:
        self.fs = fs
        self.url = url
        self.bucket_path = url.removeprefix("s3://")

    def files(self) -> list[str]:
        found = self.fs.find(self.bucket_path)  # type: ignore[attr-defined]
        return sorted(p.removeprefix(self.bucket_path + "/") for p in found)

    def read(self, rel: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self.bucket_path}/{rel}"))  # type: ignore[attr-defined]

    def write(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.bucket_path}/{rel}", data)  # type: ignore[attr-defined]


def push_source(work: Path, url: str) -> dict[str, str]:
    """A store with one version (two directory records), an alias, pushed to ``url``. Returns kind -> remote path."""
    make_tree(work / "data", FILES)
    with refstore.init(work) as store:
        art = refstore.Artifact("ds", metadata={"epoch": 3, "note": "flips"})
        art.add_dir(work / "data")
        store.log_artifact(art, aliases=["prod"])
        store.add_remote("origin", url)
        store.push()
        version = store.artifact("ds")
        digests = {e.path: e.digest for e in version.files()}
        manifest = version.record.digest
        sub = next(n.digest for n in store.repo.record(manifest) if n.name == "sub")
    return {"manifest": manifest, "sub": str(sub), **{k: str(v) for k, v in digests.items()}}


def classify(remote: DirRemote | S3Remote) -> dict[str, str]:
    """Remote path -> what kind of file it is."""
    kinds: dict[str, str] = {}
    for rel in remote.files():
        top = rel.split("/", 1)[0]
        kinds[rel] = {"objects": "object", "trees": "manifest record", "versions": "version record"}.get(top, top)
        if top == "numbers":
            kinds[rel] = "number claim"
        elif top == "aliases":
            kinds[rel] = "alias record"
    return kinds


def names_it(message: str, rel: str) -> bool:
    """The error names the corrupt file: its digest, its path, or (claims) its version."""
    parts = rel.split("/")
    candidates = {rel}
    if parts[0] in ("objects", "trees"):
        candidates.add(parts[1] + parts[2])
    elif parts[0] == "versions":
        candidates.add(parts[3].removesuffix(".json"))
    elif parts[0] == "numbers":
        candidates.add(f"{parts[1]}/{parts[2]}:{parts[3]}")
    return any(c in message for c in candidates)


class FreshClone:
    """An empty store with the remote added: what a clone is before its first pull."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.count = 0
        self.store = self._new()

    def _new(self) -> refstore.Store:
        self.count += 1
        work = self.root / f"clone{self.count}"
        store = refstore.init(work)
        store.add_remote("origin", self.url)
        return store

    def renew(self) -> None:
        self.store.close()
        shutil.rmtree(self.store.path.parent)
        self.store = self._new()

    def state(self) -> tuple[object, int, list[str]]:
        trees = int(self.store.repo.db.scalar("SELECT count(*) FROM trees") or 0)
        return snapshot(self.store.path), trees, sorted(self.store.repo.cache.digests())


def sweep_records(
    remote: DirRemote | S3Remote, clone: FreshClone, kinds: set[str], sample: int | None = None
) -> dict[str, Tally]:
    """Flip every (or a sample of) byte of every record of ``kinds``; ``pull`` into a fresh clone each time."""
    clone.store.pull()
    expected = clone.state()
    clone.renew()
    empty = clone.state()
    tallies: dict[str, Tally] = {}
    for rel, kind in sorted(classify(remote).items()):
        if kind not in kinds:
            continue
        tally = tallies.setdefault(kind, Tally())
        original = remote.read(rel)
        spots = positions(len(original), seed=len(rel))
        if sample is not None:
            spots = sorted(random.Random(rel).sample(spots, min(sample, len(spots))))
        for position in spots:
            for mask in (0xFF, 1 << (position % 8)):
                changed = bytearray(original)
                changed[position] ^= mask
                remote.write(rel, bytes(changed))
                try:
                    clone.store.pull()
                except RefstoreError as exc:
                    assert names_it(exc.message, rel), (rel, position, exc.message)
                    assert clone.state() == empty, (rel, position, "imported something before failing")
                    tally.detected += 1
                else:
                    if clone.state() == expected:
                        tally.harmless += 1
                    else:
                        tally.silent.append(f"{rel}@{position}^{mask:#x}")
                    clone.renew()
        remote.write(rel, original)
    return tallies


def sweep_objects(remote: DirRemote | S3Remote, clone: FreshClone, tmp: Path, sample: int | None = None) -> dict[str, Tally]:
    """Flip bytes of every object; ``pull --objects`` and ``get`` in a clone must refuse and store nothing."""
    clone.store.pull()
    tally = Tally()
    for rel, kind in sorted(classify(remote).items()):
        if kind != "object":
            continue
        digest = rel.split("/")[1] + rel.split("/")[2]
        original = remote.read(rel)
        spots = positions(len(original), seed=len(original))
        if sample is not None:
            spots = sorted(random.Random(rel).sample(spots, min(sample, len(spots))))
        for position in spots:
            changed = bytearray(original)
            changed[position] ^= 1 << (position % 8)
            remote.write(rel, bytes(changed))
            for attempt in ("pull --objects", "get"):
                try:
                    if attempt == "get":
                        clone.store.artifact("ds").download(tmp / "out")
                    else:
                        clone.store.pull(objects=True)
                except RefstoreError as exc:
                    assert digest in exc.message and "corrupt" in exc.message, (rel, position, exc.message)
                    assert not clone.store.repo.cache.has(digest), (rel, position)
                    assert clone.store.verify().ok
                    tally.detected += 1
                else:
                    tally.silent.append(f"{rel}@{position} ({attempt})")
                finally:
                    shutil.rmtree(tmp / "out", ignore_errors=True)
            # the other objects were fetched; drop them so each flip starts alike
            for other in list(clone.store.repo.cache.digests()):
                clone.store.repo.cache.remove(other)
        remote.write(rel, original)
    return {"object": tally}


def report(title: str, tallies: dict[str, Tally]) -> None:
    for kind, t in sorted(tallies.items()):
        print(f"{title} {kind}: {t.detected} detected, {t.harmless} harmless, {len(t.silent)} silent")
    for kind, t in tallies.items():
        assert not t.silent, (kind, t.silent[:5])
        assert t.detected > 0, kind


RECORD_KINDS = {"version record", "manifest record", "number claim", "alias record"}


@pytest.fixture
def dir_remote(tmp_path: Path) -> Iterator[DirRemote]:
    push_source(tmp_path / "src", str(tmp_path / "remote"))
    yield DirRemote(tmp_path / "remote")


def test_every_flip_in_a_remote_record_is_detected(dir_remote: DirRemote, tmp_path: Path) -> None:
    clone = FreshClone(tmp_path / "clones", dir_remote.url)
    tallies = sweep_records(dir_remote, clone, RECORD_KINDS)
    assert set(tallies) == RECORD_KINDS
    report("directory", tallies)
    clone.store.close()


def test_every_flip_in_a_remote_object_is_detected(dir_remote: DirRemote, tmp_path: Path) -> None:
    clone = FreshClone(tmp_path / "clones", dir_remote.url)
    tallies = sweep_objects(dir_remote, clone, tmp_path)
    report("directory", tallies)
    clone.store.close()


def test_remote_flips_on_s3_sample(s3_server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small sample on moto: 3 positions per record (2 masks each), 3 per object."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    s3_server.make_bucket("flips")
    url = "s3://flips/remote"
    push_source(tmp_path / "src", url)
    remote = S3Remote(s3_server.filesystem(), url)
    clone = FreshClone(tmp_path / "clones", url)
    tallies = sweep_records(remote, clone, RECORD_KINDS, sample=3)
    clone.renew()
    tallies.update(sweep_objects(remote, clone, tmp_path, sample=3))
    report("s3", tallies)
    clone.store.close()
