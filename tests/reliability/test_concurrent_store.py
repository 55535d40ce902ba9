"""Concurrency: 4 processes putting, aliasing and gc-ing on one store.

Each worker (concurrent_worker.py) does a fixed number of random operations (fixed
seeds) and records what it did. Afterwards every version a worker logged is present
with its number and digest, numbers are unique and gap-free, each worker's own alias
points where that worker last put it, the shared alias points at a version someone
set it to, ``verify`` passes and every version checks out with the bytes its writer
put there. Then two stores push to one remote (directory and moto S3) at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_refstore, subprocess_env
from faultkit import has_command, snapshot, verify_in_process

import refstore

WORKERS = 4
OPERATIONS = 40
WORKER = Path(__file__).with_name("concurrent_worker.py")


def test_four_processes_put_alias_and_gc_on_one_store(workdir: Path) -> None:
    run_refstore("init", cwd=workdir)
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(workdir), str(i), str(OPERATIONS), str(workdir / f"w{i}.json")],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    logs = [json.loads((workdir / f"w{i}.json").read_text()) for i in range(WORKERS)]
    assert all(log["error"] is None for log in logs)
    ops = [dict(op, worker=i) for i, log in enumerate(logs) for op in log["done"]]
    puts = [op for op in ops if op["op"] == "put"]
    assert len({op["op"] for op in ops}) == 3, "every kind of operation ran"

    state = snapshot(workdir / ".refstore")
    for name in ("alpha", "beta"):
        numbers = sorted(int(k.split(":v")[1]) for k in state["versions"] if k.startswith(f"default/{name}:"))
        mine = [op for op in puts if op["name"] == name]
        assert numbers == list(range(len(mine))), f"{name}: numbers {numbers} for {len(mine)} puts"
        assert len({op["version"] for op in mine}) == len(mine), "two puts got the same version number"
    for op in puts:
        assert op["created"], "each put had new content"
        assert state["versions"][f"default/{op['name']}:{op['version']}"][0] == op["digest"]

    aliases = [op for op in ops if op["op"] == "alias"]
    for key, number in state["aliases"].items():
        name, alias = key.removeprefix("default/").split(":")
        set_to = [op for op in aliases if op["name"] == name and op["alias"] == alias]
        assert f"v{number}" in {op["version"] for op in set_to}, f"{key} -> v{number} was never set"
        if alias.startswith("w"):  # only that worker moves it: it is where the worker left it
            assert f"v{number}" == set_to[-1]["version"]

    assert verify_in_process(workdir) == []
    with refstore.open(workdir) as store:
        for op in puts:
            out = store.artifact(f"{op['name']}:{op['version']}").download(workdir / "out" / op["name"] / op["version"])
            assert (out / "token.txt").read_text() == op["token"]
    assert "ok:" in run_refstore("verify", cwd=workdir).stdout


PUSHER = """
import sys, random, refstore
from pathlib import Path
work, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
with refstore.open(work) as store:
    for step in range(6):
        data = work / "data"
        data.mkdir(exist_ok=True)
        (data / "token.txt").write_text(f"store {seed} step {step}")
        (data / "blob.bin").write_bytes(rng.randbytes(2000))
        art = refstore.Artifact("shared")
        art.add_dir(data)
        store.log_artifact(art)
        store.push("origin")
"""


@pytest.mark.skipif(not has_command("push"), reason="remotes (issue 4) are not on this branch yet")
@pytest.mark.parametrize("backend", ["directory", "s3"])
def test_two_stores_push_to_one_remote_at_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two stores log and push 6 versions each, concurrently; the remote ends with all 12, distinct numbers."""
    env: dict[str, str] = {}
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        server.make_bucket("race")
        url, env = "s3://race/store", dict(server.env)
    else:
        url = str(tmp_path / "remote")
    stores = [tmp_path / "a", tmp_path / "b"]
    for work in stores:
        work.mkdir()
        run_refstore("init", cwd=work, env=env)
        run_refstore("remote", "add", "origin", url, cwd=work, env=env)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUSHER, str(work), str(i)], env=subprocess_env(env), stderr=subprocess.PIPE, text=True
        )
        for i, work in enumerate(stores)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for work in stores:  # a last push catches anything a lost race left behind
        run_refstore("push", "origin", cwd=work, env=env)
    clone = tmp_path / "clone"
    run_refstore("clone", url, str(clone), cwd=tmp_path, env=env)
    log = json.loads(run_refstore("log", "shared", "--json", cwd=clone, env=env).stdout)
    numbers = sorted(int(v["version"][1:]) for v in log)
    assert numbers == list(range(12)), numbers
    tokens = set()
    for version in log:
        out = tmp_path / "out" / version["version"]
        run_refstore("get", f"shared:{version['version']}", "-o", str(out), cwd=clone, env=env)
        tokens.add((out / "token.txt").read_text())
    assert tokens == {f"store {i} step {s}" for i in range(2) for s in range(6)}
    assert "ok:" in run_refstore("verify", cwd=clone, env=env).stdout
    for work in stores:  # each store's own versions agree with the remote after a pull
        run_refstore("pull", "origin", cwd=work, env=env)
        mine = {v["digest"]: v["version"] for v in json.loads(run_refstore("log", "shared", "--json", cwd=work, env=env).stdout)}
        theirs = {v["digest"]: v["version"] for v in log}
        assert all(theirs[d] == n for d, n in mine.items()), (mine, theirs)
