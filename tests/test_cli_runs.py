"""Runs from the command line: runs, run show/start/use/finish, put --run-job-type/--input/--run, export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import Cli, make_tree, run_refstore

import refstore


def _runs(run_cli: Cli, *args: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(run_cli("runs", "--json", *args).stdout)
    return result


def test_shell_pipeline_records_lineage(workdir: Path, data_dir: Path) -> None:
    """What a Makefile does: start a run with an input, put its output into it, finish it with a summary."""
    run_refstore("init", cwd=workdir)
    run_refstore("put", "data", "--name", "mnist", cwd=workdir)
    run_id = run_refstore(
        "run", "start", "--job-type", "train", "--name", "cnn", "--config", '{"lr": 0.01}', "--input", "mnist:v0", cwd=workdir
    ).stdout.strip()
    model = make_tree(workdir / "model", {"w.bin": "weights"})
    out = run_refstore("put", str(model), "--name", "cnn", "--type", "model", "--run", run_id, "--json", cwd=workdir)
    assert json.loads(out.stdout)["run_id"] == run_id
    running = json.loads(run_refstore("run", "show", run_id, "--json", cwd=workdir).stdout)
    assert running["status"] == "running" and running["inputs"] == ["default/mnist:v0"]
    run_refstore("run", "finish", run_id, "--summary", '{"acc": 0.97}', cwd=workdir)
    shown = json.loads(run_refstore("run", "show", run_id, "--json", cwd=workdir).stdout)
    assert shown["status"] == "finished" and shown["summary"] == {"acc": 0.97}
    assert shown["outputs"] == ["default/cnn:v0"] and shown["config"] == {"lr": 0.01}
    up = json.loads(run_refstore("lineage", "cnn:v0", "--upstream", "--json", cwd=workdir).stdout)
    assert {n["label"] for n in up["nodes"]} == {"cnn:v0", "train cnn", "mnist:v0"}


def test_put_with_run_job_type_and_inputs(run_cli: Cli, workdir: Path, data_dir: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "raw")
    make_tree(workdir / "clean", {"x.txt": "x"})
    out = json.loads(run_cli("put", "clean", "--name", "clean", "--run-job-type", "prep", "--input", "raw:v0", "--json").stdout)
    runs = _runs(run_cli)
    assert len(runs) == 1 and runs[0]["job_type"] == "prep" and runs[0]["status"] == "finished"
    assert out["run_id"] == runs[0]["id"]
    shown = json.loads(run_cli("run", "show", str(runs[0]["id"]), "--json").stdout)
    assert shown["inputs"] == ["default/raw:v0"] and shown["outputs"] == ["default/clean:v0"]
    text = run_cli("run", "show", str(runs[0]["id"])).stdout
    assert "inputs: default/raw:v0" in text and "status finished" in text


def test_put_with_bad_input_changes_nothing(run_cli: Cli, workdir: Path, data_dir: Path) -> None:
    run_cli("init")
    bad = run_cli("put", "data", "--name", "raw", "--run-job-type", "prep", "--input", "missing:v0", expect=5)
    assert bad.stderr.startswith("refstore: error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert _runs(run_cli) == []
    assert json.loads(run_cli("ls", "--json").stdout) == []
    run_cli("run", "start", "--input", "missing:v0", expect=5)
    run_cli("run", "start", "--config", "[1]", expect=2)
    assert _runs(run_cli) == []


def test_runs_listing_filter_order_csv(run_cli: Cli, workdir: Path) -> None:
    run_cli("init")
    with refstore.open() as store:
        for i, lr in enumerate([0.1, 0.01, 0.001]):
            with store.run(job_type="train", name=f"r{i}", config={"lr": lr}) as run:
                run.summary["acc"] = 0.8 + i / 10
    assert [r["name"] for r in _runs(run_cli)] == ["r2", "r1", "r0"]
    flt = '{"$or": [{"config.lr": 0.01}, {"summary.acc": {"$gt": 0.95}}]}'
    assert [r["name"] for r in _runs(run_cli, "--filter", flt, "--order", "+summary.acc")] == ["r1", "r2"]
    assert [r["name"] for r in _runs(run_cli, "--order", "name", "--limit", "1", "--offset", "1")] == ["r1"]
    rows = list(csv.DictReader(io.StringIO(run_cli("runs", "--csv", "--order", "name").stdout)))
    assert [r["config.lr"] for r in rows] == ["0.1", "0.01", "0.001"]
    plain = run_cli("runs").stdout.splitlines()
    assert len(plain) == 3 and plain[0].split("\t")[1:3] == ["finished", "train"]
    run_cli("export", "runs", "--csv", "out.csv", "--filter", '{"name": "r0"}')
    (exported,) = csv.DictReader((workdir / "out.csv").read_text().splitlines())
    assert exported["summary.acc"] == "0.8"


def test_runs_bad_input_is_one_line_and_exit_2(run_cli: Cli, workdir: Path) -> None:
    run_cli("init")
    for args in (
        ["runs", "--filter", "{not json"],
        ["runs", "--filter", '{"$bogus": 1}'],
        ["runs", "--filter", "[1]"],
        ["runs", "--order", "nosuch"],
        ["runs", "--json", "--csv"],
        ["run", "finish", "abcd", "--summary", "3"],
    ):
        result = run_cli(*args, expect=2)
        assert result.stdout == "" and result.stderr.startswith("refstore: error: ")
        assert len(result.stderr.strip().splitlines()) == 1
    run_cli("run", "show", "0123456789abcdef", expect=5)
    assert not (workdir / "out.csv").exists()
    run_cli("export", "runs", "--csv", "out.csv", "--filter", "{bad", expect=2)
    assert not (workdir / "out.csv").exists()


def test_run_use_and_failed_finish(run_cli: Cli, workdir: Path, data_dir: Path) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "raw")
    run_id = run_cli("run", "start", "-j", "eval", "--tag", "nightly").stdout.strip()
    assert run_cli("run", "use", run_id, "raw:latest").stdout.strip() == f"{run_id} uses default/raw:v0"
    assert run_cli("run", "finish", run_id, "--status", "failed").stdout.strip() == f"{run_id} failed"
    (shown,) = _runs(run_cli, "--filter", '{"tags": "nightly", "status": "failed"}')
    assert shown["id"] == run_id
