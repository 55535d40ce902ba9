"""Concurrency: 4 processes putting, aliasing and gc-ing on one store.

Each worker (concurrent_worker.py) does a fixed number of random operations (fixed
seeds) and records what it did. Afterwards every version a worker logged is present
with its number and digest, numbers are unique and gap-free, each worker's own alias
points where that worker last put it, the shared alias points at a version someone
set it to, ``verify`` passes and every version checks out with the bytes its writer
put there. Two stores pushing to one remote plug in here once remotes exist.
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


@pytest.mark.skipif(not has_command("push"), reason="remotes (issue 4) are not on this branch yet")
def test_two_stores_push_to_one_remote(workdir: Path) -> None:
    """Parametrization point for issue 4 (directory and moto remotes): see docs/reliability.md."""
    pytest.skip("write against the push/pull API once it is on main")
