"""Shared machinery of the reliability suite: processes, store snapshots, byte flips, secrets.

Tests in this directory import it as ``faultkit`` (pytest puts this directory on
``sys.path`` because it has no ``__init__.py``). The operations that the fault
tests run are listed in :data:`OPERATIONS`-style registries in the test modules,
so a new operation (``push``, ``pull``, a reference download) plugs in by adding
one entry; see docs/reliability.md, "Extending the suite".
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import subprocess_env

from refstore.cli.main import COMMANDS

STORE = ".refstore"


def has_command(name: str) -> bool:
    """True once a top-level CLI command exists (remotes, references… land later)."""
    return name in COMMANDS


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real CLI in a child process (stdout/stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "refstore", *args],
        cwd=cwd,
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def snapshot(store_dir: Path) -> dict[str, Any]:
    """What users rely on, read with plain sqlite3: every version and alias, by name."""
    db = sqlite3.connect(f"file:{store_dir / 'refstore.db'}?mode=ro", uri=True)
    try:
        versions = {
            f"{p}/{n}:v{num}": (digest, size, count, meta)
            for p, n, num, digest, size, count, meta in db.execute(
                "SELECT a.project, a.name, v.number, v.digest, v.size, v.file_count, v.metadata"
                " FROM versions v JOIN artifacts a ON a.id = v.artifact_id"
            )
        }
        aliases = {
            f"{p}/{n}:{alias}": num
            for p, n, alias, num in db.execute(
                "SELECT a.project, a.name, al.alias, v.number FROM aliases al"
                " JOIN artifacts a ON a.id = al.artifact_id JOIN versions v ON v.id = al.version_id"
            )
        }
    finally:
        db.close()
    return {"versions": versions, "aliases": aliases}


def verify_in_process(work: Path) -> list[str]:
    """Problems ``refstore verify`` would report (same code, no process start-up)."""
    import refstore

    with refstore.open(work) as store:
        return store.verify().problems


def flip_byte(path: Path, position: int, mask: int = 0xFF) -> bytes:
    """XOR one byte of a (possibly read-only) file; return the original content."""
    os.chmod(path, 0o644)
    data = path.read_bytes()
    changed = bytearray(data)
    changed[position] ^= mask
    path.write_bytes(bytes(changed))
    return data


def restore(path: Path, data: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def store_files(store_dir: Path) -> Iterator[Path]:
    """Every file the store has written: database, WAL, shm, objects, tmp, lock, backups."""
    for path in sorted(store_dir.rglob("*")):
        if path.is_file():
            yield path


def find_secret(paths: list[Path], texts: list[str], secret: str) -> list[str]:
    """Where ``secret`` occurs (UTF-8, UTF-16 and as-is in text): file names and text labels."""
    needles = [secret.encode(), secret.encode("utf-16-le")]
    hits = [str(p) for p in paths if any(n in p.read_bytes() for n in needles)]
    hits += [f"text #{i}" for i, text in enumerate(texts) if secret in text]
    return hits


def assert_clean_failure(proc: subprocess.CompletedProcess[str], codes: set[int]) -> str:
    """A failed command: a documented code, no traceback, one 'refstore: error:' line. Returns that line."""
    assert proc.returncode in codes, f"exit {proc.returncode}: {proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("refstore: error:", "Error:"))]
    assert len(errors) == 1, proc.stderr
    return errors[0]
