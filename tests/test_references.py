"""Reference entries: one conformance suite that every backend runs, against real servers.

The ``h`` fixture is parametrized over every backend (the fsspec/restic
pattern): local directory (file://), moto S3 unversioned and versioned,
fake-gcs-server unversioned and versioned, Azurite (no versioning) and nginx.
Each test here must hold on all of them; backend-specific behaviour lives in
test_references_backends.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli
from refharness import Harness, make_harness

import refstore
from refstore.errors import ChangedError, NotFoundError, UsageError

KINDS = ["file", "s3", "s3-versioned", "gcs", "gcs-versioned", "azure", "http"]


@pytest.fixture(params=KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    harness = make_harness(request.param, request, tmp_path)
    for key, value in harness.env.items():
        monkeypatch.setenv(key, value)
    yield harness


def populate(h: Harness) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "b.bin": bytes(range(256)) * 8, "sub/c.txt": b"charlie charlie\n"}
    for key, data in files.items():
        h.write(key, data)
    if h.placeholders:
        h.write("sub/empty/", b"")  # a zero-byte "folder" object: must be skipped
    return files


def log_prefix(store: refstore.Store, h: Harness, **kwargs: object) -> refstore.ArtifactVersion:
    art = refstore.Artifact("ds", type="dataset")
    art.add_reference(h.uri() + "/", **kwargs)  # type: ignore[arg-type]
    return store.log_artifact(art)


def test_prefix_is_listed_with_sizes_and_metadata(store: refstore.Store, h: Harness) -> None:
    files = populate(h)
    version = log_prefix(store, h)
    entries = {e.path: e for e in version.files()}
    assert sorted(entries) == sorted(files)
    for path, data in files.items():
        entry = entries[path]
        assert entry.size == len(data)
        assert entry.ref is not None and entry.ref["uri"] == h.uri(path)
        assert all(isinstance(v, (str, int)) for v in entry.ref.values())
        assert len(entry.ref) >= 2, f"no remote identity recorded for {h.kind}: {entry.ref}"
    assert version.size == sum(len(d) for d in files.values())


def test_single_object_with_a_name(store: refstore.Store, h: Harness) -> None:
    populate(h)
    art = refstore.Artifact("one", type="model")
    art.add_reference(h.uri("sub/c.txt"), name="weights/c.txt")
    version = store.log_artifact(art)
    [entry] = version.files()
    assert entry.path == "weights/c.txt" and entry.size == len(b"charlie charlie\n")


def test_unchanged_remote_makes_no_new_version_and_a_change_does(store: refstore.Store, h: Harness) -> None:
    populate(h)
    first = log_prefix(store, h)
    again = log_prefix(store, h)
    assert not again.created and again.version == first.version == "v0"
    h.write("a.txt", b"alpha, rewritten and longer\n")
    changed = log_prefix(store, h)
    assert changed.created and changed.version == "v1"
    diff = store.diff("ds:v0", "ds:v1")
    assert [(c.status, c.path) for c in diff] == [("modified", "a.txt")]


def test_download_verifies_and_a_second_download_fetches_nothing(store: refstore.Store, h: Harness, tmp_path: Path) -> None:
    files = populate(h)
    version = log_prefix(store, h)
    out = version.download(tmp_path / "out")
    for path, data in files.items():
        assert (out / path).read_bytes() == data
    version.verify(out)
    for key in files:  # the remote is gone: a second download must come from the cache alone
        h.remove(key)
    again = version.download(tmp_path / "again")
    assert {p: (again / p).read_bytes() for p in files} == files


def test_changed_object_is_exact_version_or_an_error(store: refstore.Store, h: Harness, tmp_path: Path) -> None:
    populate(h)
    version = log_prefix(store, h)
    h.write("a.txt", b"different bytes, different size\n")
    if h.versioned:
        out = version.download(tmp_path / "out")
        assert (out / "a.txt").read_bytes() == b"alpha\n"
    else:
        with pytest.raises(ChangedError, match=r"a\.txt .*changed since it was recorded"):
            version.download(tmp_path / "out")
        assert not (tmp_path / "out" / "a.txt").exists()


def test_verify_rechecks_metadata_without_downloading(store: refstore.Store, h: Harness) -> None:
    populate(h)
    version = log_prefix(store, h)
    assert version.check_references() == []
    assert version.check_references(download=True) == []
    assert list(store.repo.cache.digests()) == []  # verify stores nothing, even with download=True
    h.write("b.bin", b"short now")
    problems = version.check_references()
    if h.versioned:
        assert problems == []  # the recorded version is still there to fetch
    else:
        assert [(p.status, p.path) for p in problems] == [("changed", "b.bin")]
        assert "size 2048 -> 9" in problems[0].detail, problems[0].detail


def test_max_objects_refuses_and_leaves_the_store_unchanged(store: refstore.Store, h: Harness) -> None:
    populate(h)
    with pytest.raises(UsageError, match=r"holds 3 objects, more than max_objects=2"):
        log_prefix(store, h, max_objects=2)
    assert store.artifacts() == []
    assert log_prefix(store, h, max_objects=3).file_count == 3


def test_missing_object_is_not_found(store: refstore.Store, h: Harness) -> None:
    populate(h)
    art = refstore.Artifact("ds")
    art.add_reference(h.uri("no-such-object.txt"))
    with pytest.raises(NotFoundError):
        store.log_artifact(art)
    assert store.artifacts() == []


def test_checksum_false_records_the_uri_alone_and_still_downloads(store: refstore.Store, h: Harness, tmp_path: Path) -> None:
    populate(h)
    art = refstore.Artifact("ds")
    art.add_reference(h.uri("a.txt"), checksum=False)
    version = store.log_artifact(art)
    [entry] = version.files()
    assert entry.ref == {"uri": h.uri("a.txt"), "checksum": "none"} and entry.digest is None
    out = version.download(tmp_path / "out")
    assert (out / "a.txt").read_bytes() == b"alpha\n"


def test_cli_put_get_verify(h: Harness, workdir: Path, run_cli: Cli) -> None:
    files = populate(h)
    run_cli("init")
    put = run_cli("put", "--reference", h.uri() + "/", "--name", "ds", "--json")
    assert json.loads(put.stdout)["files"] == 3
    assert "unchanged" in run_cli("put", "--reference", h.uri() + "/", "--name", "ds").stdout
    shown = json.loads(run_cli("show", "ds", "--json").stdout)["entries"]
    assert [(e["path"], e["ref"]["uri"]) for e in shown] == [(p, h.uri(p)) for p in sorted(files)]
    run_cli("get", "ds", "-o", "out")
    assert (workdir / "out" / "sub" / "c.txt").read_bytes() == files["sub/c.txt"]
    assert "3 reference(s)" in run_cli("verify", "ds").stdout
    assert "3 reference(s)" in run_cli("verify", "ds", "--download").stdout
    h.write("sub/c.txt", b"charlie was changed\n")
    bad = run_cli("verify", "ds", "--json", expect=0 if h.versioned else 6)
    if not h.versioned:
        assert [(p["status"], p["path"]) for p in json.loads(bad.stdout)] == [("changed", "sub/c.txt")]
        assert "sub/c.txt" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
