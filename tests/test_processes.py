"""Real processes: concurrent writers on one store, and SIGKILL part-way through a put."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore, subprocess_env


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "refstore", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_puts_both_land(workdir: Path) -> None:
    run_refstore("init", cwd=workdir)
    for name in ("one", "two", "three"):
        make_tree(workdir / name, {f"d{i % 7}/f{i}.txt": f"{name}-{i}" for i in range(300)})
    procs = [spawn("put", name, "--name", "shared", "--json", cwd=workdir) for name in ("one", "two", "three")]
    procs.append(spawn("put", "one", "--name", "solo", "--json", cwd=workdir))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    shared = [r for r in results if r["name"] == "shared"]
    assert sorted(r["version"] for r in shared) == ["v0", "v1", "v2"]
    assert len({r["digest"] for r in shared}) == 3
    log = json.loads(run_refstore("log", "shared", "--json", cwd=workdir).stdout)
    assert sorted(v["digest"] for v in log) == sorted(r["digest"] for r in shared)
    run_refstore("verify", cwd=workdir)
    for record in shared:
        out = workdir / "out" / record["version"]
        run_refstore("get", f"shared:{record['version']}", "-o", str(out), cwd=workdir)
        source = {"one": workdir / "one", "two": workdir / "two", "three": workdir / "three"}
        matches = [n for n, p in source.items() if (out / "d0" / "f0.txt").read_text() == (p / "d0" / "f0.txt").read_text()]
        assert len(matches) == 1


def test_gc_waits_for_concurrent_put(workdir: Path) -> None:
    run_refstore("init", cwd=workdir)
    make_tree(workdir / "data", {f"f{i}.bin": random.randbytes(2000) for i in range(1500)})
    put = spawn("put", "data", "--name", "big", cwd=workdir)
    gcs = [spawn("gc", cwd=workdir) for _ in range(3)]
    for proc in [put, *gcs]:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    run_refstore("verify", cwd=workdir)
    run_refstore("get", "big", "-o", str(workdir / "out"), cwd=workdir)


@pytest.mark.slow
def test_sigkill_during_put_leaves_a_verifiable_store(workdir: Path) -> None:
    run_refstore("init", cwd=workdir)
    rng = random.Random(7)
    make_tree(workdir / "data", {f"d{i % 20}/f{i}.bin": rng.randbytes(rng.randint(100, 4000)) for i in range(2500)})
    (workdir / "data" / "large.bin").write_bytes(rng.randbytes(20 << 20))
    killed_mid_way = 0
    counts_put: set[int] = set()
    for attempt in range(6):
        counts_put.add(2501 + attempt)
        proc = spawn("put", "data", "--name", "crash", cwd=workdir)
        time.sleep(rng.uniform(0.2, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_way += 1
        proc.wait(timeout=60)
        verify = run_refstore("verify", "--json", cwd=workdir, check=False)
        assert verify.returncode == 0, f"attempt {attempt}: {verify.stdout}{verify.stderr}"
        versions = run_refstore("log", "crash", "--json", cwd=workdir, check=False)
        if versions.returncode == 0:  # a version is visible only whole, and its files can be checked out
            for version in json.loads(versions.stdout):
                assert version["files"] in counts_put
                out = workdir / "check" / f"{attempt}-{version['version']}"
                run_refstore("get", f"crash:{version['version']}", "-o", str(out), cwd=workdir)
                run_refstore("verify", f"crash:{version['version']}", "--dir", str(out), cwd=workdir)
        # new content each time, so every attempt has work to do
        (workdir / "data" / f"d0/extra{attempt}.bin").write_bytes(rng.randbytes(1000))
    assert killed_mid_way >= 3
    run_refstore("put", "data", "--name", "crash", cwd=workdir)
    run_refstore("verify", cwd=workdir)
    out = workdir / "out"
    run_refstore("get", "crash", "-o", str(out), cwd=workdir)
    assert (out / "large.bin").read_bytes() == (workdir / "data" / "large.bin").read_bytes()
    gc = json.loads(run_refstore("gc", "--json", cwd=workdir).stdout)
    assert gc["temp_files"] >= 0
    assert not any((workdir / ".refstore" / "tmp").iterdir())
