"""The benchmark's datasets are deterministic, and the fast paths added for speed keep the design's properties.

No timings are asserted anywhere: the benchmark itself (tiny sizes) runs from tests/run.sh.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_tree

import refstore
from refstore.core import objects
from refstore.errors import IntegrityError, UnsafePathError

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import datasets


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_datasets_are_deterministic_and_shaped_as_asked(tmp_path: Path) -> None:
    spec = datasets.Spec(files=30, folders=4, min_kib=1, max_kib=2, large=1, large_mib=1)
    total = datasets.generate(tmp_path / "one", spec)
    datasets.generate(tmp_path / "two", spec)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    small = [p for p in (tmp_path / "one").rglob("f*.bin")]
    assert len(small) == 30 and len({p.parent for p in small}) == 4
    assert all(1024 <= p.stat().st_size <= 2048 for p in small)
    assert sum(p.stat().st_size for p in (tmp_path / "one").rglob("*") if p.is_file()) == total
    assert len({p.read_bytes() for p in small}) == 30  # distinct content: no accidental dedup
    before = (tmp_path / "one" / "large0.bin").stat().st_mtime_ns
    assert datasets.generate(tmp_path / "one", spec) == total  # reused, not rewritten
    assert (tmp_path / "one" / "large0.bin").stat().st_mtime_ns == before
    assert datasets.curve_spec(80_000).folders == 800


def test_staged_objects_are_invisible_until_published(store: refstore.Store, tmp_path: Path) -> None:
    cache = store.repo.cache
    source = make_tree(tmp_path / "src", {"small.bin": b"x" * 100, "big.bin": os.urandom((1 << 20) + 5)})
    for name in ("small.bin", "big.bin"):
        with open(source / name, "rb") as handle:
            digest, _, temp = cache.stage_stream(handle)
        assert temp.exists() and not cache.has(digest)
        assert digest not in set(cache.digests())  # verify and gc never see a half-made object
        assert temp.stat().st_mode & 0o222 == 0  # created read-only, no chmod needed later
        cache.publish_many([(temp, digest)])
        assert cache.has(digest) and not temp.exists()
        assert cache.check(digest)


def test_staging_leftovers_stay_in_tmp_and_gc_removes_them(store: refstore.Store, tmp_path: Path) -> None:
    cache = store.repo.cache
    with open(make_tree(tmp_path / "s", {"a": "crash"}) / "a", "rb") as handle:
        _, _, temp = cache.stage_stream(handle)  # as if killed before publish
    assert temp.parent == cache.tmp  # the objects directory only ever holds whole objects
    assert temp in cache.clean_tmp()
    assert not temp.exists()


@pytest.mark.parametrize("list_at", [1, 10_000])  # listing shards, and one stat per object
def test_stat_cache_hit_is_rehashed_when_its_object_is_gone(
    store: refstore.Store, workdir: Path, monkeypatch: pytest.MonkeyPatch, list_at: int
) -> None:
    monkeypatch.setattr(objects, "_LIST_SHARD_AT", list_at)
    data = make_tree(workdir / "data", {f"f{i}.txt": f"content {i}" for i in range(30)})
    old = 1_600_000_000
    for path in data.iterdir():
        os.utime(path, (old, old))
    art = refstore.Artifact("ds")
    art.add_dir(data)
    first = store.log_artifact(art)
    assert store.repo.db.scalar("SELECT COUNT(*) FROM stat_cache") == 30
    gone = first.files()[0]
    assert gone.digest is not None
    store.repo.cache.quarantine(gone.digest)  # what gc or a corrupt-object check does
    art = refstore.Artifact("ds")
    art.add_dir(data)
    assert not store.log_artifact(art).created
    assert store.repo.cache.has(gone.digest)  # re-read from the file, not trusted from the stat cache
    assert store.verify().ok


def test_missing_reports_absent_objects_both_ways(store: refstore.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = store.repo.cache
    present = [cache.add_bytes(f"object {i}".encode()) for i in range(40)]
    absent = {"ab" + "0" * 30, present[0][:2] + "f" * 30}
    for list_at in (1, 10_000):
        monkeypatch.setattr(objects, "_LIST_SHARD_AT", list_at)
        assert cache.missing([*present, *absent]) == absent


@pytest.mark.parametrize("mode", ["hardlink", "symlink", "copy", "auto"])
def test_checkout_fast_path_verifies_and_keeps_objects_read_only(store: refstore.Store, workdir: Path, mode: str) -> None:
    data = make_tree(workdir / "data", {f"d{i % 3}/f{i}.txt": f"file {i}" for i in range(12)})
    art = refstore.Artifact("ds")
    art.add_dir(data)
    version = store.log_artifact(art)
    out = version.download(workdir / f"out-{mode}", link=mode)
    version.verify(out)  # raises unless every file matches
    for i in range(12):
        target = out / f"d{i % 3}" / f"f{i}.txt"
        assert target.read_text() == f"file {i}"
        if mode == "hardlink":
            assert target.stat().st_nlink >= 2 and not target.stat().st_mode & stat.S_IWUSR
    # A second checkout over the first leaves correct files alone and rewrites nothing wrong.
    (out / "d0" / "f0.txt").unlink()
    version.download(out, link=mode)
    assert (out / "d0" / "f0.txt").read_text() == "file 0"
    assert not list(out.rglob(".*.tmp"))


def test_checkout_fast_path_refuses_corrupt_object(store: refstore.Store, workdir: Path) -> None:
    data = make_tree(workdir / "data", {"a.txt": "precious"})
    art = refstore.Artifact("ds")
    art.add_dir(data)
    version = store.log_artifact(art)
    digest = version.files()[0].digest
    assert digest is not None
    path = store.repo.cache.path(digest)
    os.chmod(path, 0o644)
    path.write_text("tampered")
    for mode in ("hardlink", "copy"):
        with pytest.raises(IntegrityError):
            version.download(workdir / f"out-{mode}", link=mode)
        assert not (workdir / f"out-{mode}" / "a.txt").exists()
        assert not store.repo.cache.has(digest)  # quarantined
        path.parent.mkdir(exist_ok=True)
        path.write_text("tampered")


def test_scan_dir_fast_names_match_normalize(workdir: Path) -> None:
    from refstore.core.paths import normalize
    from refstore.services.ingest import scan_dir

    root = workdir / "names"
    for name in ["plain.txt", "sp ace", "ünï", "a\\b", ".hidden", "sub/inner.txt", "sub/a\\c/deep"]:
        make_tree(root, {name: name})
    found = {f.path: f.source for f in scan_dir(root)}
    assert found == {normalize(os.path.relpath(source, root)): source for source in found.values()}
    assert "a/b" in found and "sub/a/c/deep" in found  # backslashes still become separators
    make_tree(workdir / "drive", {"C:": "x"})
    with pytest.raises(UnsafePathError):
        scan_dir(workdir / "drive")
