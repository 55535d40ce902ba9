"""The remote commands, bad input, offline behaviour, and the 0004_remotes migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Cli, make_tree, run_refstore

import refstore
from refstore.core import db as dbmod
from refstore.core.location import DATABASE_NAME
from refstore.errors import UsageError

UNREACHABLE_S3 = [
    "-o",
    'client_kwargs={"endpoint_url": "http://127.0.0.1:9"}',
    "-o",
    'config_kwargs={"retries": {"max_attempts": 1}}',
]


def snapshot(store_dir: Path) -> list[tuple[object, ...]]:
    """Every row of every table, to prove a failed command changed nothing."""
    conn = sqlite3.connect(store_dir / DATABASE_NAME)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return [(t, *row) for t in tables for row in conn.execute(f"SELECT * FROM {t} ORDER BY 1")]
    finally:
        conn.close()


def test_remote_commands_tour(run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist", "--alias", "best")
    remote = tmp_path / "shared"
    assert run_cli("remote", "add", "origin", str(remote)).stdout.strip() == f"added remote origin -> {remote}"
    assert json.loads(run_cli("remote", "list", "--json").stdout) == [{"name": "origin", "url": str(remote), "options": {}}]
    out = run_cli("push")
    assert "pushed to origin: 1 versions, 3 objects" in out.stdout
    assert run_cli("push", "origin").stdout.strip() == "origin is up to date"
    pushed = json.loads(run_cli("push", "--json").stdout)
    assert pushed["versions"] == [] and pushed["conflicts"] == []
    clone_dir = tmp_path / "clone"
    out = run_cli("clone", str(remote), str(clone_dir))
    assert "1 artifacts, 1 versions" in out.stdout
    run_cli("-C", str(clone_dir), "get", "mnist:best", "-o", str(tmp_path / "got"))
    assert (tmp_path / "got" / "sub" / "c.bin").read_bytes() == (data_dir / "sub" / "c.bin").read_bytes()
    assert json.loads(run_cli("-C", str(clone_dir), "verify", "--json").stdout)["problems"] == []
    assert json.loads(run_cli("-C", str(clone_dir), "pull", "--json").stdout)["versions"] == []
    run_cli("remote", "remove", "origin")
    assert json.loads(run_cli("remote", "list", "--json").stdout) == []


def test_fresh_clone_get_in_subprocess(workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "mnist", "--alias", "best", cwd=workdir)
    run_refstore("remote", "add", "origin", str(tmp_path / "shared"), cwd=workdir)
    run_refstore("push", cwd=workdir)
    run_refstore("clone", str(tmp_path / "shared"), str(tmp_path / "fresh"), cwd=tmp_path)
    run_refstore("get", "mnist:best", "-o", "out", cwd=tmp_path / "fresh")
    assert (tmp_path / "fresh" / "out" / "a.txt").read_text() == "alpha\n"
    assert run_refstore("verify", cwd=tmp_path / "fresh").stdout.startswith("ok: 3 objects")


@pytest.mark.parametrize(
    "option",
    ["key=AKIA123", "secret=s3cr3t", "token=abc", 'client_kwargs={"aws_secret_access_key": "x"}', "connection_string=Account"],
)
def test_credentials_are_refused(run_cli: Cli, workdir: Path, option: str) -> None:
    run_cli("init")
    before = snapshot(workdir / ".refstore")
    result = run_cli("remote", "add", "origin", "s3://bucket/x", "-o", option, expect=2)
    assert "never stores credentials" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workdir / ".refstore") == before


def test_token_anon_is_not_a_secret(store: refstore.Store) -> None:
    added = store.add_remote("gcs", "gs://bucket/prefix", token="anon")
    assert added["options"] == {"token": "anon"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["remote", "add", "origin", "nosuchproto://x"], 2, "unknown protocol"),
        (["remote", "add", "bad name", "/tmp/x"], 2, "invalid remote name"),
        (["remote", "add", "origin", ""], 2, "empty remote URL"),
        (["remote", "remove", "nope"], 5, "no remote nope"),
        (["push"], 5, "no remote configured"),
        (["pull", "--jobs", "0"], 2, ""),
    ],
)
def test_bad_input(run_cli: Cli, workdir: Path, args: list[str], code: int, message: str) -> None:
    run_cli("init")
    before = snapshot(workdir / ".refstore")
    result = run_cli(*args, expect=code)
    assert message in result.stderr
    assert snapshot(workdir / ".refstore") == before


def test_duplicate_remote_and_bad_spec(run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    run_cli("remote", "add", "origin", str(tmp_path / "r"))
    assert "already exists" in run_cli("remote", "add", "origin", str(tmp_path / "r2"), expect=2).stderr
    assert "not 'mnist:best'" in run_cli("push", "mnist:best", expect=2).stderr
    assert "no artifact default/nope" in run_cli("push", "nope", expect=5).stderr
    assert not (tmp_path / "r").exists()


def test_offline_push_and_pull_fail_cleanly_and_local_commands_work(
    run_cli: Cli, workdir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    run_cli("remote", "add", "origin", "s3://bucket/team", *UNREACHABLE_S3)
    before = snapshot(workdir / ".refstore")
    for command in (["push"], ["pull"], ["pull", "--objects"]):
        result = run_cli(*command, expect=9)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("refstore: error: remote s3://bucket/team failed")
    assert snapshot(workdir / ".refstore") == before
    run_cli("put", "data", "--name", "other")
    run_cli("get", "mnist", "-o", str(workdir / "out"))
    assert json.loads(run_cli("verify", "--json").stdout)["problems"] == []


def test_clone_of_unreachable_or_missing_remote_leaves_nothing(run_cli: Cli, tmp_path: Path, workdir: Path) -> None:
    result = run_cli("clone", str(tmp_path / "no-remote"), str(tmp_path / "c"), expect=5)
    assert "not a refstore remote" in result.stderr
    assert not (tmp_path / "c").exists()


def test_clone_into_existing_store_is_refused(store: refstore.Store, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="already exists"):
        refstore.clone(str(tmp_path / "r"), store.path.parent)


def test_verify_counts_objects_only_when_no_remote_holds_them(store: refstore.Store, data_dir: Path, tmp_path: Path) -> None:
    art = refstore.Artifact("mnist")
    art.add_dir(data_dir)
    store.log_artifact(art)
    store.add_remote("origin", str(tmp_path / "r"))
    store.push()
    with refstore.clone(str(tmp_path / "r"), tmp_path / "c") as clone:
        assert clone.verify().ok
        clone.remove_remote("origin")  # nothing known to hold the objects any more
        report = clone.verify()
        assert not report.ok and all("missing from the cache" in p for p in report.problems)


def test_store_of_format_1_migrates_to_remotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS[:1])
    monkeypatch.setattr(dbmod, "FORMAT_VERSION", 1)
    with refstore.init(tmp_path / "old") as old:
        art = refstore.Artifact("mnist")
        art.add_dir(data_dir)
        old.log_artifact(art)
        assert old.repo.db.format_version() == 1
    monkeypatch.undo()
    make_tree(tmp_path, {})
    with refstore.open(tmp_path / "old") as migrated:
        assert migrated.repo.db.format_version() == dbmod.FORMAT_VERSION
        assert (tmp_path / "old" / ".refstore" / f"{DATABASE_NAME}.v1.bak").exists()
        migrated.add_remote("origin", str(tmp_path / "r"))
        assert migrated.push().versions == ["default/mnist:v0"]


def test_progress_callback_reports_files_and_bytes(store: refstore.Store, tmp_path: Path) -> None:
    make_tree(tmp_path / "d", {"small.txt": "s", "big.bin": b"b" * 300_000, "x/y.txt": "yy"})
    art = refstore.Artifact("mnist")
    art.add_dir(tmp_path / "d")
    store.log_artifact(art)
    store.add_remote("origin", str(tmp_path / "r"))
    seen: list[tuple[int, int]] = []
    store.push(progress=lambda files, done: seen.append((files, done)), jobs=2)
    assert seen[-1] == (3, 300_003)
    assert seen == sorted(seen)
    with refstore.clone(str(tmp_path / "r"), tmp_path / "c") as clone:
        pulled: list[tuple[int, int]] = []
        clone.pull(objects=True, progress=lambda files, done: pulled.append((files, done)))
        assert pulled[-1] == (3, 300_003)


def test_get_in_a_clone_with_the_remote_gone_fails_cleanly(
    run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    run_cli("remote", "add", "origin", str(tmp_path / "r"))
    run_cli("push")
    clone_dir = tmp_path / "c"
    run_cli("clone", str(tmp_path / "r"), str(clone_dir))
    (tmp_path / "r").rename(tmp_path / "moved")
    result = run_cli("-C", str(clone_dir), "get", "mnist", "-o", str(tmp_path / "out"), expect=5)
    assert "not in the cache and no source" in result.stderr
    assert not (tmp_path / "out").exists()
    # an unreachable object store: one line, exit 9, nothing written
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    run_cli("-C", str(clone_dir), "remote", "add", "backup", "s3://bucket/team", *UNREACHABLE_S3)
    result = run_cli("-C", str(clone_dir), "get", "mnist", "-o", str(tmp_path / "out"), expect=9)
    assert len(result.stderr.strip().splitlines()) == 1 and "s3://bucket/team" in result.stderr
    assert not (tmp_path / "out").exists()
    assert list((clone_dir / ".refstore" / "objects").rglob("*")) == []


def test_clone_of_a_damaged_remote_fails_and_leaves_nothing(run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    run_cli("remote", "add", "origin", str(tmp_path / "r"))
    run_cli("push")
    for record in (tmp_path / "r" / "versions").rglob("*.json"):
        record.write_bytes(record.read_bytes().replace(b'"files":3', b'"files":4'))
    result = run_cli("clone", str(tmp_path / "r"), str(tmp_path / "c"), expect=6)
    assert "is corrupt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_remote_of_another_digest_algorithm_is_refused(run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    run_cli("remote", "add", "origin", str(tmp_path / "r"))
    run_cli("push")
    other = tmp_path / "sha"
    run_cli("init", str(other), "--algorithm", "sha256")
    run_cli("-C", str(other), "remote", "add", "origin", str(tmp_path / "r"))
    before = snapshot(other / ".refstore")
    for command in ("push", "pull"):
        result = run_cli("-C", str(other), command, expect=4)
        assert "uses digest algorithm xxh3-128 but this store uses sha256" in result.stderr
    assert snapshot(other / ".refstore") == before
    with refstore.clone(str(tmp_path / "r"), tmp_path / "c") as clone:  # a clone adopts the remote's algorithm
        assert clone.repo.algorithm == "xxh3-128"


def test_lazy_clone_cannot_push_objects_it_does_not_have(store: refstore.Store, data_dir: Path, tmp_path: Path) -> None:
    from refstore.errors import NotFoundError

    art = refstore.Artifact("mnist")
    art.add_dir(data_dir)
    store.log_artifact(art)
    store.add_remote("origin", str(tmp_path / "r1"))
    store.push()
    with refstore.clone(str(tmp_path / "r1"), tmp_path / "c") as clone:
        clone.add_remote("mirror", str(tmp_path / "r2"))
        with pytest.raises(NotFoundError, match="pull --objects"):
            clone.push("mirror")
        assert not (tmp_path / "r2" / "numbers").exists()
        clone.pull(objects=True)
        assert clone.push("mirror").versions == ["default/mnist:v0"]


def _labelled(graph_json: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Nodes (all their data but the local id) and edges by label: equal in two stores with the same lineage."""
    graph = json.loads(graph_json)
    label = {n["id"]: n["label"] for n in graph["nodes"]}
    nodes = sorted(json.dumps({k: v for k, v in n.items() if k != "id"}, sort_keys=True) for n in graph["nodes"])
    return nodes, sorted((label[e["from"]], label[e["to"]], e["kind"]) for e in graph["edges"])


def test_lineage_in_a_clone_equals_the_source(run_cli: Cli, workdir: Path, data_dir: Path, tmp_path: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "raw")
    run_id = run_cli("run", "start", "--job-type", "train", "--name", "cnn", "--input", "raw:v0").stdout.strip()
    run_cli("put", "data/sub", "--name", "model", "--type", "model", "--run", run_id)
    run_cli("run", "finish", run_id, "--summary", '{"acc": 0.5}')
    run_cli("put", "data/sub", "--name", "report", "--run-job-type", "eval", "--input", "model:v0")
    run_cli("remote", "add", "origin", str(tmp_path / "shared"))
    assert "2 runs" in run_cli("push").stdout
    clone_dir = tmp_path / "clone"
    run_cli("clone", str(tmp_path / "shared"), str(clone_dir))
    for direction in ("--downstream", "--upstream"):
        spec = "raw:v0" if direction == "--downstream" else "report:v0"
        source = run_cli("lineage", spec, direction, "--format", "json").stdout
        cloned = run_cli("-C", str(clone_dir), "lineage", spec, direction, "--format", "json").stdout
        assert _labelled(cloned) == _labelled(source)
        assert len(_labelled(source)[0]) == 5  # raw, train cnn, model, the eval run, report
    shown = json.loads(run_cli("-C", str(clone_dir), "run", "show", run_id, "--json").stdout)
    assert shown["status"] == "finished" and shown["summary"] == {"acc": 0.5}


def test_push_removes_stale_part_files_but_not_fresh_ones(store: refstore.Store, data_dir: Path, tmp_path: Path) -> None:
    import os
    import time

    from refstore.core.remotefs import STALE_PART_SECONDS

    remote = tmp_path / "shared"
    store.add_remote("origin", str(remote))
    art = refstore.Artifact("mnist")
    art.add_dir(data_dir)
    store.log_artifact(art)
    store.push()
    tmp = remote / "tmp"
    stale, fresh, other = tmp / "dead.part", tmp / "in-flight.part", tmp / "notes.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    os.utime(fresh, (time.time() - STALE_PART_SECONDS + 600,) * 2)  # younger than the safe age: a live writer's
    assert store.push().versions == []  # even a push of nothing new cleans up
    assert not stale.exists() and fresh.exists() and other.exists()
