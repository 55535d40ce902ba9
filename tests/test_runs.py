"""Runs through the Python API: lifecycle, summary, history, git state, inputs and outputs."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import make_tree, subprocess_env

import refstore
from refstore.errors import NotFoundError, UsageError


def _artifact(workdir: Path, name: str, content: str, type: str = "dataset") -> refstore.Artifact:
    art = refstore.Artifact(name, type=type)
    with art.new_file("data.txt") as handle:
        handle.write(content)
    return art


def test_run_lifecycle_summary_history_and_edges(store: refstore.Store, workdir: Path) -> None:
    data = store.log_artifact(_artifact(workdir, "mnist", "digits"))
    with store.run(job_type="train", name="cnn-3", config={"lr": 0.01, "opt": {"name": "adam"}}, tags=["baseline"]) as run:
        assert run.status == "running"
        assert store.get_run(run.id).status == "running"
        used = run.use_artifact("mnist:latest")
        assert used.qualified_name == data.qualified_name
        run.summary["acc"] = 0.97
        assert run.log({"loss": 0.5}) == 0
        assert run.log({"loss": 0.3, "note": "text only in summary"}) == 1
        run.log({"loss": 0.1}, step=10)
        model = run.log_artifact(_artifact(workdir, "cnn", "weights", type="model"), aliases=["best"])
    again = store.get_run(run.id)
    assert again.status == "finished" and again.record.finished_at is not None
    assert again.config == {"lr": 0.01, "opt": {"name": "adam"}}
    assert dict(again.summary) == {"acc": 0.97, "loss": 0.1, "note": "text only in summary"}
    assert [(h["step"], h["value"]) for h in again.history()] == [(0, 0.5), (1, 0.3), (10, 0.1)]
    assert again.tags == ["baseline"]
    assert [v.qualified_name for v in again.used()] == ["default/mnist:v0"]
    assert [v.qualified_name for v in again.logged()] == ["default/cnn:v0"]
    assert model.record.run_id == run.id and "best" in model.aliases
    del again.summary["note"]
    assert "note" not in store.get_run(run.id).summary


def test_failed_block_marks_failed_and_reraises(store: refstore.Store) -> None:
    with pytest.raises(ZeroDivisionError), store.run(job_type="train") as run:
        1 / 0  # noqa: B018
    assert store.get_run(run.id).status == "failed"


def test_crashed_process_leaves_run_running(store: refstore.Store, workdir: Path) -> None:
    script = textwrap.dedent(
        """
        import os, refstore
        store = refstore.open()
        with store.run(job_type="train", name="doomed") as run:
            print(run.id, flush=True)
            os._exit(9)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, env=subprocess_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 9
    crashed = store.get_run(proc.stdout.strip())
    assert crashed.status == "running" and crashed.record.finished_at is None
    assert crashed.record.pid is not None and crashed.record.command is not None


def test_git_commit_dirty_flag_and_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_dir = make_tree(tmp_path / "code", {"train.py": "print('hi')\n"})
    monkeypatch.chdir(repo_dir)
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *args], cwd=repo_dir, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, check=True, capture_output=True, text=True).stdout.strip()
    with refstore.init(repo_dir) as store:  # .refstore ignores itself, so it does not make the tree dirty
        with store.run(job_type="train", command="python train.py --lr 0.1") as clean:
            pass
        (repo_dir / "train.py").write_text("print('changed')\n")
        with store.run(job_type="train") as dirty:
            pass
        assert clean.record.git_commit == head and clean.record.git_dirty is False
        assert clean.record.command == "python train.py --lr 0.1"
        assert dirty.record.git_commit == head and dirty.record.git_dirty is True
        assert dirty.record.command  # sys.argv of this process


def test_no_git_repository_means_no_commit(store: refstore.Store) -> None:
    with store.run(job_type="x") as run:
        pass
    assert run.record.git_commit is None and run.record.git_dirty is None


def test_using_own_output_adds_no_cycle(store: refstore.Store, workdir: Path) -> None:
    with store.run(job_type="make") as run:
        made = run.log_artifact(_artifact(workdir, "thing", "1"))
        run.use_artifact(made)
    assert run.used() == []
    assert store.lineage("thing:v0", "upstream").edges[0].kind == "logs"


def test_bad_run_input_is_rejected(store: refstore.Store, workdir: Path) -> None:
    with pytest.raises(UsageError):
        store.run(job_type="bad name!")
    with pytest.raises(UsageError):
        store.run(config={"x": object()})
    with pytest.raises(UsageError):
        store.run(tags="not-a-list")
    assert store.runs() == []
    with store.run(job_type="train") as run:
        with pytest.raises(NotFoundError):
            run.use_artifact("nothing:v0")
        with pytest.raises(UsageError):
            run.log({"loss": 1}, step=-1)
    with pytest.raises(NotFoundError):
        store.get_run("ffffffffffff")


def test_run_id_prefix_and_runs_listing(store: refstore.Store) -> None:
    with store.run(job_type="a", name="first") as first:
        pass
    with store.run(job_type="b", name="second"):
        pass
    assert store.get_run(first.id[:8]).id == first.id
    assert [r.name for r in store.runs()] == ["second", "first"]
    assert [r.name for r in store.runs(order="+created_at")] == ["first", "second"]
    assert [r.name for r in store.runs(order="created_at", limit=1, offset=1)] == ["second"]


def test_export_runs_csv_flattens_config_and_summary(store: refstore.Store, workdir: Path) -> None:
    with store.run(job_type="train", name="r1", config={"lr": 0.1, "net": {"depth": 3}}, tags=["a", "b"]) as run:
        run.summary["acc"] = 0.5
    with store.run(job_type="eval", name="r2", config={"lr": 0.2}):
        pass
    count = store.export_runs_csv(workdir / "runs.csv")
    assert count == 2
    rows = list(csv.DictReader(io.StringIO((workdir / "runs.csv").read_text())))
    assert [r["name"] for r in rows] == ["r1", "r2"]
    assert rows[0]["config.net.depth"] == "3" and rows[0]["summary.acc"] == "0.5" and rows[0]["tags"] == "a;b"
    assert rows[1]["summary.acc"] == "" and rows[1]["config.lr"] == "0.2"


def test_runs_dataframe(store: refstore.Store) -> None:
    pandas = pytest.importorskip("pandas")
    with store.run(job_type="train", config={"lr": 0.1}) as run:
        run.summary["acc"] = 0.9
    frame = store.runs_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert frame.loc[0, "config.lr"] == 0.1 and frame.loc[0, "summary.acc"] == 0.9


def test_runs_dataframe_without_pandas_is_a_clear_error(store: refstore.Store) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="pip install pandas"):
            store.runs_dataframe()
    else:
        pytest.skip("pandas is installed")


def test_deleting_a_used_version_removes_its_input_edge(store: refstore.Store, workdir: Path) -> None:
    store.log_artifact(_artifact(workdir, "mnist", "a"))
    store.log_artifact(_artifact(workdir, "mnist", "b"))
    with store.run(job_type="train") as run:
        run.use_artifact("mnist:v0")
        run.use_artifact("mnist:v1")
    store.delete("mnist:v0")
    assert [v.version for v in store.get_run(run.id).used()] == ["v1"]


def test_numpy_values_are_stored_as_plain_numbers(store: refstore.Store) -> None:
    numpy = pytest.importorskip("numpy")
    with store.run(job_type="train", config={"shape": numpy.array([2, 3])}) as run:
        run.log({"loss": numpy.float32(0.5), "epoch": numpy.int64(3)})
        run.summary["best"] = numpy.float64("nan")
    again = store.get_run(run.id)
    assert again.config == {"shape": [2, 3]}
    assert dict(again.summary) == {"loss": 0.5, "epoch": 3, "best": "NaN"}
    assert sorted((h["key"], h["value"]) for h in again.history()) == [("epoch", 3.0), ("loss", 0.5)]
