"""Importing from another refstore directory: remapping, incremental progress, verification, read-only source."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from conftest import Cli
from test_migration_runs import make_format_1_store

import refstore
from refstore.errors import NotFoundError, UsageError


def _art(name: str, files: dict[str, str], type: str = "dataset") -> refstore.Artifact:
    art = refstore.Artifact(name, type=type)
    for path, content in files.items():
        with art.new_file(path) as handle:
            handle.write(content)
    return art


def snapshot(root: Path) -> dict[str, str]:
    """Digest of every file's bytes under ``root``.

    SQLite's shared-memory index (``-shm``) and an empty write-ahead log are its
    own side files, which a read-only reader may create; they hold no data.
    """
    result = {}
    for path in sorted(root.rglob("*")):
        side_file = path.name.endswith("-shm") or (path.name.endswith("-wal") and path.stat().st_size == 0)
        if path.is_file() and not side_file:
            result[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    with refstore.init(root, project="team") as store:
        store.log_artifact(_art("mnist", {"a.txt": "alpha", "sub/b.txt": "bravo"}), aliases=["raw"])
        with store.run(job_type="train", name="cnn", config={"lr": 0.1}, tags=["t1"]) as run:
            run.use_artifact("mnist:raw")
            run.log({"loss": 1.0})
            run.log({"loss": 0.5})
            run.log_artifact(_art("cnn", {"w.bin": "weights"}, type="model"), aliases=["best"])
    return root


def test_import_with_remap_is_complete_and_incremental(source: Path, store: refstore.Store) -> None:
    before = snapshot(source)
    report = store.import_store(source, remap={"team": "mine"})
    assert report.failed == {} and len(report.imported) == 3  # two versions and one run
    assert snapshot(source) == before
    model = store.artifact("mine/cnn:best")
    assert model.version == "v0" and [e.path for e in model.files()] == ["w.bin"]
    data = store.artifact("mine/mnist:raw")
    data.download(store.path.parent / "out")
    assert (store.path.parent / "out" / "sub" / "b.txt").read_text() == "bravo"
    (run,) = store.runs()
    assert run.project == "mine" and run.config == {"lr": 0.1} and run.tags == ["t1"]
    assert [h["value"] for h in run.history()] == [1.0, 0.5]
    assert [v.qualified_name for v in run.used()] == ["mine/mnist:v0"]
    assert model.record.run_id == run.id
    assert {n.label for n in store.lineage("mine/mnist:v0").nodes} == {"mnist:v0", "train cnn", "cnn:v0"}
    assert store.verify().problems == []

    again = store.import_store(source, remap={"team": "mine"})
    assert again.imported == [] and again.updated == [] and again.skipped == 3

    with refstore.open(source) as src:  # something new and something changed in the source
        src.log_artifact(_art("mnist", {"a.txt": "alpha2"}))
        src.get_run(run.id).summary["acc"] = 0.9
    third = store.import_store(source, remap={"team": "mine"})
    assert third.imported == ["mine/mnist:v1"] and third.updated == [f"run {run.id}"]
    assert store.get_run(run.id).summary["acc"] == 0.9
    assert [v.version for v in store.versions("mine/mnist")] == ["v1", "v0"]


def test_corrupt_source_object_fails_and_is_retried(source: Path, store: refstore.Store) -> None:
    with refstore.open(source) as src:
        digest = src.artifact("team/cnn:v0").files()[0].digest
    assert digest is not None
    obj = source / ".refstore" / "objects" / digest[:2] / digest[2:]
    good = obj.read_bytes()
    os.chmod(obj, stat.S_IWUSR | stat.S_IRUSR)
    obj.write_bytes(b"tampered")
    report = store.import_store(source)
    assert list(report.failed) == ["team/cnn:v0"] and "hash" in report.failed["team/cnn:v0"]
    assert "team/mnist:v0" in report.imported
    assert len(report.imported) == 2  # the run only used mnist, so it is in
    assert not store.repo.cache.has(digest)
    with pytest.raises(NotFoundError):
        store.artifact("team/cnn:v0")
    obj.write_bytes(good)
    retry = store.import_store(source)
    assert retry.failed == {} and "team/cnn:v0" in retry.imported and retry.skipped == 2
    assert store.artifact("team/cnn:best").record.run_id == store.runs()[0].id
    assert store.verify().problems == []


def test_import_never_moves_local_aliases(source: Path, store: refstore.Store) -> None:
    store.log_artifact(_art("team/mnist", {"local.txt": "mine"}), aliases=["raw"])
    store.import_store(source)
    assert [v.version for v in store.versions("team/mnist")] == ["v1", "v0"]
    assert store.artifact("team/mnist:raw").version == "v0"  # the local alias stays where it was


def test_import_format_1_store_leaves_it_untouched(
    tmp_path: Path, store: refstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    make_format_1_store(old, monkeypatch)
    before = snapshot(old)
    report = store.import_store(old)
    assert report.imported == ["default/mnist:v0"] and report.failed == {}
    assert snapshot(old) == before
    assert not (old / ".refstore" / "refstore.db.v1.bak").exists()  # it was not migrated


def test_bad_sources_are_rejected(tmp_path: Path, store: refstore.Store, source: Path) -> None:
    with pytest.raises(NotFoundError):
        store.import_store(tmp_path / "nowhere")
    with pytest.raises(UsageError):
        store.import_store(store.path.parent)
    with pytest.raises(UsageError):
        store.import_store(source, remap={"team": "bad name"})
    with refstore.init(tmp_path / "sha", algorithm="sha256") as other:
        other.log_artifact(_art("x", {"x": "x"}))
    with pytest.raises(UsageError, match="algorithm"):
        store.import_store(tmp_path / "sha")
    assert store.artifacts() == []


def test_import_store_cli(source: Path, run_cli: Cli, store: refstore.Store) -> None:
    out = json.loads(run_cli("import", "store", str(source), "--remap", "team=other", "--json").stdout)
    assert len(out["imported"]) == 3 and out["failed"] == {}
    assert "unchanged 3" in run_cli("import", "store", str(source), "--remap", "team=other").stdout
    bad = run_cli("import", "store", str(source), "--remap", "nonsense", expect=2)
    assert bad.stderr.startswith("refstore: error: invalid --remap")
    run_cli("import", "store", "nosuch://bucket/store", expect=2)  # an unknown protocol


def test_import_cli_reports_failures_on_stderr_and_exits_1(source: Path, run_cli: Cli, store: refstore.Store) -> None:
    with refstore.open(source) as src:
        digest = src.artifact("team/mnist:v0").files()[0].digest
    assert digest is not None
    obj = source / ".refstore" / "objects" / digest[:2] / digest[2:]
    obj.unlink()
    result = run_cli("import", "store", str(source), expect=1)
    assert "failed 2" in result.stdout  # the version and the run that used it
    assert result.stderr.count("retried by the next import") == 2
    assert [a["name"] for a in store.artifacts()] == ["cnn"]


def test_an_artifact_of_another_type_here_is_a_failed_item_that_names_remap(source: Path, store: refstore.Store) -> None:
    store.log_artifact(_art("mine/mnist", {"x.txt": "mine"}, type="model"))
    report = store.import_store(source, remap={"team": "mine"})
    reasons = [reason for item, reason in report.failed.items() if "mnist" in item]
    assert reasons and "is a model here but a dataset in the source store" in reasons[0] and "--remap" in reasons[0]
    assert [v.version for v in store.versions("mine/mnist")] == ["v0"]  # nothing half-imported into it
    assert store.artifact("mine/cnn:best").version == "v0"  # the other items still came in
