"""The issue-2 tour through the CLI, in process."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli


def test_tour(run_cli: Cli, workdir: Path, data_dir: Path) -> None:
    run_cli("init")
    out = run_cli("put", "data", "--name", "mnist", "--type", "dataset", "--alias", "raw", "--metadata", '{"source": "yann"}')
    assert out.stdout.startswith("mnist:v0 (digest ")
    assert "3 files" in out.stdout
    again = run_cli("put", "data", "--name", "mnist", "--type", "dataset")
    assert again.stdout.strip() == "mnist:v0 unchanged (no new version)"
    (data_dir / "a.txt").write_text("alpha changed\n")
    assert run_cli("put", "data", "--name", "mnist").stdout.startswith("mnist:v1 ")
    log = json.loads(run_cli("log", "mnist", "--json").stdout)
    assert [v["version"] for v in log] == ["v1", "v0"]
    assert log[0]["aliases"] == ["latest"] and log[1]["aliases"] == ["raw"]
    assert log[1]["metadata"] == {"source": "yann"}
    diff = json.loads(run_cli("diff", "mnist:v0", "mnist:v1", "--json").stdout)
    assert [(d["status"], d["path"]) for d in diff] == [("modified", "a.txt")]
    run_cli("get", "mnist:v0", "-o", str(workdir / "m0"))
    assert (workdir / "m0" / "a.txt").read_text() == "alpha\n"
    assert (workdir / "m0" / "sub" / "c.bin").read_bytes() == bytes(range(256)) * 4
    run_cli("alias", "set", "mnist:v1", "best")
    assert json.loads(run_cli("show", "mnist:best", "--json").stdout)["version"] == "v1"
    run_cli("alias", "rm", "mnist", "best")
    run_cli("show", "mnist:best", expect=5)
    listing = json.loads(run_cli("ls", "--json").stdout)
    assert listing[0]["name"] == "mnist" and listing[0]["versions"] == 2 and listing[0]["latest"] == "v1"
    assert json.loads(run_cli("verify", "--json").stdout)["problems"] == []
    assert json.loads(run_cli("gc", "--dry-run", "--json").stdout)["objects"] == []
