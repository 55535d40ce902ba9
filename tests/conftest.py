"""Shared fixtures: an isolated environment, a fresh store, a CLI runner, subprocess helpers.

Every test runs with HOME, XDG_*, REFSTORE_*, AWS_*, GIT_* and friends cleared so a
developer's own configuration cannot leak in (dulwich's habit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from servers import azure_server, fresh_fsspec, gcs_server, http_server, s3_server  # noqa: F401  (fixtures)

import refstore
from refstore.cli import cli

REPO_ROOT = Path(__file__).resolve().parent.parent
_LEAKY_PREFIXES = ("REFSTORE_", "AWS_", "GIT_", "XDG_", "AZURE_", "GOOGLE_", "GCSFS_", "STORAGE_EMULATOR")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    for key in list(os.environ):
        if key.startswith(_LEAKY_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    # gcsfs reads these once at import; without them every GCS call waits ~60 s on a gRPC probe.
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")
    yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory that is also the cwd."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def store(workdir: Path) -> Iterator[refstore.Store]:
    """A new, empty store in the working directory."""
    with refstore.init(workdir) as opened:
        yield opened


def make_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create files (relative path → content) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
    return root


@pytest.fixture
def data_dir(workdir: Path) -> Path:
    """A small dataset directory ``data/`` in the working directory."""
    return make_tree(workdir / "data", {"a.txt": "alpha\n", "b.txt": "bravo\n", "sub/c.bin": bytes(range(256)) * 4})


class Cli:
    """Runs the CLI in-process with ``CliRunner``; stderr kept apart from stdout."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0, input: str | None = None) -> Result:
        result = self.runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}{result.stderr}"
        return result


@pytest.fixture
def run_cli() -> Cli:
    return Cli()


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running ``python -m refstore`` in a child process from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_refstore(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``refstore`` CLI in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "refstore", *args],
        cwd=cwd,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"refstore {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc
