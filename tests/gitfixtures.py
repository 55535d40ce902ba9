"""Helpers for tests that drive the real ``git`` binary in temporary repositories."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import make_tree, subprocess_env


def git(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run real git with the test environment (hooks get PYTHONPATH for this checkout)."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, input=input, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "advice.detachedHead", "false", cwd=path)
    (path / "main.py").write_text("print('code')\n")
    return path


def make_old_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Files whose mtime is safely in the past, so the stat cache remembers them (outside the racy window)."""
    make_tree(root, files)
    past = time.time() - 60
    for rel in files:
        os.utime(root / rel, (past, past))
    return root


def age(*paths: Path) -> None:
    past = time.time() - 60
    for path in paths:
        os.utime(path, (past, past))
