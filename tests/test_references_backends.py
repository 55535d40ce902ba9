"""What each backend records, and the behaviour only some backends have (versions, generations)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from refharness import Harness, make_harness

import refstore
from refstore.core import hashing
from refstore.core.tree import Entry
from refstore.errors import ChangedError, NotFoundError


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    harness = make_harness(request.param, request, tmp_path)
    for key, value in harness.env.items():
        monkeypatch.setenv(key, value)
    yield harness


def log_one(store: refstore.Store, uri: str, name: str = "one") -> refstore.ArtifactVersion:
    art = refstore.Artifact(name)
    art.add_reference(uri)
    return store.log_artifact(art)


def only(version: refstore.ArtifactVersion) -> Entry:
    [entry] = version.files()
    assert entry.ref is not None
    return entry


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
def test_s3_unversioned_records_etag_which_is_the_md5(store: refstore.Store, backend: Harness) -> None:
    backend.write("x.bin", b"payload")
    entry = only(log_one(store, backend.uri("x.bin")))
    assert entry.ref == {"uri": backend.uri("x.bin"), "etag": hashlib.md5(b"payload").hexdigest()}


@pytest.mark.parametrize("backend", ["s3-versioned"], indirect=True)
def test_s3_versioned_pins_the_version_id(store: refstore.Store, backend: Harness, tmp_path: Path) -> None:
    backend.write("x.bin", b"first")
    version = log_one(store, backend.uri("x.bin"))
    entry = only(version)
    assert isinstance(entry.ref["version_id"], str) and entry.ref["version_id"]
    backend.write("x.bin", b"second, longer")
    backend.remove("x.bin")  # a delete marker on top: the recorded version is still readable
    assert (version.download(tmp_path / "a") / "x.bin").read_bytes() == b"first"
    backend.remove_versions("x.bin")
    store.repo.cache.remove(next(iter(store.repo.cache.digests())))
    with pytest.raises(NotFoundError, match=r"x\.bin .*was deleted"):
        version.download(tmp_path / "b")


@pytest.mark.parametrize("backend", ["gcs", "gcs-versioned"], indirect=True)
def test_gcs_records_generation_md5_and_crc32c(store: refstore.Store, backend: Harness, tmp_path: Path) -> None:
    backend.write("m.h5", b"weights")
    version = log_one(store, backend.uri("m.h5"))
    entry = only(version)
    assert str(entry.ref["generation"]).isdigit()
    assert entry.ref["md5"] == base64.b64encode(hashlib.md5(b"weights").digest()).decode()
    assert isinstance(entry.ref["crc32c"], str)
    backend.write("m.h5", b"new weights!")
    if backend.versioned:
        assert (version.download(tmp_path / "out") / "m.h5").read_bytes() == b"weights"
    else:
        with pytest.raises(ChangedError, match=r"generation \d+ no longer exists.*size 7 -> 12"):
            version.download(tmp_path / "out")


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_azure_records_etag_md5_and_has_no_versions_on_azurite(store: refstore.Store, backend: Harness) -> None:
    backend.write("blob.txt", b"blob")
    entry = only(log_one(store, backend.uri("blob.txt")))
    assert isinstance(entry.ref["etag"], str) and entry.ref["etag"]
    assert entry.ref["content_md5"] == base64.b64encode(hashlib.md5(b"blob").digest()).decode()
    assert isinstance(entry.ref["last_modified"], str)
    assert "version_id" not in entry.ref  # Azurite keeps no blob versions


@pytest.mark.parametrize("backend", ["http"], indirect=True)
def test_http_records_etag_and_last_modified(store: refstore.Store, backend: Harness, tmp_path: Path) -> None:
    backend.write("data.csv", b"a,b\n1,2\n")
    version = log_one(store, backend.uri("data.csv"))
    entry = only(version)
    assert entry.path == "data.csv" and entry.size == 8
    assert isinstance(entry.ref["etag"], str) and isinstance(entry.ref["last_modified"], str)
    backend.write("data.csv", b"a,b\n1,2\n3,4\n")
    with pytest.raises(ChangedError, match=r"data\.csv .*size 8 -> 12, etag"):
        version.download(tmp_path / "out")


@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_file_records_digest_and_mtime_and_catches_same_size_overwrite(
    store: refstore.Store, backend: Harness, tmp_path: Path
) -> None:
    backend.write("f.txt", b"aaaa")
    version = log_one(store, backend.uri("f.txt"))
    entry = only(version)
    assert entry.digest == hashing.hash_bytes(b"aaaa", store.repo.algorithm)
    assert entry.ref["mtime_ns"] == os.stat(backend.local_root / "f.txt").st_mtime_ns  # type: ignore[operator]
    backend.write("f.txt", b"bbbb")  # same size
    problems = version.check_references()
    assert [(p.status, p.path) for p in problems] == [("changed", "f.txt")] and "mtime_ns" in problems[0].detail
    with pytest.raises(ChangedError, match="the file was overwritten"):
        version.download(tmp_path / "out")


def test_plain_paths_and_nfs_style_mounts_work_without_a_scheme(store: refstore.Store, tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "datasets"
    (mount / "sub").mkdir(parents=True)
    (mount / "sub" / "x").write_bytes(b"x")
    art = refstore.Artifact("mnt")
    art.add_reference(str(mount), name="mounted")
    [entry] = store.log_artifact(art).files()
    assert entry.path == "mounted/sub/x" and entry.ref is not None
    assert entry.ref["uri"] == f"file://{mount}/sub/x"


def test_store_of_previous_format_gains_the_reference_digest_table(tmp_path: Path) -> None:
    """A format-1 store (before references were downloadable) migrates and downloads references."""
    from test_migrations import restore_fixture

    restore_fixture("format1", tmp_path)
    (tmp_path / "f").write_bytes(b"content")
    with refstore.open(tmp_path) as store:
        assert store.repo.db.format_version() >= 2
        art = refstore.Artifact("ds")
        art.add_reference(str(tmp_path / "f"))
        version = store.log_artifact(art)
        assert (version.download(tmp_path / "out") / "f").read_bytes() == b"content"
    assert (tmp_path / ".refstore" / "refstore.db.v1.bak").exists()


def test_gc_keeps_downloaded_reference_bytes(
    store: refstore.Store, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness("s3", request, tmp_path)
    for key, value in h.env.items():
        monkeypatch.setenv(key, value)
    h.write("k", b"kept")
    version = log_one(store, h.uri("k"))
    version.download(tmp_path / "out")
    assert store.gc().objects == []
    h.remove("k")
    assert (version.download(tmp_path / "again") / "k").read_bytes() == b"kept"


def test_version_flag_does_not_import_fsspec(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import subprocess_env

    code = (
        "import sys\nfrom refstore.cli import main\nsys.argv=['refstore','--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('fsspec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_any_fsspec_url_with_a_listing_works(store: refstore.Store, tmp_path: Path) -> None:
    """memory:// stands for every other fsspec backend: listed with find, fetched with open, size-checked."""
    import fsspec

    root = f"/refs-{tmp_path.name}"
    fs = fsspec.filesystem("memory")
    fs.pipe({f"{root}/a": b"alpha", f"{root}/d/b": b"bravo!"})
    art = refstore.Artifact("mem")
    art.add_reference(f"memory://{root}/")
    version = store.log_artifact(art)
    assert [(e.path, e.size) for e in version.files()] == [("a", 5), ("d/b", 6)]
    out = version.download(tmp_path / "out")
    assert (out / "d" / "b").read_bytes() == b"bravo!"
    fs.pipe_file(f"{root}/a", b"alpha, longer")
    fs.rm(f"{root}/d/b")
    for digest in list(store.repo.cache.digests()):
        store.repo.cache.remove(digest)
    with pytest.raises(ChangedError, match=r"^a \(memory://.*size 5 -> 13.*\(and 1 more reference\(s\) failed\)"):
        version.download(tmp_path / "again")


def test_unchanged_local_files_are_not_hashed_again(
    store: refstore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file:// references use the stat cache like stored files: (inode, size, mtime_ns) unchanged -> no read."""
    from refstore.services import references

    share = tmp_path / "share"
    share.mkdir()
    for name in ("a", "b", "c"):
        (share / name).write_bytes(name.encode() * 100)
        os.utime(share / name, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))  # older than the racy window
    reads: list[str] = []
    real = references.hashing.hash_file

    def counting(path: str | os.PathLike[str], algorithm: str = "xxh3-128") -> tuple[str, int]:
        reads.append(os.path.basename(path))
        return real(path, algorithm)

    monkeypatch.setattr(references.hashing, "hash_file", counting)
    art = refstore.Artifact("share")
    art.add_reference(f"file://{share}")
    first = store.log_artifact(art)
    assert sorted(reads) == ["a", "b", "c"]
    reads.clear()
    (share / "b").write_bytes(b"changed")
    art = refstore.Artifact("share")
    art.add_reference(f"file://{share}")
    second = store.log_artifact(art)
    assert reads == ["b"] and second.version == "v1"
    assert [c.path for c in store.diff(f"share:{first.version}", "share:v1")] == ["b"]


@pytest.mark.parametrize("backend", ["s3-versioned"], indirect=True)
def test_real_process_reaches_s3_from_the_environment_alone(backend: Harness, workdir: Path) -> None:
    """A fresh `refstore` process gets endpoint and credentials from AWS_* only; nothing lands in the store."""
    from conftest import run_refstore

    backend.write("w.bin", b"weights")
    run_refstore("init", cwd=workdir, env=backend.env)
    run_refstore("put", "-r", backend.uri("w.bin"), "-n", "model", "-t", "model", cwd=workdir, env=backend.env)
    backend.write("w.bin", b"newer weights")
    run_refstore("get", "model", "-o", "out", cwd=workdir, env=backend.env)
    assert (workdir / "out" / "w.bin").read_bytes() == b"weights"
    database = b"".join(p.read_bytes() for p in (workdir / ".refstore").glob("refstore.db*"))
    assert backend.uri("w.bin").encode() in database  # the check below looks at the right bytes
    for secret in (backend.env["AWS_SECRET_ACCESS_KEY"], backend.env["AWS_ENDPOINT_URL"]):
        assert secret.encode() not in database
