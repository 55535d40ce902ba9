"""One conformance suite for remotes, run against every backend (dir, memory, S3, GCS, Azure)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tree
from remote_backends import RemoteSpec, make_remote
from servers import azure_server, gcs_server, s3_server  # noqa: F401  (fixtures)

import refstore
from refstore.core import hashing
from refstore.core.remotefs import RemoteFS
from refstore.core.tree import Node, encode_record
from refstore.errors import IntegrityError, RefstoreError
from refstore.services.remote_layout import VersionData, number_path, object_path, record_path, tree_path

BACKENDS = ["dir", "memory", "s3", "gcs", "azure"]


@pytest.fixture(params=BACKENDS)
def remote(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RemoteSpec:
    return make_remote(request.param, request, tmp_path, monkeypatch)


def new_store(root: Path, remote: RemoteSpec, name: str = "origin") -> refstore.Store:
    root.mkdir(parents=True, exist_ok=True)
    store = refstore.init(root)
    store.add_remote(name, remote.url, **remote.options)
    return store


def log(store: Any, root: Path, files: dict[str, Any], name: str = "mnist", aliases: tuple[str, ...] = ()) -> Any:
    """Log a version through a store, or through a run (an output edge)."""
    make_tree(root, files)
    art = refstore.Artifact(name)
    art.add_dir(root)
    return store.log_artifact(art, aliases=list(aliases))


def clone(remote: RemoteSpec, path: Path) -> refstore.Store:
    return refstore.clone(remote.url, path, **remote.options)


@pytest.fixture
def a(tmp_path: Path, remote: RemoteSpec) -> Iterator[refstore.Store]:
    with new_store(tmp_path / "a", remote) as store:
        yield store


def test_push_clone_get_roundtrip(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    big = bytes(range(256)) * 2048  # 512 KiB: travels alone, not in a batch
    log(a, tmp_path / "d0", {"x.txt": "x0", "sub/big.bin": big, "sub/deep/y": "y"}, aliases=("best",))
    log(a, tmp_path / "d0", {"x.txt": "x1"})
    result = a.push()
    assert result.versions == ["default/mnist:v0", "default/mnist:v1"]
    assert result.objects == 4 and result.conflicts == [] and result.renumbered == []
    with clone(remote, tmp_path / "b") as b:
        assert [v.version for v in b.versions("mnist")] == ["v1", "v0"]
        assert b.artifact("mnist:best").version == "v0"
        assert list(b.repo.cache.digests()) == []  # metadata only
        assert b.verify().ok  # objects the remote holds are not missing
        out = b.artifact("mnist:best").download(tmp_path / "out")
        assert (out / "sub" / "big.bin").read_bytes() == big
        assert (out / "x.txt").read_text() == "x0"
        assert b.verify().ok and b.verify().objects_checked == 3


def test_push_of_nothing_new_costs_one_listing(
    a: refstore.Store, tmp_path: Path, remote: RemoteSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    log(a, tmp_path / "d", {f"f{i}": str(i) for i in range(30)}, aliases=("best",))
    for i in range(3):  # runs are pushed too, and cost nothing once they are there
        with a.run(job_type="train", config={"i": i}) as run:
            run.use_artifact("mnist:best")
            run.log({"loss": 1.0 / (i + 1)})
            log(run, tmp_path / f"m{i}", {"w": f"weights {i}"}, name="model")
    assert len(a.push().runs) == 3
    calls: dict[str, int] = {}
    for method in ("list_all", "read", "read_many", "write", "write_many", "upload", "create", "open_read"):
        original = getattr(RemoteFS, method)

        def counted(self: RemoteFS, *args: Any, _name: str = method, _original: Any = original, **kw: Any) -> Any:
            if not (args and isinstance(args[0], (list, dict)) and not args[0]):  # an empty batch is no request
                calls[_name] = calls.get(_name, 0) + 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(RemoteFS, method, counted)
    result = a.push()
    assert result.versions == [] and result.objects == 0 and result.aliases == [] and result.runs == []
    assert calls == {"list_all": 1, "read": 1}  # the listing and the marker file
    with clone(remote, tmp_path / "b") as b:  # and so is a pull of nothing new, runs included
        assert len(b.runs()) == 3
        calls.clear()
        pulled = b.pull()
        assert pulled.versions == [] and pulled.runs == [] and pulled.aliases == []
        assert calls == {"list_all": 1, "read": 1}


def _graph(store: refstore.Store, spec: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """A lineage graph with local version ids left out, comparable between stores (everything else must match)."""
    graph = store.lineage(spec).as_dict()
    label = {n["id"]: n["label"] for n in graph["nodes"]}
    return (
        sorted(json.dumps({k: v for k, v in n.items() if k != "id"}, sort_keys=True) for n in graph["nodes"]),
        sorted((label[e["from"]], label[e["to"]], e["kind"]) for e in graph["edges"]),
    )


def test_runs_travel_and_clone_shows_the_same_lineage(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "raw", {"r": "raw"}, name="raw")
    with a.run(job_type="prep", name="clean", config={"k": [1, 2]}, tags=["nightly"]) as prep:
        prep.use_artifact("raw:v0")
        prep.log({"rows": 10})
        prep.log({"rows": 12})
        log(prep, tmp_path / "clean", {"c": "clean"}, name="clean")
    train = a.run(job_type="train", name="cnn", config={"lr": 0.01})
    run = train.__enter__()
    run.use_artifact("clean:v0")
    run.use_artifact("raw:v0")
    log(run, tmp_path / "m", {"w": "w"}, name="model")
    first = a.push()
    assert sorted(first.runs) == sorted([prep.id, run.id])
    with clone(remote, tmp_path / "b") as b:
        assert _graph(b, "raw:v0") == _graph(a, "raw:v0")
        pulled = b.get_run(prep.id)
        assert pulled.as_dict() == a.get_run(prep.id).as_dict()  # config, summary, tags, times, git, command
        assert pulled.history() == a.get_run(prep.id).history()
        assert b.get_run(run.id).status == "running"
        assert b.push().runs == []  # a clone holds exactly the remote's snapshots
        # the run finishes after it was pushed: a new snapshot, and the newer one wins everywhere
        run.summary["acc"] = 0.9
        train.__exit__(None, None, None)
        assert a.push().runs == [run.id]
        assert b.pull().runs == [run.id]
        assert b.get_run(run.id).status == "finished" and b.get_run(run.id).summary == {"acc": 0.9}
        assert b.pull().runs == [] and a.push().runs == []
        # a change made in the clone travels back
        b.get_run(prep.id).tag("checked")
        assert b.push().runs == [prep.id]
        assert a.pull().runs == [prep.id] and a.get_run(prep.id).tags == ["checked", "nightly"]
        assert _graph(b, "raw:v0") == _graph(a, "raw:v0")
        keys = [k for k in _remote_fs(remote).list_all() if k.startswith(f"runs/{run.id}/")]
        assert len(keys) == 2  # running, then finished: snapshots are never rewritten


def test_runs_with_a_selection_and_edges_to_versions_not_pulled(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "raw", {"r": "raw"}, name="raw")
    with a.run(job_type="other") as unrelated:
        unrelated.log({"x": 1})
    with a.run(job_type="train") as run:
        run.use_artifact("raw:v0")
        log(run, tmp_path / "m", {"w": "w"}, name="model")
    assert a.push(specs=["model"]).runs == [run.id]  # only the runs that touch what is pushed
    with new_store(tmp_path / "b", remote) as b:
        assert b.pull(specs=["model"]).runs == [run.id]
        assert b.get_run(run.id).used() == []  # raw is not here: the edge waits, kept by identity
        assert b.artifact("model:v0").record.run_id == run.id
        assert b.push().runs == []  # and is not lost: the snapshot is unchanged
        a.push()
        assert b.pull().runs == [unrelated.id]
        assert [v.qualified_name for v in b.get_run(run.id).used()] == ["default/raw:v0"]
        assert _graph(b, "raw:v0") == _graph(a, "raw:v0")
        assert b.push().runs == []
    with new_store(tmp_path / "c", remote) as c:  # the output's version is the one not pulled
        assert c.pull(specs=["raw"]).runs == [run.id]
        assert c.get_run(run.id).logged() == [] and len(c.get_run(run.id).used()) == 1
        assert c.push().runs == []  # the run's record is whole: the output is kept by identity
        c.pull()
        assert _graph(c, "raw:v0") == _graph(a, "raw:v0")


@pytest.mark.parametrize("attack", ["status", "input", "corrupt"])
def test_hostile_run_records_are_refused_and_nothing_is_imported(
    a: refstore.Store, tmp_path: Path, remote: RemoteSpec, attack: str
) -> None:
    from refstore.services.remote_layout import RunKey, run_path

    log(a, tmp_path / "d", {"f": "fine"})
    with a.run(job_type="train") as run:
        run.use_artifact("mnist:v0")
    a.push()
    fs = _remote_fs(remote)
    (path,) = [p for p in fs.list_all() if p.startswith("runs/")]
    body = fs.read(path)
    algorithm = a.repo.algorithm
    raw = json.loads(body)
    if attack == "status":
        raw["status"] = "done"
    elif attack == "input":
        raw["inputs"] = [{"project": "default", "name": "../x", "version": raw["inputs"][0]["version"]}]
    raw["revision"] += 1000  # so it wins over the good one
    forged = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    key = RunKey(
        1, raw["revision"], "".join(c for c in raw["updated_at"] if c.isdigit())[:20], hashing.hash_bytes(forged, algorithm)
    )
    fs.write(run_path(run.id, key), b"flipped" + forged if attack == "corrupt" else forged)
    with new_store(tmp_path / "b", remote) as b:
        with pytest.raises(IntegrityError, match=f"run record {run.id}"):
            b.pull()
        assert b.artifacts() == [] and b.runs() == []
        assert b.repo.db.scalar("SELECT COUNT(*) FROM trees") == 0


def test_incremental_push_sends_only_what_changed(a: refstore.Store, tmp_path: Path) -> None:
    files = {f"part{p}/f{i}.txt": f"{p}-{i}" for p in range(4) for i in range(10)}
    log(a, tmp_path / "d", files)
    assert a.push().objects == 40
    log(a, tmp_path / "d", {"part2/f3.txt": "changed"})
    result = a.push()
    assert result.objects == 1
    assert result.records == 2  # the root and part2/, nothing else


def test_second_pusher_is_renumbered_and_neither_version_is_lost(tmp_path: Path, remote: RemoteSpec) -> None:
    with new_store(tmp_path / "a", remote) as a, new_store(tmp_path / "b", remote) as b:
        log(a, tmp_path / "da", {"f": "from a"})
        log(b, tmp_path / "db", {"f": "from b"})
        assert a.push().renumbered == []
        result = b.push()
        assert [str(r) for r in result.renumbered] == ["default/mnist:v0 is now v1"]
        assert result.versions == ["default/mnist:v1"]
        assert [v.version for v in b.versions("mnist")] == ["v1"]
        pulled = a.pull()
        assert pulled.versions == ["default/mnist:v1"]
        assert {v.version: v.files()[0].digest for v in a.versions("mnist")} == {
            "v0": hashing.hash_bytes(b"from a", a.repo.algorithm),
            "v1": hashing.hash_bytes(b"from b", a.repo.algorithm),
        }
        b.pull()
        assert [v.digest for v in b.versions("mnist")] == [v.digest for v in a.versions("mnist")]


def test_pull_renumbers_unpushed_local_versions(tmp_path: Path, remote: RemoteSpec) -> None:
    with new_store(tmp_path / "a", remote) as a, new_store(tmp_path / "b", remote) as b:
        log(a, tmp_path / "da", {"f": "a0"})
        log(a, tmp_path / "da", {"f": "a1"})
        a.push()
        log(b, tmp_path / "db", {"f": "b0"}, aliases=("mine",))
        result = b.pull()
        assert [str(r) for r in result.renumbered] == ["default/mnist:v0 is now v2"]
        assert b.artifact("mnist:mine").version == "v2"
        assert b.artifact("mnist:latest").version == "v2"
        assert b.push().versions == ["default/mnist:v2"]


def test_alias_moves_propagate_and_conflicts_are_reported(tmp_path: Path, remote: RemoteSpec) -> None:
    with new_store(tmp_path / "a", remote) as a:
        log(a, tmp_path / "da", {"f": "0"}, aliases=("best",))
        log(a, tmp_path / "da", {"f": "1"})
        a.push()
        with clone(remote, tmp_path / "b") as b:
            a.set_alias("mnist:v1", "best")
            assert a.push().aliases == ["default/mnist:best -> v1"]
            assert b.pull().aliases == ["default/mnist:best -> v1"]
            assert b.artifact("mnist:best").version == "v1"
            # b moves an alias back and forth to where it last saw it: nothing to push
            b.set_alias("mnist:v0", "best")
            b.set_alias("mnist:v1", "best")
            assert b.push().aliases == []
            # both create the same alias on different versions: the second pusher is told
            b.set_alias("mnist:v0", "stable")
            a.set_alias("mnist:v1", "stable")
            assert a.push().conflicts == []
            conflicts = b.push().conflicts
            assert len(conflicts) == 1 and "stable" in conflicts[0]
            with clone(remote, tmp_path / "c") as c:
                assert c.artifact("mnist:stable").version == "v1"  # not overwritten
            pulled = b.pull()
            assert len(pulled.conflicts) == 1 and b.artifact("mnist:stable").version == "v0"  # kept, reported
            # having seen theirs, b's next push is a deliberate move: it wins, and a sees it
            assert b.push().aliases == ["default/mnist:stable -> v0"]
            assert a.pull().aliases == ["default/mnist:stable -> v0"]


def test_pull_objects_fetches_everything_verified(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "d", {f"f{i}": f"content {i}" for i in range(20)})
    a.push()
    with new_store(tmp_path / "b", remote) as b:
        result = b.pull(objects=True, jobs=3)
        assert result.objects == 20
        assert sorted(b.repo.cache.digests()) == sorted(a.repo.cache.digests())
        assert b.verify().ok and b.verify().objects_checked == 20


def test_select_specs(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    for i in range(3):
        log(a, tmp_path / "m", {"f": f"m{i}"})
    log(a, tmp_path / "o", {"g": "other"}, name="other")
    assert a.push(specs=["mnist:v1"]).versions == ["default/mnist:v0", "default/mnist:v1"]
    with new_store(tmp_path / "b", remote) as b:
        assert b.pull(specs=["mnist"]).versions == ["default/mnist:v0", "default/mnist:v1"]
        assert [r["name"] for r in b.artifacts()] == ["mnist"]
    assert a.push().versions == ["default/mnist:v2", "default/other:v0"]


def _remote_fs(remote: RemoteSpec) -> RemoteFS:
    return RemoteFS(remote.url, remote.options)


def test_corrupt_object_on_remote_is_refused(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "d", {"f": "good bytes"})
    a.push()
    digest = a.artifact("mnist").files()[0].digest
    assert digest is not None
    _remote_fs(remote).write(object_path(digest), b"evil bytes")
    with clone(remote, tmp_path / "b") as b:
        with pytest.raises(IntegrityError, match="corrupt"):
            b.artifact("mnist").download(tmp_path / "out")
        assert list(b.repo.cache.digests()) == []
        assert not (tmp_path / "out" / "f").exists()


def _forge_version(a: refstore.Store, remote: RemoteSpec, nodes: list[Node], size: int, files: int) -> None:
    """Put a well-hashed but malicious manifest and version on the remote as mnist:v1."""
    fs = _remote_fs(remote)
    algorithm = a.repo.algorithm
    body = encode_record(nodes)
    root = hashing.hash_bytes(body, algorithm)
    fs.write(tree_path(root), body)
    data = VersionData("default", "mnist", "dataset", root, size, files, "", "{}", "2026-01-01T00:00:00.000000Z", None)
    record = data.digest(algorithm)
    fs.write(record_path("default", "mnist", record), data.encode())
    assert fs.create(number_path("default", "mnist", 1), record.encode())


@pytest.mark.parametrize("attack", ["escape", "sizes", "bad-record-digest"])
def test_malicious_records_are_refused_and_nothing_is_imported(
    a: refstore.Store, tmp_path: Path, remote: RemoteSpec, attack: str
) -> None:
    log(a, tmp_path / "d", {"f": "fine"})
    a.push()
    digest = hashing.hash_bytes(b"x", a.repo.algorithm)
    if attack == "escape":
        raw = json.dumps([{"name": "..", "type": "file", "size": 1, "digest": digest}]).encode()
        fs = _remote_fs(remote)
        root = hashing.hash_bytes(raw, a.repo.algorithm)
        fs.write(tree_path(root), raw)
        data = VersionData("default", "mnist", "dataset", root, 1, 1, "", "{}", "2026-01-01T00:00:00.000000Z", None)
        fs.write(record_path("default", "mnist", data.digest(a.repo.algorithm)), data.encode())
        fs.create(number_path("default", "mnist", 1), data.digest(a.repo.algorithm).encode())
    elif attack == "sizes":
        _forge_version(a, remote, [Node("f", "file", 1, digest)], size=10**9, files=1)
    else:
        _forge_version(a, remote, [Node("f", "file", 1, digest)], size=1, files=1)
        fs = _remote_fs(remote)
        listing = [p for p in fs.list_all() if p.startswith("versions/default/mnist/")]
        for path in listing:
            fs.write(path, fs.read(path).replace(b'"files":1', b'"files":2'))
    with new_store(tmp_path / "b", remote) as b:
        with pytest.raises(RefstoreError):
            b.pull()
        assert b.artifacts() == []
        assert b.repo.db.scalar("SELECT COUNT(*) FROM trees") == 0


def test_resumed_push_sends_only_what_is_missing(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "d", {f"f{i}": f"v{i}" for i in range(10)})
    fs = _remote_fs(remote)
    a.push()
    # Pretend the push died after the objects: drop the claim, record and half the objects.
    paths = sorted(fs.list_all())
    listing = [p for p in paths if p.startswith(("numbers/", "versions/", "trees/"))]
    objects = [p for p in paths if p.startswith("objects/")][:5]
    fs2 = fs.fs
    for path in listing + objects:
        if fs.local:
            Path(fs.root, path).unlink()
        else:
            fs2.rm_file(f"{fs.root}/{path}")
    a.repo.db.execute("DELETE FROM remote_versions")
    result = a.push()
    assert result.objects == 5 and result.versions == ["default/mnist:v0"] and result.renumbered == []
    with clone(remote, tmp_path / "b") as b:
        b.pull(objects=True)
        assert b.verify().ok and b.verify().objects_checked == 10


def test_exclusive_create_refuses_an_existing_file(remote: RemoteSpec) -> None:
    fs = _remote_fs(remote)
    assert fs.exclusive
    assert fs.create("numbers/default/x/v0", b"first")
    assert not fs.create("numbers/default/x/v0", b"second")
    assert fs.read("numbers/default/x/v0") == b"first"
    assert "numbers/default/x/v0" in fs.list_all()


def test_planted_managed_alias_names_are_ignored(a: refstore.Store, tmp_path: Path, remote: RemoteSpec) -> None:
    log(a, tmp_path / "d", {"f": "0"})
    log(a, tmp_path / "d", {"f": "1"})
    a.push()
    fs = _remote_fs(remote)
    v0 = fs.read(number_path("default", "mnist", 0)).decode()
    for alias in ("latest", "v1", "best"):
        fs.write(f"aliases/default/mnist/{alias}/7", json.dumps({"version": v0, "number": 0}).encode())
    with clone(remote, tmp_path / "b") as b:
        assert b.artifact("mnist:latest").version == "v1"
        assert b.artifact("mnist:v1").files()[0].digest == hashing.hash_bytes(b"1", b.repo.algorithm)
        assert b.artifact("mnist:best").version == "v0"
        assert b.versions("mnist")[1].aliases == ["best"]


def test_alias_move_racing_a_stale_listing_is_a_conflict_not_an_overwrite(tmp_path: Path, remote: RemoteSpec) -> None:
    from refstore.services.push import _push_aliases
    from refstore.services.sync_common import SyncResult, read_listing

    with new_store(tmp_path / "a", remote) as a:
        log(a, tmp_path / "da", {"f": "0"}, aliases=("best",))
        log(a, tmp_path / "da", {"f": "1"})
        a.push()
        with clone(remote, tmp_path / "b") as b:
            b.set_alias("mnist:v1", "best")
            fs = _remote_fs(remote)
            stale = read_listing(b.repo, fs, create=False)  # b lists ...
            log(a, tmp_path / "da", {"f": "2"}, aliases=("best",))
            a.push()  # ... a moves best meanwhile ...
            result = SyncResult("origin", remote.url)
            _push_aliases(b.repo, "origin", fs, stale, None, result)  # ... b pushes with the stale listing
            assert result.aliases == [] and len(result.conflicts) == 1
            with clone(remote, tmp_path / "c") as c:
                assert c.artifact("mnist:best").version == "v2"


def test_push_to_a_missing_bucket_is_one_clear_error(tmp_path: Path, remote: RemoteSpec) -> None:
    if remote.kind in ("dir", "memory"):
        pytest.skip("directories and memory:// are created on first push")
    from refstore.errors import BackendError

    scheme, _, rest = remote.url.partition("://")
    missing = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:8]}/{rest.partition('/')[2]}"
    with refstore.init(tmp_path / "a") as a:
        a.add_remote("origin", missing, **remote.options)
        log(a, tmp_path / "d", {"f": "x"})
        with pytest.raises(BackendError, match="failed while"):
            a.push()
        assert a.repo.db.scalar("SELECT COUNT(*) FROM remote_versions") == 0
