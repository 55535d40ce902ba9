"""Real processes: concurrent pushers to one remote, and kill -9 in the middle of push and pull."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore, subprocess_env
from remote_backends import RemoteSpec, make_remote
from servers import azure_server, gcs_server, s3_server  # noqa: F401  (fixtures)

import refstore
from refstore.core.remotefs import STALE_PART_SECONDS

PUSHER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import refstore
    store_dir, label, rounds, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.005)
    with refstore.open(store_dir) as store:
        for i in range(rounds):
            data = Path(store_dir) / "data"
            data.mkdir(exist_ok=True)
            (data / "f.txt").write_text(f"{label} round {i}")
            art = refstore.Artifact("shared")
            art.add_dir(data)
            with store.run(job_type="make", name=f"{label}-{i}") as run:
                run.log_artifact(art)
            result = store.push()
            for change in result.renumbered:
                print("renumbered", change, flush=True)
    """
)


@pytest.fixture(params=["dir", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RemoteSpec:
    return make_remote(request.param, request, tmp_path, monkeypatch)


def test_concurrent_pushers_never_lose_a_version(tmp_path: Path, remote: RemoteSpec) -> None:
    rounds = 4
    stores = []
    for label in ("a", "b"):
        with refstore.init(tmp_path / label) as store:
            store.add_remote("origin", remote.url, **remote.options)
        stores.append(tmp_path / label)
    go = tmp_path / "go"
    env = subprocess_env(remote.env)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUSHER, str(path), path.name, str(rounds), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in stores
    ]
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e for _, e in outputs)
    # exactly one store got remote v0, so the other's first version (local v0) was renumbered and told
    assert sum(out.count("renumbered") for out, _ in outputs) >= 1
    with refstore.clone(remote.url, tmp_path / "c", **remote.options) as clone:
        versions = clone.versions("shared")
        assert [v.version for v in versions] == [f"v{n}" for n in range(2 * rounds - 1, -1, -1)]
        contents = set()
        for version in versions:
            out = version.download(tmp_path / "out" / version.version)
            contents.add((out / "f.txt").read_text())
        assert contents == {f"{label} round {i}" for label in ("a", "b") for i in range(rounds)}
        assert clone.verify().ok
        # and no run was lost either: each version still names the run that made it, finished
        runs = {run.id: run for run in clone.runs(limit=100)}
        assert sorted(run.name for run in runs.values()) == sorted(f"{label}-{i}" for label in "ab" for i in range(rounds))
        assert all(runs[v.record.run_id].status == "finished" for v in versions if v.record.run_id is not None)
        assert sorted(v.record.run_id or "" for v in versions) == sorted(runs)
    # each pusher's store agrees with the remote about the numbers of its own versions
    for path in stores:
        with refstore.open(path) as store:
            for version in store.versions("shared"):
                assert versions[len(versions) - 1 - int(version.version[1:])].digest == version.digest


def _count_files(directory: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(directory)) if directory.is_dir() else 0


def _kill_when(proc: subprocess.Popen[str], ready: object) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (polling; no timing is asserted)."""
    deadline = time.monotonic() + 60
    while not ready():  # type: ignore[operator]
        assert proc.poll() is None, "the command finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_mid_push_and_mid_pull_then_repeat_completes(tmp_path: Path) -> None:
    work = tmp_path / "w"
    make_tree(work / "data", {f"d{i // 100}/f{i}.bin": os.urandom(8192) + str(i).encode() for i in range(400)})
    run_refstore("init", cwd=work)
    run_refstore("put", "data", "--name", "big", "--alias", "best", cwd=work)
    remote = tmp_path / "remote"
    run_refstore("remote", "add", "origin", str(remote), cwd=work)
    cmd = [sys.executable, "-m", "refstore", "push", "--jobs", "1"]
    proc = subprocess.Popen(cmd, cwd=work, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: _count_files(remote / "objects") > 64)
    assert not (remote / "numbers").exists()  # it died before claiming a number
    run_refstore("verify", cwd=work)
    leftovers = list((remote / "tmp").glob("*.part"))
    for part in leftovers:  # what the killed push left, made older than the safe age
        os.utime(part, (time.time() - STALE_PART_SECONDS - 60,) * 2)
    out = run_refstore("push", cwd=work).stdout
    assert not any(part.exists() for part in leftovers)
    assert "1 versions" in out
    assert _count_files(remote / "objects") == 400
    assert run_refstore("push", cwd=work).stdout.strip() == "origin is up to date"

    run_refstore("clone", str(remote), str(tmp_path / "c"), cwd=tmp_path)
    cache = tmp_path / "c" / ".refstore" / "objects"
    cmd = [sys.executable, "-m", "refstore", "pull", "--objects", "--jobs", "1"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path / "c", env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _kill_when(proc, lambda: _count_files(cache) > 64)
    assert _count_files(cache) < 400
    run_refstore("verify", cwd=tmp_path / "c")
    run_refstore("pull", "--objects", cwd=tmp_path / "c")
    assert _count_files(cache) == 400
    assert run_refstore("verify", cwd=tmp_path / "c").stdout.startswith("ok: 400 objects")
    run_refstore("get", "big:best", "-o", "out", cwd=tmp_path / "c")
    assert (tmp_path / "c" / "out" / "d2" / "f221.bin").read_bytes() == (work / "data" / "d2" / "f221.bin").read_bytes()
