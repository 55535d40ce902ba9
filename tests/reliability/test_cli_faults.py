"""Every CLI command under adverse conditions: wrong arguments, no store, a newer format,
a read-only store, no network. Each gives one clear error line, a documented exit code,
no traceback, and leaves the store as it was.

Commands are discovered from the click group, so commands added later are covered by
the generic cases; :data:`ARGS` gives the plausible arguments a command needs to get as
far as opening the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import make_tree, run_refstore
from faultkit import assert_clean_failure, has_command

from refstore.cli import cli

# Plausible arguments that get each command as far as opening the store.
ARGS: dict[str, list[str]] = {
    "put": ["data", "--name", "mnist"],
    "ls": [],
    "log": ["mnist"],
    "show": ["mnist"],
    "diff": ["mnist:v0", "mnist:v0"],
    "get": ["mnist", "-o", "{tmp}/out"],
    "alias set": ["mnist:v0", "best"],
    "alias rm": ["mnist", "raw"],
    "alias list": ["mnist"],
    "rm": ["mnist:v0", "--delete-aliases"],
    "verify": [],
    "gc": [],
    "track": ["data"],
    "untrack": ["data"],
    "hooks run": ["pre-commit"],
    "export runs": ["--csv", "{tmp}/runs.csv"],
    "import mlflow": ["--tracking-uri", "file://{tmp}/mlruns"],
    "import store": ["{tmp}/other-store"],
    "lineage": ["mnist"],
    "run finish": ["0123456789abcdef"],
    "run show": ["0123456789abcdef"],
    "run use": ["0123456789abcdef", "mnist"],
    "remote add": ["origin", "{tmp}/remote"],
    "remote remove": ["origin"],
}
NO_STORE_NEEDED = {"init", "demo", "lock-merge", "clone"}  # they create what they need, or work on plain files
PASS_THROUGH = {"hooks run"}  # forwards unknown options to the git hook by design
NEVER_BLOCKS = {"hooks run"}  # a git hook warns and exits 0 when there is no store, so git is never blocked
CORE = {"put", "ls", "log", "show", "diff", "get", "alias set", "alias rm", "alias list", "rm", "verify", "gc"}
WRITES = {"put", "alias set", "alias rm", "rm", "gc"}


def leaf_commands() -> list[str]:
    ctx = click.Context(cli)
    names: list[str] = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            names += [f"{name} {sub}" for sub in command.list_commands(ctx)]
        else:
            names.append(name)
    return names


COMMAND_NAMES = leaf_commands()
STORE_COMMANDS = [c for c in COMMAND_NAMES if c.split()[0] not in NO_STORE_NEEDED]


def invoke(args: list[str], cwd: Path) -> Result:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, catch_exceptions=True)
    finally:
        os.chdir(old)


def check_clean(result: Result, codes: set[int]) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    errors = [line for line in result.stderr.splitlines() if line.startswith(("refstore: error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    return errors[0]


def args_for(command: str, tmp: Path) -> list[str]:
    return [*command.split(), *(a.replace("{tmp}", str(tmp)) for a in ARGS.get(command, []))]


@pytest.fixture
def populated(workdir: Path) -> Path:
    make_tree(workdir / "data", {"a.txt": "alpha\n", "sub/b.txt": "bravo\n"})
    assert invoke(["init"], workdir).exit_code == 0
    assert invoke(["put", "data", "--name", "mnist", "--alias", "raw"], workdir).exit_code == 0
    return workdir


def store_state(work: Path) -> dict[str, bytes]:
    """Every byte of the store except the lock file (its content is irrelevant)."""
    store = work / ".refstore"
    conn = sqlite3.connect(f"file:{store / 'refstore.db'}?mode=ro", uri=True)
    try:
        dump = "\n".join(conn.iterdump()).encode()
    finally:
        conn.close()
    files = {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file() and p.suffix != ".db"}
    files.pop("lock", None)
    files.pop("refstore.db-wal", None)
    files.pop("refstore.db-shm", None)
    return {"db": dump, **files}


@pytest.mark.parametrize("command", [c for c in COMMAND_NAMES if c not in PASS_THROUGH])
def test_unknown_option_is_a_usage_error(command: str, populated: Path) -> None:
    before = store_state(populated)
    line = check_clean(invoke([*command.split(), "--no-such-option"], populated), {2})
    assert "no-such-option" in line
    assert store_state(populated) == before


@pytest.mark.parametrize("command", [c for c in COMMAND_NAMES if ARGS.get(c)])
def test_missing_arguments_are_a_usage_error(command: str, populated: Path) -> None:
    before = store_state(populated)
    check_clean(invoke(command.split(), populated), {2})
    assert store_state(populated) == before


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_missing_store_exits_3(command: str, workdir: Path) -> None:
    make_tree(workdir / "data", {"a.txt": "alpha\n"})
    result = invoke(args_for(command, workdir), workdir)
    if command in NEVER_BLOCKS:
        assert result.exit_code == 0 and "refstore init" in result.stderr and "Traceback" not in result.stderr
        return
    line = check_clean(result, {3})
    assert "refstore init" in line
    assert not (workdir / ".refstore").exists()


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_newer_format_exits_4_and_is_not_touched(command: str, populated: Path) -> None:
    db = populated / ".refstore" / "refstore.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db.read_bytes()
    line = check_clean(invoke(args_for(command, populated), populated), {4})
    assert "upgrade refstore" in line
    assert db.read_bytes() == before


@contextlib.contextmanager
def read_only_view(store_root: Path, view: Path) -> Iterator[Path]:
    """``store_root`` seen read-only at ``view``: a read-only bind mount as root, chmod otherwise."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(store_root / ".refstore")], check=True)
        try:
            yield store_root
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(store_root / ".refstore")], check=True)
        return
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(store_root), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without mount rights (a container?): {mounted.stderr.decode().strip()}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_read_only_store_is_one_clear_line(command: str, populated: Path, tmp_path: Path) -> None:
    """Writes fail with one line naming the read-only store; reads work only when SQLite can read
    the WAL database there (its -wal/-shm files exist), else they say the same (documented limit)."""
    before = store_state(populated)
    with read_only_view(populated, tmp_path / "ro") as view:
        args = [*command.split(), *(a.replace("{tmp}", str(tmp_path)) for a in ARGS.get(command, []))]
        result = invoke(args, view)
        if result.exit_code == 0:
            # SQLite can read a WAL database on read-only media when its -wal/-shm files exist
            assert command not in WRITES, f"{command} claimed to succeed on a read-only store"
        else:
            line = check_clean(result, {1, 2, 6} if command in CORE else set(range(1, 10)))
            if command in CORE:  # others (git integration) may refuse earlier for their own reasons
                assert "read-only" in line or "Read-only" in line, line
    assert store_state(populated) == before


@pytest.mark.skipif(not has_command("remote"), reason="remotes (issue 4) are not on this branch yet")
def test_unreachable_remote_push_is_exit_9(populated: Path) -> None:
    """No network: a remote on a closed local port gives one line and exit code 9 (BackendError)."""
    run_refstore("remote", "add", "origin", "http://127.0.0.1:9/store", cwd=populated)
    before = store_state(populated)
    line = assert_clean_failure(run_refstore("push", cwd=populated, check=False, timeout=120), {9})
    assert "127.0.0.1:9" in line
    assert store_state(populated) == before


@pytest.mark.skipif(not has_command("remote"), reason="remotes (issue 4) are not on this branch yet")
def test_unreachable_remote_pull_is_exit_9(populated: Path) -> None:
    run_refstore("remote", "add", "origin", "http://127.0.0.1:9/store", cwd=populated)
    assert_clean_failure(run_refstore("pull", cwd=populated, check=False, timeout=120), {9})


def test_debug_shows_the_traceback(workdir: Path) -> None:
    """The one place a traceback is allowed: --debug."""
    proc = run_refstore("--debug", "ls", cwd=workdir, check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    shutil.rmtree(workdir / "nothing", ignore_errors=True)
