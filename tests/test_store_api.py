"""The W&B-like Python API over a real local store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import make_tree

import refstore
from refstore.errors import IntegrityError, NotFoundError, UsageError


def log_dir(store: refstore.Store, path: Path, name: str = "mnist", **kwargs: object) -> refstore.ArtifactVersion:
    art = refstore.Artifact(name, type="dataset")
    art.add_dir(path)
    return store.log_artifact(art, **kwargs)  # type: ignore[arg-type]


def test_log_same_content_returns_existing_version(store: refstore.Store, data_dir: Path) -> None:
    v0 = log_dir(store, data_dir, aliases=["raw"])
    assert (v0.version, v0.created, v0.file_count) == ("v0", True, 3)
    again = log_dir(store, data_dir, aliases=["best"])
    assert (again.version, again.created) == ("v0", False)
    assert again.aliases == ["latest", "best", "raw"]
    (data_dir / "b.txt").write_text("changed")
    v1 = log_dir(store, data_dir)
    assert v1.version == "v1" and v1.digest != v0.digest
    assert store.artifact("mnist").version == "v1"
    assert store.artifact("mnist:raw").version == "v0"
    assert store.artifact(f"mnist@{v0.digest[:10]}").version == "v0"
    assert store.artifact(f"default/mnist:v{0}").digest == v0.digest


def test_add_file_new_file_and_names(store: refstore.Store, workdir: Path) -> None:
    (workdir / "train.csv").write_text("x,y\n1,2\n")
    art = refstore.Artifact("model", type="model", description="cnn", metadata={"acc": 0.9})
    art.add_file("train.csv")
    art.add_file("train.csv", name="copies/train.csv")
    with art.new_file("stats.json") as handle:
        handle.write("{}")
    with art.new_file("blob.bin", mode="wb") as handle:
        handle.write(b"\x00\x01")
    with pytest.raises(UsageError, match="already in artifact"):
        art.add_file("train.csv")
    version = store.log_artifact(art)
    assert [e.path for e in version.files()] == ["blob.bin", "copies/train.csv", "stats.json", "train.csv"]
    assert version.metadata == {"acc": 0.9} and version.description == "cnn" and version.type == "model"
    assert version.size == 8 + 8 + 2 + 2


def test_download_default_root_verify_and_cache_reuse(store: refstore.Store, data_dir: Path, workdir: Path) -> None:
    version = log_dir(store, data_dir)
    path = version.download()
    assert path == workdir / "artifacts" / "mnist" / "v0"
    assert (path / "sub" / "c.bin").read_bytes() == (data_dir / "sub" / "c.bin").read_bytes()
    version.verify(path)
    (path / "a.txt").write_text("tampered")
    with pytest.raises(IntegrityError, match=r"modified a\.txt"):
        version.verify(path)
    (path / "a.txt").unlink()
    with pytest.raises(IntegrityError, match=r"missing a\.txt"):
        version.verify(path)
    version.download(path)
    version.verify(path)
    (path / "extra.txt").write_text("x")
    with pytest.raises(IntegrityError, match=r"extra extra\.txt"):
        version.verify(path)


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "reflink", "auto"])
def test_link_modes_never_expose_writable_objects(store: refstore.Store, data_dir: Path, workdir: Path, mode: str) -> None:
    version = log_dir(store, data_dir)
    target = workdir / f"out-{mode}"
    version.download(target, link=mode)
    version.verify(target)
    cached = store.repo.cache.path(version.files()[0].digest or "")
    assert not os.stat(cached).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    checked_file = target / "a.txt"
    if mode == "hardlink":
        assert os.stat(checked_file).st_ino == os.stat(cached).st_ino
    if mode == "symlink":
        assert checked_file.is_symlink()
    if mode in ("hardlink", "symlink"):
        assert not os.access(checked_file, os.W_OK) or os.geteuid() == 0
        # An editor that saves by replacing the file leaves the object alone.
        tmp = checked_file.with_suffix(".new")
        tmp.write_text("edited")
        os.replace(tmp, checked_file)
        assert store.verify().ok
    else:
        checked_file.write_text("edited in place")
        assert store.verify().ok


def test_in_place_edit_of_hardlink_is_caught(store: refstore.Store, data_dir: Path, workdir: Path) -> None:
    """As root, modes do not stop writes; verify and the next get must catch the damage."""
    if os.geteuid() != 0:
        pytest.skip("only root can write through a read-only hardlink")
    version = log_dir(store, data_dir)
    target = workdir / "linked"
    version.download(target, link="hardlink")
    with open(target / "a.txt", "a") as handle:
        handle.write("oops")
    report = store.verify()
    assert not report.ok and "corrupt" in report.problems[0]
    with pytest.raises(IntegrityError, match="corrupt"):
        version.download(workdir / "again")
    assert not (workdir / "again" / "a.txt").exists()


def test_corrupt_object_is_detected_removed_and_never_handed_over(store: refstore.Store, data_dir: Path, workdir: Path) -> None:
    version = log_dir(store, data_dir)
    entry = next(e for e in version.files() if e.path == "a.txt")
    assert entry.digest is not None
    path = store.repo.cache.path(entry.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"alphA\n")
    with pytest.raises(IntegrityError, match="corrupt"):
        version.download(workdir / "out")
    assert not path.exists()
    assert not (workdir / "out" / "a.txt").exists()
    with pytest.raises(NotFoundError):
        version.download(workdir / "out2")
    log_dir(store, data_dir)  # re-adding the same bytes repairs the cache
    version.download(workdir / "out3")
    assert store.verify().ok


def test_stat_cache_skips_unchanged_files(store: refstore.Store, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_tree(workdir / "data", {f"f{i}.txt": f"{i}" for i in range(20)})
    old = 1_600_000_000
    for path in data.iterdir():
        os.utime(path, (old, old))
    log_dir(store, data)
    hashed: list[str] = []
    original = store.repo.cache.stage_stream

    def counting(source, expected=None):  # type: ignore[no-untyped-def]
        hashed.append(source.name)
        return original(source, expected)

    original_small = store.repo.cache.stage_small_file

    def counting_small(source, size):  # type: ignore[no-untyped-def]
        hashed.append(source)
        return original_small(source, size)

    monkeypatch.setattr(store.repo.cache, "stage_stream", counting)
    monkeypatch.setattr(store.repo.cache, "stage_small_file", counting_small)
    assert not log_dir(store, data).created
    assert hashed == []
    (data / "f3.txt").write_text("changed")
    assert log_dir(store, data).version == "v1"
    assert [Path(p).name for p in hashed] == ["f3.txt"]


def test_bytes_repeated_across_publish_chunks_are_stored_once(
    store: refstore.Store, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refstore.services import ingest

    monkeypatch.setattr(ingest, "PUBLISH_EVERY", 3)  # many chunks: a later one may stage bytes an earlier one published
    monkeypatch.setattr(ingest, "BATCH_FILES", 2)
    data = make_tree(workdir / "data", {f"f{i:02}.txt": f"content {i % 4}" for i in range(40)})
    version = log_dir(store, data)
    assert len({e.digest for e in version.files()}) == 4
    assert len(list(store.repo.cache.digests())) == 4
    assert list(store.repo.cache.tmp.iterdir()) == []
    assert store.verify().ok
    out = version.download(workdir / "out")
    assert sorted(p.read_text() for p in Path(out).iterdir()) == sorted(f"content {i % 4}" for i in range(40))


def test_incremental_version_adds_records_on_changed_path_only(store: refstore.Store, workdir: Path) -> None:
    data = make_tree(workdir / "data", {f"d{i}/s{j}/f{k}": f"{i}{j}{k}" for i in range(5) for j in range(5) for k in range(4)})
    log_dir(store, data)
    before = store.repo.db.scalar("SELECT COUNT(*) FROM trees")
    (data / "d2" / "s3" / "f1").write_text("new")
    log_dir(store, data)
    after = store.repo.db.scalar("SELECT COUNT(*) FROM trees")
    assert after - before == 3


def test_ingest_refuses_file_that_changes_while_read(
    store: refstore.Store, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_tree(workdir / "data", {"grow.txt": "x" * 1000})
    original = store.repo.cache.stage_stream

    def grow_during_read(source, expected=None):  # type: ignore[no-untyped-def]
        result = original(source, expected)
        with open(data / "grow.txt", "a") as handle:
            handle.write("more")
        return result

    monkeypatch.setattr(store.repo.cache, "stage_stream", grow_during_read)
    original_small = store.repo.cache.stage_small_file

    def grow_before_read(source, size):  # type: ignore[no-untyped-def]
        with open(data / "grow.txt", "a") as handle:  # between the scan's stat and the read
            handle.write("more")
        return original_small(source, size)

    monkeypatch.setattr(store.repo.cache, "stage_small_file", grow_before_read)
    with pytest.raises(refstore.RefstoreError, match="changed while it was being read"):
        log_dir(store, data)
    assert store.artifacts() == []
    assert list(store.repo.cache.tmp.iterdir()) == []


def test_delete_and_gc(store: refstore.Store, data_dir: Path) -> None:
    log_dir(store, data_dir, aliases=["keep"])
    (data_dir / "a.txt").write_text("v1 only")
    log_dir(store, data_dir)
    with pytest.raises(UsageError, match="has aliases keep"):
        store.delete("mnist:v0")
    store.delete("mnist:v1")
    report = store.gc(dry_run=True)
    assert len(report.objects) == 1 and len(report.records) == 1
    assert store.gc(dry_run=True).objects == report.objects  # dry run removed nothing
    store.gc()
    assert store.gc(dry_run=True).objects == []
    assert store.verify().ok
    assert store.artifact("mnist").version == "v0"


def test_artifact_listing_and_errors(store: refstore.Store, data_dir: Path) -> None:
    log_dir(store, data_dir)
    log_dir(store, data_dir, name="other/thing")
    rows = store.artifacts()
    assert [(r["project"], r["name"], r["latest"]) for r in rows] == [("default", "mnist", "v0"), ("other", "thing", "v0")]
    with pytest.raises(NotFoundError, match="no version v9"):
        store.artifact("mnist:v9")
    with pytest.raises(NotFoundError, match="no alias"):
        store.artifact("mnist:nope")
    with pytest.raises(UsageError, match="has type 'dataset', not 'model'"):
        art = refstore.Artifact("mnist", type="model")
        art.add_dir(data_dir)
        store.log_artifact(art)
    with pytest.raises(UsageError, match="no files"):
        store.log_artifact(refstore.Artifact("empty"))


def test_sha256_store(workdir: Path, data_dir: Path) -> None:
    with refstore.init(workdir / "s", algorithm="sha256") as store:
        version = log_dir(store, data_dir)
        assert len(version.digest) == 64
        assert store.verify().ok
    with refstore.open(workdir / "s") as reopened:
        assert reopened.repo.algorithm == "sha256"
