"""Asking the real ``git`` binary about the repository we run in.

refstore never parses git's object database; it asks ``git rev-parse`` and
friends, so worktrees, ``core.hooksPath``, ``GIT_DIR`` and submodules behave
exactly as git itself sees them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from refstore.errors import UsageError

NULL_SHA = "0" * 40


def git_available() -> bool:
    return shutil.which("git") is not None


def run_git(args: list[str], cwd: Path, *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``cwd``; raise :class:`UsageError` with git's own message when ``check`` and it fails."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input, check=False)
    except FileNotFoundError as exc:
        raise UsageError("git is not installed or not on PATH; install git to use refstore's git integration") from exc
    if check and proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise UsageError(f"git {' '.join(args)} failed: {message}")
    return proc


def worktree_root(cwd: Path) -> Path | None:
    """The top of the git working tree containing ``cwd`` (a linked worktree's own top), or None outside git."""
    if not git_available():
        return None
    proc = run_git(["rev-parse", "--show-toplevel"], cwd, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip())


def git_path(root: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME``: honours worktrees and ``core.hooksPath``."""
    out = run_git(["rev-parse", "--git-path", name], root).stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else root / path


def show_file(root: Path, revision: str, path: str) -> str | None:
    """The text of ``path`` at ``revision`` (``:path`` for the index), or None when it is absent there."""
    if revision == NULL_SHA:
        return None
    proc = run_git(["show", f"{revision}:{path}"], root, check=False)
    return proc.stdout if proc.returncode == 0 else None


def revisions_touching(root: Path, revision_args: list[str], path: str) -> list[str]:
    """Commits in ``git rev-list REVISION_ARGS -- PATH``, newest first."""
    proc = run_git(["rev-list", *revision_args, "--", path], root, check=False)
    return proc.stdout.split() if proc.returncode == 0 else []


def ls_files(root: Path, path: str) -> list[str]:
    """Files git tracks under ``path`` (to warn when data is committed to git as well)."""
    proc = run_git(["ls-files", "-z", "--", path], root, check=False)
    return [name for name in proc.stdout.split("\0") if name] if proc.returncode == 0 else []
