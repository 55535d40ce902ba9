"""Bad input: one clear line on stderr, a documented exit code, and nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import Cli, run_refstore


def state(workdir: Path) -> tuple[object, ...]:
    db = sqlite3.connect(workdir / ".refstore" / "refstore.db")
    try:
        counts = tuple(
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("artifacts", "versions", "aliases", "trees")
        )
    finally:
        db.close()
    objects = sorted(p.name for p in (workdir / ".refstore" / "objects").rglob("*") if p.is_file())
    return (*counts, tuple(objects))


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["show", "nope"], 5, "no artifact default/nope"),
        (["show", "mnist:v7"], 5, "has no version v7"),
        (["show", "mnist:gone"], 5, "has no alias 'gone'"),
        (["show", "bad name"], 2, "invalid artifact name"),
        (["put", "data", "--name", "-bad"], 2, "invalid artifact name"),
        (["put", "data", "--name", "mnist", "--alias", "v2"], 2, "looks like a version number"),
        (["put", "data", "--name", "mnist", "--alias", "latest"], 2, "moves automatically"),
        (["put", "missing-dir", "--name", "mnist"], 2, "no such file"),
        (["put", "empty", "--name", "mnist"], 2, "contains no files"),
        (["put", "data", "--name", "mnist", "--metadata", "{bad"], 2, "metadata is not valid JSON"),
        (["put", "data", "--name", "mnist", "--metadata", "[1]"], 2, "must be a JSON object"),
        (["put", "data", "--name", "mnist", "--metadata", "@nofile.json"], 2, "cannot read metadata file"),
        (["put", "data", "--name", "mnist", "--type", "model"], 2, "has type 'dataset'"),
        (["put", "--name", "mnist"], 2, "nothing to put"),
        (["alias", "set", "mnist:v0", "v1"], 2, "looks like a version number"),
        (["alias", "rm", "mnist", "never"], 5, "has no alias"),
        (["get", "mnist", "--link", "teleport"], 2, "Invalid value"),
        (["diff", "mnist:v0", "mnist:v5"], 5, "no version v5"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    run_cli: Cli, workdir: Path, data_dir: Path, args: list[str], code: int, fragment: str
) -> None:
    (workdir / "empty").mkdir()
    run_cli("init")
    run_cli("put", "data", "--name", "mnist", "--alias", "raw")
    before = state(workdir)
    result = run_cli(*args, expect=code)
    lines = result.stderr.strip().splitlines()
    assert fragment in result.stderr
    if code != 2 or not fragment.startswith("Invalid"):
        assert len(lines) == 1 and lines[0].startswith("refstore: error: ")
    assert result.stdout == ""
    assert state(workdir) == before


def test_no_store(run_cli: Cli, workdir: Path) -> None:
    result = run_cli("ls", expect=3)
    assert (
        result.stderr.strip()
        == f"refstore: error: no refstore store in {workdir} or any parent; run 'refstore init' to create one"
    )


def test_store_found_from_subdirectory_and_with_C_and_env(
    run_cli: Cli, workdir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cli("init")
    run_cli("put", "data", "--name", "mnist")
    monkeypatch.chdir(data_dir / "sub")
    assert "default/mnist" in run_cli("ls").stdout
    monkeypatch.chdir(workdir.parent)
    assert "default/mnist" in run_cli("-C", str(workdir), "ls").stdout
    monkeypatch.setenv("REFSTORE_DIR", str(workdir / ".refstore"))
    assert "default/mnist" in run_cli("ls").stdout
    monkeypatch.setenv("REFSTORE_DIR", str(workdir / "nowhere"))
    assert "REFSTORE_DIR" in run_cli("ls", expect=3).stderr


def test_newer_format_is_refused(run_cli: Cli, workdir: Path) -> None:
    run_cli("init")
    db = sqlite3.connect(workdir / ".refstore" / "refstore.db")
    db.execute("PRAGMA user_version = 999")
    db.close()
    result = run_cli("ls", expect=4)
    assert "format version 999" in result.stderr and "upgrade refstore" in result.stderr


def test_unsafe_names_refused_on_add(workdir: Path) -> None:
    import refstore
    from refstore.errors import UnsafePathError

    art = refstore.Artifact("x")
    with pytest.raises(UnsafePathError), art.new_file("../escape.txt") as handle:
        handle.write("no")
    (workdir / "f.txt").write_text("x")
    with pytest.raises(UnsafePathError):
        art.add_file(workdir / "f.txt", name="/etc/passwd")
    assert not (workdir.parent / "escape.txt").exists()


def test_subprocess_errors_have_no_traceback(workdir: Path) -> None:
    proc = run_refstore("show", "mnist", cwd=workdir, check=False)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = run_refstore("frobnicate", cwd=workdir, check=False)
    assert proc.returncode == 2 and "No such command" in proc.stderr
