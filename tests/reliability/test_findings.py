"""Findings of the first reliability pass, each fixed: stray checkout temp files, NaN in JSON, case-only names.

- A killed ``get`` leaves ``.NAME.<16 hex>.tmp`` files beside its targets; the next ``get``
  into the same directory removes the ones of the files it writes (and nothing else).
- ``NaN``/``Infinity`` are not JSON; Python's parser accepts them, which made ``--json``
  output unreadable for strict readers. They are refused on input with one line.
- Project, artifact and alias names that differ only in case from an existing one are
  refused (names are ASCII, so Unicode normalisation cannot collide them).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore
from faultkit import assert_clean_failure, snapshot, spawn

import refstore
from refstore.core.objects import TEMP_BESIDE, named_temp_beside
from refstore.errors import UsageError

HEX16 = "0123456789abcdef"


# -- (a) stray temp files of a killed get ---------------------------------------------------------
def test_named_temp_matches_its_pattern(tmp_path: Path) -> None:
    temp = named_temp_beside(tmp_path / "a.b.txt")
    match = TEMP_BESIDE.fullmatch(temp.name)
    assert match is not None and match.group(1) == "a.b.txt"
    assert TEMP_BESIDE.fullmatch(".a.txt.tmp") is None and TEMP_BESIDE.fullmatch(f".a.txt.{HEX16}.tmp.bak") is None


def test_get_removes_its_own_stale_temp_files(workdir: Path, tmp_path: Path) -> None:
    make_tree(workdir / "data", {"a.txt": "alpha\n", "sub/b.txt": "bravo\n"})
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "ds", cwd=workdir)
    out = tmp_path / "out"
    # what a killed get leaves (stray temps of its own files), plus look-alikes that are the user's
    stale = [f".a.txt.{HEX16}.tmp", f"sub/.b.txt.{HEX16[::-1]}.tmp"]
    users = [".a.txt.tmp", f".other.txt.{HEX16}.tmp", f".a.txt.{HEX16}.tmp.bak", f".a.txt.{HEX16[:15]}.tmp", "notes.txt"]
    make_tree(out, dict.fromkeys(stale + users, "junk"))
    run_refstore("get", "ds", "-o", str(out), cwd=workdir)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == sorted(["a.txt", "sub/b.txt", *users])


def test_get_after_a_real_kill_leaves_no_temp_files(workdir: Path, tmp_path: Path) -> None:
    """SIGKILL a checkout of 800 files part-way (up to 10 tries to land one), then get again: no strays."""
    make_tree(workdir / "data", {f"d{i % 8}/f{i}.txt": f"file {i}\n" * 50 for i in range(800)})
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "ds", cwd=workdir)
    out = tmp_path / "out"
    strays = 0
    for attempt in range(10):
        proc = spawn("get", "ds", "-o", str(out), cwd=workdir)
        delay = 0.2 + 0.05 * attempt
        time.sleep(delay)  # where the kill lands; nothing is asserted about timing
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        strays = sum(1 for p in out.rglob("*") if TEMP_BESIDE.fullmatch(p.name)) if out.exists() else 0
        if strays:
            break
    print(f"stray temp files after the kill: {strays}")
    run_refstore("get", "ds", "-o", str(out), cwd=workdir)
    assert not [p for p in out.rglob("*") if TEMP_BESIDE.fullmatch(p.name)]
    assert "matches" in run_refstore("verify", "ds", "--dir", str(out), cwd=workdir).stdout


# -- (b) NaN / Infinity ---------------------------------------------------------------------------
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_metadata_config_and_summary_is_refused(workdir: Path, constant: str) -> None:
    make_tree(workdir / "data", {"a.txt": "alpha\n"})
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "ds", cwd=workdir)
    before = snapshot(workdir / ".refstore")
    text = f'{{"loss": {constant}}}'
    line = assert_clean_failure(run_refstore("put", "data", "--name", "ds2", "--metadata", text, cwd=workdir, check=False), {2})
    assert f"holds {constant}, which is not JSON" in line
    assert snapshot(workdir / ".refstore") == before
    proc = run_refstore("run", "start", "--config", text, cwd=workdir, check=False)
    assert f"--config holds {constant}, which is not JSON" in assert_clean_failure(proc, {2})
    run_id = run_refstore("run", "start", cwd=workdir).stdout.strip().split()[-1]
    proc = run_refstore("run", "finish", run_id, "--summary", text, cwd=workdir, check=False)
    assert f"--summary holds {constant}, which is not JSON" in assert_clean_failure(proc, {2})
    assert json.loads(run_refstore("run", "show", run_id, "--json", cwd=workdir).stdout)["summary"] == {}
    # whatever was stored, --json output is strict JSON
    json.loads(run_refstore("log", "ds", "--json", cwd=workdir).stdout, parse_constant=pytest.fail)


def test_nan_in_api_metadata_is_refused(store: refstore.Store, tmp_path: Path) -> None:
    make_tree(tmp_path / "d", {"a.txt": "x"})
    with pytest.raises(UsageError, match="NaN or infinite number"):
        refstore.Artifact("ds", metadata={"loss": float("nan")})
    art = refstore.Artifact("ds", metadata={"loss": 0.5})
    art.add_dir(tmp_path / "d")
    store.log_artifact(art)
    assert store.artifact("ds").metadata == {"loss": 0.5}


# -- (c) case-only name collisions ----------------------------------------------------------------
def test_case_only_differences_are_refused(workdir: Path) -> None:
    make_tree(workdir / "data", {"a.txt": "alpha\n"})
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "mnist", "--alias", "best", cwd=workdir)
    run_refstore("put", "data", "--name", "team/cifar", cwd=workdir)
    before = snapshot(workdir / ".refstore")
    cases = {
        ("put", "data", "--name", "MNIST"): "artifact name 'MNIST' differs only in case from the existing artifact default/mnist",
        ("put", "data", "--name", "Team/other"): "project 'Team' differs only in case from the existing project 'team'",
        ("put", "data", "--name", "mnist", "--alias", "Best"): "alias 'Best' differs only in case from the existing alias 'best'",
        ("alias", "set", "mnist:v0", "BEST"): "alias 'BEST' differs only in case",
    }
    for args, expected in cases.items():
        proc = run_refstore(*args, cwd=workdir, check=False)
        assert expected in assert_clean_failure(proc, {2}), args
        assert snapshot(workdir / ".refstore") == before, args
    run_refstore("put", "data", "--name", "mnist2", cwd=workdir)  # a different name is fine


def test_pull_refuses_a_case_only_twin(tmp_path: Path) -> None:
    """A remote written by another store with 'MNIST' cannot be pulled into a store that has 'mnist'."""
    make_tree(tmp_path / "data", {"a.txt": "alpha\n"})
    with refstore.init(tmp_path / "other") as other:
        art = refstore.Artifact("MNIST")
        art.add_dir(tmp_path / "data")
        other.log_artifact(art)
        other.add_remote("origin", str(tmp_path / "remote"))
        other.push()
    with refstore.init(tmp_path / "mine") as mine:
        art = refstore.Artifact("mnist")
        art.add_dir(tmp_path / "data")
        mine.log_artifact(art)
        mine.add_remote("origin", str(tmp_path / "remote"))
        before = snapshot(mine.path)
        with pytest.raises(UsageError, match="differs only in case"):
            mine.pull()
        assert snapshot(mine.path) == before
