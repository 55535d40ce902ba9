"""Collision by declaration: an object file named digest X whose bytes are not X's.

That is what someone who can write to a shared remote (or the cache) would plant. With
xxh3-128 a real collision is cheap for an attacker, so stores that pull from untrusted
remotes use sha256 (``refstore init --algorithm sha256``); in both, refstore re-hashes on
every read, so planted bytes are caught by verify, on read, and at checkout in every
link mode, and never reach the user's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore
from faultkit import assert_clean_failure

import refstore
from refstore.core import hashing
from refstore.errors import IntegrityError

GENUINE = b"the genuine model weights\n"
PLANTED = b"the evil model weights!!\n\n"


@pytest.fixture(params=["xxh3-128", "sha256"])
def planted(request: pytest.FixtureRequest, workdir: Path) -> tuple[refstore.Store, str]:
    """A store whose object for GENUINE holds PLANTED bytes instead (same length, same name)."""
    algorithm = request.param
    make_tree(workdir / "data", {"weights.bin": GENUINE, "other.txt": "fine\n"})
    store = refstore.init(workdir, algorithm=algorithm)
    art = refstore.Artifact("model", type="model")
    art.add_dir(workdir / "data")
    store.log_artifact(art)
    digest = hashing.hash_bytes(GENUINE, algorithm)
    assert len(digest) == {"xxh3-128": 32, "sha256": 64}[algorithm]
    path = store.repo.cache.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(PLANTED)
    os.chmod(path, 0o444)
    return store, digest


def test_verify_names_the_planted_object(planted: tuple[refstore.Store, str]) -> None:
    store, digest = planted
    problems = store.verify().problems
    assert problems == [
        f"object {digest}: corrupt (hashes to {hashing.hash_bytes(PLANTED, store.repo.algorithm)}); "
        "run 'refstore verify --repair' or re-add the file"
    ]


@pytest.mark.parametrize("link", ["copy", "auto", "hardlink", "symlink"])
def test_checkout_refuses_planted_bytes(planted: tuple[refstore.Store, str], tmp_path: Path, link: str) -> None:
    store, digest = planted
    with pytest.raises(IntegrityError, match=digest):
        store.artifact("model").download(tmp_path / "out", link=link)
    weights = tmp_path / "out" / "weights.bin"
    assert not weights.exists() or weights.read_bytes() != PLANTED
    assert not store.repo.cache.has(digest), "the planted object must be removed, not trusted again"


def test_cli_reports_planted_bytes_with_exit_6(planted: tuple[refstore.Store, str], workdir: Path) -> None:
    store, digest = planted
    store.close()
    line = assert_clean_failure(run_refstore("verify", cwd=workdir, check=False), {6})
    assert "problem" in line
    proc = run_refstore("get", "model", "-o", "out", cwd=workdir, check=False)
    line = assert_clean_failure(proc, {6})
    assert digest in line
    assert not (workdir / "out" / "weights.bin").exists()


def test_reput_after_planting_heals_once_the_object_is_quarantined(planted: tuple[refstore.Store, str], workdir: Path) -> None:
    """put trusts an object already present under its name (no re-hash); a failed read removes it, a re-put heals."""
    store, digest = planted
    with pytest.raises(IntegrityError):
        store.artifact("model").download(workdir / "out")
    art = refstore.Artifact("model", type="model")
    art.add_dir(workdir / "data")
    store.log_artifact(art)
    assert store.repo.cache.check(digest)
    store.artifact("model").download(workdir / "out2")
    assert (workdir / "out2" / "weights.bin").read_bytes() == GENUINE
