"""``import store URL``: importing from a refstore remote (directory and moto S3), remapped and incremental."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from remote_backends import RemoteSpec, make_remote
from servers import s3_server  # noqa: F401  (fixture)
from test_import_store import _art

import refstore
from refstore.core.remotefs import RemoteFS
from refstore.services.remote_layout import object_path


@pytest.fixture(params=["dir", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RemoteSpec:
    return make_remote(request.param, request, tmp_path, monkeypatch)


def remote_state(remote: RemoteSpec) -> dict[str, str]:
    """Every file on the remote and the digest of its bytes."""
    fs = RemoteFS(remote.url, remote.options)
    return {path: hashlib.sha256(fs.read(path)).hexdigest() for path in sorted(fs.list_all())}


@pytest.fixture
def source(tmp_path: Path, remote: RemoteSpec) -> refstore.Store:
    store = refstore.init(tmp_path / "source", project="team")
    store.add_remote("origin", remote.url, **remote.options)
    store.log_artifact(_art("mnist", {"a.txt": "alpha", "sub/b.txt": "bravo"}), aliases=["raw"])
    with store.run(job_type="train", name="cnn", config={"lr": 0.1}, tags=["t1"]) as run:
        run.use_artifact("mnist:raw")
        run.log({"loss": 1.0})
        run.log({"loss": 0.5})
        run.log_artifact(_art("cnn", {"w.bin": "weights"}, type="model"), aliases=["best"])
    store.push()
    return store


def count_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    for method in ("list_all", "read", "read_many", "open_read", "write", "write_many", "create", "upload"):
        original = getattr(RemoteFS, method)

        def counted(self: RemoteFS, *args: Any, _name: str = method, _original: Any = original, **kw: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(RemoteFS, method, counted)
    return calls


def test_import_from_a_remote_is_complete_remapped_and_incremental(
    source: refstore.Store, store: refstore.Store, remote: RemoteSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = remote_state(remote)
    report = store.import_store(remote.url, remap={"team": "mine"}, **remote.options)
    assert report.failed == {}
    assert sorted(report.imported) == sorted(
        ["mine/mnist:v0", "mine/cnn:v0", "mine/mnist:raw", "mine/cnn:best", f"run {source.runs()[0].id}"]
    )
    assert remote_state(remote) == before  # the source is only read
    assert store.remotes() == []  # ... and not added as a remote: the import is self-contained
    data = store.artifact("mine/mnist:raw")
    data.download(store.path.parent / "out")
    assert (store.path.parent / "out" / "sub" / "b.txt").read_text() == "bravo"
    assert store.verify().ok and store.verify().objects_checked == 3  # objects were copied, verified
    (run,) = store.runs()
    original = source.runs()[0]
    assert run.id == original.id and run.project == "mine" and run.config == {"lr": 0.1} and run.tags == ["t1"]
    assert [h["value"] for h in run.history()] == [1.0, 0.5]
    assert [v.qualified_name for v in run.used()] == ["mine/mnist:v0"]
    assert store.artifact("mine/cnn:best").record.run_id == run.id
    assert {n.label for n in store.lineage("mine/mnist:v0").nodes} == {"mnist:v0", "train cnn", "cnn:v0"}

    calls = count_calls(monkeypatch)
    again = store.import_store(remote.url, remap={"team": "mine"}, **remote.options)
    assert again.imported == [] and again.updated == [] and again.failed == {} and again.skipped == 5
    assert calls == {"list_all": 1, "read": 1}  # the listing and the marker: nothing is read again
    monkeypatch.undo()

    # the source moves on: a new version and a changed run, pushed
    source.log_artifact(_art("mnist", {"a.txt": "alpha2"}))
    source.get_run(run.id).summary["acc"] = 0.9
    source.push()
    third = store.import_store(remote.url, remap={"team": "mine"}, **remote.options)
    assert third.imported == ["mine/mnist:v1"] and third.updated == [f"run {run.id}"] and third.failed == {}
    assert store.get_run(run.id).summary == {"loss": 0.5, "acc": 0.9}
    assert [v.version for v in store.versions("mine/mnist")] == ["v1", "v0"]
    assert store.artifact("mine/mnist:raw").version == "v0"


def test_failed_items_are_retried_and_local_aliases_never_move(
    source: refstore.Store, store: refstore.Store, remote: RemoteSpec
) -> None:
    store.log_artifact(_art("team/mnist", {"local.txt": "mine"}), aliases=["raw"])
    digest = source.artifact("cnn:v0").files()[0].digest
    assert digest is not None
    fs = RemoteFS(remote.url, remote.options)
    good = fs.read(object_path(digest))
    fs.write(object_path(digest), b"tampered")
    report = store.import_store(remote.url, **remote.options)
    assert set(report.failed) == {"team/cnn:v0", "team/cnn:best"}
    assert "corrupt" in report.failed["team/cnn:v0"]
    assert "team/mnist:v0" in report.imported and not store.repo.cache.has(digest)
    assert store.artifact("team/mnist:raw").version == "v0"  # the local alias stays where it was
    assert [v.version for v in store.versions("team/mnist")] == ["v1", "v0"]
    fs.write(object_path(digest), good)
    retry = store.import_store(remote.url, **remote.options)
    assert retry.failed == {} and sorted(retry.imported) == ["team/cnn:best", "team/cnn:v0"]
    assert store.artifact("team/cnn:best").record.run_id == store.runs()[0].id
    assert store.verify().problems == []


def test_hostile_run_record_fails_that_run_only(
    source: refstore.Store, store: refstore.Store, remote: RemoteSpec, tmp_path: Path
) -> None:
    fs = RemoteFS(remote.url, remote.options)
    (path,) = [p for p in fs.list_all() if p.startswith("runs/")]
    fs.write(path, fs.read(path).replace(b'"status":"finished"', b'"status":"finishd"'))
    report = store.import_store(remote.url, **remote.options)
    run_id = source.runs()[0].id
    assert list(report.failed) == [f"run:{run_id}"] and "run record" in report.failed[f"run:{run_id}"]
    assert store.runs() == [] and len(report.imported) == 4


def test_import_store_url_cli(source: refstore.Store, run_cli: Cli, store: refstore.Store, remote: RemoteSpec) -> None:
    args = ["import", "store", remote.url, *remote.cli_options(), "--remap", "team=other"]
    out = json.loads(run_cli(*args, "--json").stdout)
    assert len(out["imported"]) == 5 and out["failed"] == {} and out["source"] == f"remote:{remote.url}"
    assert "unchanged 5" in run_cli(*args).stdout
    assert [a["name"] for a in store.artifacts()] == ["cnn", "mnist"]
    if remote.kind == "dir":
        bad = run_cli("import", "store", str(Path(remote.url) / "objects"), expect=5)
        assert bad.stderr.startswith("refstore: error: no refstore store or remote at")
