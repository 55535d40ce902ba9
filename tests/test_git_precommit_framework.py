"""The repository's .pre-commit-hooks.yaml, run by the real pre-commit framework.

pre-commit clones the hook repository and pip-installs it into a virtualenv.
No network here: the hook repository is a local git repository holding a copy
of this checkout (pyproject, package, hook definition), the virtualenv sees the
system site-packages (click, sqlite-utils, … already installed), and pip runs
with no index and no build isolation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Cli, subprocess_env
from gitfixtures import git, init_repo, make_old_tree

pytest.importorskip("pre_commit")


def hook_repository(path: Path) -> str:
    path.mkdir()
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "README.md"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, path / name)
    shutil.copytree(REPO_ROOT / "refstore", path / "refstore", ignore=shutil.ignore_patterns("__pycache__"))
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-qm", "hook repository", cwd=path)
    return git("rev-parse", "HEAD", cwd=path).stdout.strip()


def pre_commit(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(
        {
            "PRE_COMMIT_HOME": str(root.parent / "pre-commit-cache"),
            "VIRTUALENV_SYSTEM_SITE_PACKAGES": "1",
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling for "do not isolate the build"
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    env.pop("PYTHONPATH")  # the hook must run the refstore pre-commit installed, not this checkout
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_refstore_status_hook_in_the_pre_commit_framework(tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    rev = hook_repository(tmp_path / "hooks")
    root = init_repo(tmp_path / "repo")
    (root / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {tmp_path / 'hooks'}\n  rev: {rev}\n  hooks: [{{id: refstore-status}}]\n"
    )
    monkeypatch.chdir(root)
    run_cli("init")
    make_old_tree(root / "data", {"a.txt": "alpha\n"})
    run_cli("track", "data", "--name", "mnist")
    git("add", "-A", cwd=root)
    passed = pre_commit(root, "run", "--all-files")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "refstore status (tracked data matches refstore.lock)" in passed.stdout and "Passed" in passed.stdout
    (root / "data" / "a.txt").write_text("unrecorded\n")
    failed = pre_commit(root, "run", "--all-files")
    assert failed.returncode == 1
    assert "Failed" in failed.stdout and "M a.txt" in failed.stdout and "refstore track data/" in failed.stdout
