"""The git commit and dirty flag of the code a run executes, when it lives in a git repository."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)
_TIMEOUT = 10


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty: bool


def _git(cwd: str, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git %s failed: %s", " ".join(args), exc)
        return None
    return proc.stdout if proc.returncode == 0 else None


def describe(cwd: str) -> GitState | None:
    """HEAD's commit and whether tracked or untracked files differ from it; None outside git (or without git)."""
    if shutil.which("git") is None:
        return None
    head = _git(cwd, "rev-parse", "--verify", "HEAD")
    if head is None:
        return None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=normal")
    return GitState(head.strip(), bool(status and status.strip()))
