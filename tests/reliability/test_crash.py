"""SIGKILL real ``refstore`` processes at random points; nothing logged may be lost.

Each operation in :data:`CRASH_OPERATIONS` is started as a real subprocess and
killed with SIGKILL at a random moment (fixed seed) inside the window an
uninterrupted run takes, at least ``KILLS`` times. After every kill:

- ``verify`` finds no problem (same code as ``refstore verify``, run in-process for speed);
- every version and alias that existed before is still there, unchanged;
- a version that appeared is whole (its manifest adds up, its objects are cached);
- the operation's own post-condition holds (e.g. no half file under a real name).

At the end the operation is repeated to completion and ``refstore verify`` (the CLI)
passes. push/pull plug in here once remotes exist (see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import run_refstore
from faultkit import has_command, snapshot, spawn, verify_in_process, write_files

import refstore
from refstore.core import hashing

KILLS = 20
LARGE = 64 << 20  # sized so that a put or get takes about a second on 2 cores
SEED = 20261124
pytestmark = pytest.mark.slow


@dataclass
class CrashRun:
    """State shared by one operation's attempts."""

    work: Path
    rng: random.Random
    attempt: int = 0
    counts: set[int] = field(default_factory=set)  # file counts a new version may legitimately have
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def store_dir(self) -> Path:
        return self.work / ".refstore"


def _dataset(run: CrashRun) -> None:
    rng = run.rng
    write_files(run.work / "data", {f"d{i % 12}/f{i}.bin": rng.randbytes(rng.randint(100, 8000)) for i in range(600)})
    (run.work / "data" / "large.bin").write_bytes(rng.randbytes(LARGE))


def _base_store(run: CrashRun) -> None:
    run_refstore("init", cwd=run.work)
    _dataset(run)
    run_refstore("put", "data", "--name", "crash", "--alias", "base", "--metadata", '{"k": 1}', cwd=run.work)


# -- put --------------------------------------------------------------------------------------------
def put_prepare(run: CrashRun) -> list[str]:
    """New content every attempt (one more file, a rewritten large file), so the put has work."""
    data = run.work / "data"
    (data / f"extra/e{run.attempt}.bin").parent.mkdir(exist_ok=True)
    (data / f"extra/e{run.attempt}.bin").write_bytes(run.rng.randbytes(500))
    (data / "large.bin").write_bytes(run.rng.randbytes(LARGE))
    for i in range(0, 600, 12):
        (data / f"d{i % 12}/f{i}.bin").write_bytes(run.rng.randbytes(4000))
    run.counts.add(sum(1 for p in data.rglob("*") if p.is_file()))
    run.notes["objects_before"] = count_objects(run)
    return ["put", "data", "--name", "crash", "--json"]


def put_check(run: CrashRun, before: dict[str, Any], after: dict[str, Any]) -> None:
    new = after["versions"].keys() - before["versions"].keys()
    for key in new:
        assert after["versions"][key][2] in run.counts, f"{key} is a half version: {after['versions'][key]}"
    staged = any((run.store_dir / "tmp").iterdir()) or count_objects(run) > run.notes.get("objects_before", 0)
    if not new and staged:
        run.notes["killed_mid_work"] = run.notes.get("killed_mid_work", 0) + 1


# -- get --------------------------------------------------------------------------------------------
def get_setup(run: CrashRun) -> None:
    with refstore.open(run.work) as store:
        version = store.artifact("crash:base")
        run.notes["files"] = version.file_count
        expected = {e.path: e.digest for e in version.files()}
    (run.work / "expected.json").write_text(json.dumps(expected))


def get_prepare(run: CrashRun) -> list[str]:
    out = run.work / "out"
    if run.attempt % 2 == 0 and out.exists() and not run.notes.get("final"):  # every other attempt starts empty
        shutil.rmtree(out)
    return ["get", "crash:base", "-o", str(out)]


def get_check(run: CrashRun, before: dict[str, Any], after: dict[str, Any]) -> None:
    """A file under a manifest path is absent or whole: never half-written."""
    expected: dict[str, str] = json.loads((run.work / "expected.json").read_text())
    out = run.work / "out"
    if not out.exists():
        return
    whole = sum(1 for p in out.rglob("*") if p.is_file() and p.relative_to(out).as_posix() in expected)
    if 0 < whole < len(expected):
        run.notes["killed_mid_work"] = run.notes.get("killed_mid_work", 0) + 1
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(out).as_posix()
        if rel in expected:
            assert hashing.hash_file(path)[0] == expected[rel], f"{rel} is half-written after a kill"
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), f"unexpected file {rel}"
            # the final, complete get resumes into the target the kills left: it removes their temp files
            assert not run.notes.get("final"), f"stray {rel} left after a complete get"
            run.notes["temp_leftovers"] = run.notes.get("temp_leftovers", 0) + 1


# -- gc ---------------------------------------------------------------------------------------------
def gc_prepare(run: CrashRun) -> list[str]:
    """Garbage for gc: loose dead objects every attempt, a deleted version (dead records) every fifth."""
    work = run.work
    objects = run.store_dir / "objects"
    dead = count_objects(run) - run.notes["objects_live"]
    for _ in range(max(0, 1000 - dead)):  # the same amount of garbage each time, so the window stays right
        data = run.rng.randbytes(64)
        digest = hashing.hash_bytes(data)
        path = objects / digest[:2] / digest[2:]
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    if run.attempt % 5 == 1:
        write_files(work / "junk", {f"j{i % 30}/x{run.attempt}-{i}.bin": run.rng.randbytes(64) for i in range(200)})
        with refstore.open(work) as store:
            art = refstore.Artifact("junk")
            art.add_dir(work / "junk")
            version = store.log_artifact(art)
            store.delete(f"junk:{version.version}")
        shutil.rmtree(work / "junk")
    run.notes["objects_before"] = count_objects(run)
    return ["gc", "--json"]


def gc_check(run: CrashRun, before: dict[str, Any], after: dict[str, Any]) -> None:
    # every version that was there is intact (checked by the caller) and its bytes still come out
    if run.notes["objects_live"] < count_objects(run) < run.notes["objects_before"]:
        run.notes["killed_mid_work"] = run.notes.get("killed_mid_work", 0) + 1
    if run.attempt > KILLS:  # after the final, complete gc
        out = run.work / f"gc-out{run.attempt}"
        with refstore.open(run.work) as store:
            store.artifact("crash:base").download(out)
        shutil.rmtree(out)


# -- push / pull (a directory remote) ------------------------------------------------------------------
def _new_version(run: CrashRun, work: Path) -> None:
    """One more version with a large changed file, logged in-process (fast)."""
    (work / "data" / "large.bin").write_bytes(run.rng.randbytes(LARGE))
    (work / "data" / f"extra/p{run.attempt}.bin").parent.mkdir(exist_ok=True)
    (work / "data" / f"extra/p{run.attempt}.bin").write_bytes(run.rng.randbytes(500))
    with refstore.open(work) as store:
        art = refstore.Artifact("crash")
        art.add_dir(work / "data")
        store.log_artifact(art)


def push_setup(run: CrashRun) -> None:
    with refstore.open(run.work) as store:
        store.add_remote("origin", str(run.work.parent / "remote"))


def push_prepare(run: CrashRun) -> list[str]:
    _new_version(run, run.work)
    return ["push", "origin"]


def push_check(run: CrashRun, before: dict[str, Any], after: dict[str, Any]) -> None:
    """After the final push, a clone of the remote holds every local version, whole."""
    if run.attempt <= KILLS:
        return
    clone_dir = run.work.parent / f"clone{run.attempt}"
    with refstore.clone(str(run.work.parent / "remote"), clone_dir) as cloned:
        assert cloned.verify().ok
        theirs = {(v.version, v.digest) for v in cloned.versions("crash")}
    mine = {(k.split(":")[1], v[0]) for k, v in after["versions"].items() if k.startswith("default/crash:")}
    assert mine <= theirs, f"versions missing on the remote: {mine - theirs}"


def pull_setup(run: CrashRun) -> None:
    """The store under test pulls from a remote that a second store ("upstream") pushes to."""
    upstream = run.work.parent / "upstream"
    upstream.mkdir()
    shutil.copytree(run.work / "data", upstream / "data")
    refstore.init(upstream).close()
    with refstore.open(upstream) as store:
        store.add_remote("origin", str(run.work.parent / "remote"))
    with refstore.open(run.work) as store:
        store.add_remote("origin", str(run.work.parent / "remote"))


def pull_prepare(run: CrashRun) -> list[str]:
    upstream = run.work.parent / "upstream"
    _new_version(run, upstream)
    with refstore.open(upstream) as store:
        store.push("origin")
    return ["pull", "origin", "--objects"]


def pull_check(run: CrashRun, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Pulled versions are whole (the caller's verify checks objects and totals) and match upstream."""
    with refstore.open(run.work.parent / "upstream") as store:
        upstream = {v.digest for v in store.versions("crash")}
    local = {v[0] for k, v in after["versions"].items() if k.startswith("default/crash:")}
    base = {v[0] for k, v in before["versions"].items() if k.startswith("default/crash:")}
    assert local - base <= upstream, "a pulled version that upstream never pushed"


@dataclass(frozen=True)
class CrashOperation:
    setup: Callable[[CrashRun], None]
    prepare: Callable[[CrashRun], list[str]]
    check: Callable[[CrashRun, dict[str, Any], dict[str, Any]], None]
    needs: str | None = None  # CLI command that must exist
    renumbers: bool = False  # unpushed versions may get new numbers (docs/remotes.md); compare by content


def by_content(state: dict[str, Any]) -> tuple[set[tuple[Any, ...]], dict[str, Any]]:
    """Versions as (artifact, digest, size, files, metadata) and aliases as alias -> digest."""
    versions = {(k.split(":")[0], *v) for k, v in state["versions"].items()}
    aliases = {k: state["versions"][f"{k.split(':')[0]}:v{n}"][0] for k, n in state["aliases"].items()}
    return versions, aliases


def _nothing(run: CrashRun) -> None:
    return None


def gc_setup(run: CrashRun) -> None:
    run.notes["objects_live"] = count_objects(run)


def count_objects(run: CrashRun) -> int:
    return sum(len(files) for _, _, files in os.walk(run.store_dir / "objects"))


# The parametrization point: every operation that writes a store or a remote has an entry.
CRASH_OPERATIONS: dict[str, CrashOperation] = {
    "put": CrashOperation(_nothing, put_prepare, put_check),
    "get": CrashOperation(get_setup, get_prepare, get_check),
    "gc": CrashOperation(gc_setup, gc_prepare, gc_check),
    "push": CrashOperation(push_setup, push_prepare, push_check, needs="push", renumbers=True),
    "pull": CrashOperation(pull_setup, pull_prepare, pull_check, needs="pull", renumbers=True),
}


def _calibrate(run: CrashRun, op: CrashOperation) -> float:
    """Duration of an uninterrupted run (the second: the first may warm caches); kills land inside it."""
    durations = []
    for _ in range(2):
        args = op.prepare(run)
        started = time.monotonic()
        proc = spawn(*args, cwd=run.work)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        durations.append(time.monotonic() - started)
    return durations[-1]


def _startup(run: CrashRun) -> float:
    """How long a process takes to start and open the store (``refstore ls``)."""
    started = time.monotonic()
    proc = spawn("ls", cwd=run.work)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return (time.monotonic() - started) * 0.8


@pytest.mark.parametrize("name", sorted(CRASH_OPERATIONS))
def test_sigkill_at_random_points_loses_nothing(name: str, workdir: Path) -> None:
    op = CRASH_OPERATIONS[name]
    if op.needs and not has_command(op.needs):
        pytest.skip(f"'refstore {op.needs}' does not exist yet")
    run = CrashRun(workdir, random.Random(f"{SEED}-{name}"))
    _base_store(run)
    op.setup(run)
    window = _calibrate(run, op)
    startup = _startup(run)  # kills before the command does anything would test nothing
    killed = completed = 0
    while killed < KILLS:
        run.attempt += 1
        assert run.attempt <= KILLS * 2, f"only {killed} kills landed in {run.attempt} attempts"
        args = op.prepare(run)
        before = snapshot(run.store_dir)
        proc = spawn(*args, cwd=workdir)
        time.sleep(run.rng.uniform(min(startup, window * 0.8), window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        else:
            completed += 1
            window *= 0.7  # it finished first: the machine is less loaded than at calibration, aim earlier
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err
        problems = verify_in_process(workdir)
        assert not problems, f"{name} attempt {run.attempt}: {problems}"
        after = snapshot(run.store_dir)
        if op.renumbers:
            (old_versions, old_aliases), (new_versions, new_aliases) = by_content(before), by_content(after)
            assert old_versions <= new_versions, f"{name} attempt {run.attempt} lost {old_versions - new_versions}"
            moved = {k: v for k, v in old_aliases.items() if new_aliases.get(k) != v}
        else:
            lost = {k: v for k, v in before["versions"].items() if after["versions"].get(k) != v}
            assert not lost, f"{name} attempt {run.attempt} lost or changed {lost}"
            moved = {k: v for k, v in before["aliases"].items() if after["aliases"].get(k) != v}
        assert not moved, f"{name} attempt {run.attempt} moved aliases {moved}"
        op.check(run, before, after)
    # a repeat completes, and the CLI agrees that the store is whole
    run.attempt += 1
    run.notes["final"] = 1
    proc = spawn(*op.prepare(run), cwd=workdir)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    op.check(run, before, snapshot(run.store_dir))
    assert "ok:" in run_refstore("verify", cwd=workdir).stdout
    assert killed >= KILLS
    notes = {k: v for k, v in run.notes.items() if k not in ("objects_before", "objects_live", "final")}
    print(f"crash[{name}]: {killed} kills, {completed} completed, window {startup:.2f}-{window:.2f}s, notes {notes}")
