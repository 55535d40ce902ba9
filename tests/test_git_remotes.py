"""The hooks with remotes: pre-push sends the pinned versions, a fresh clone's checkout pulls them.

Remotes are a separate feature; these tests run when this refstore has them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_refstore
from gitfixtures import git, init_repo, make_old_tree

import refstore

if not hasattr(refstore.Store, "push"):
    pytest.skip("this refstore has no remotes", allow_module_level=True)


def test_pre_push_sends_pins_and_a_fresh_clone_checks_them_out(tmp_path: Path) -> None:
    remote = tmp_path / "store-remote"
    a = init_repo(tmp_path / "a")
    make_old_tree(a / "data", {"a.txt": "alpha\n", "b.txt": "bravo\n"})
    for args in (["init"], ["remote", "add", "origin", str(remote)], ["hooks", "install"], ["track", "data", "--name", "mnist"]):
        run_refstore(*args, cwd=a)
    git("add", "-A", cwd=a)
    git("commit", "-qm", "v0", cwd=a)
    (a / "data" / "a.txt").write_text("changed\n")
    run_refstore("track", "data", cwd=a)
    git("commit", "-qam", "v1", cwd=a)
    git("init", "-q", "--bare", "-b", "main", str(tmp_path / "code.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "code.git"), cwd=a)
    pushed = git("push", "-q", "origin", "main", cwd=a)
    assert "refstore: pushed 2 pinned version(s) to origin" in pushed.stderr  # v0 and v1: both pushed commits

    git("clone", "-q", str(tmp_path / "code.git"), str(tmp_path / "b"), cwd=tmp_path)
    b = tmp_path / "b"
    for args in (["init"], ["remote", "add", "origin", str(remote)], ["hooks", "install"]):
        run_refstore(*args, cwd=b)
    assert "unknown" in run_refstore("status", cwd=b).stdout
    run_refstore("checkout", cwd=b)
    assert (b / "data" / "a.txt").read_text() == "changed\n"
    moved = git("checkout", "-q", "HEAD~1", cwd=b)
    assert "refstore: data/ -> default/mnist:v0" in moved.stderr
    assert (b / "data" / "a.txt").read_text() == "alpha\n"


def test_post_checkout_with_an_unreachable_remote_only_warns(tmp_path: Path) -> None:
    a = init_repo(tmp_path / "a")
    make_old_tree(a / "data", {"a.txt": "alpha\n"})
    run_refstore("init", cwd=a)
    run_refstore("track", "data", "--name", "mnist", cwd=a)
    git("add", "-A", cwd=a)
    git("commit", "-qm", "v0", cwd=a)
    git("clone", "-q", str(a), str(tmp_path / "b"), cwd=tmp_path)
    b = tmp_path / "b"
    run_refstore("init", cwd=b)
    run_refstore("remote", "add", "origin", str(tmp_path / "no-such-remote"), cwd=b)
    run_refstore("hooks", "install", cwd=b)
    moved = git("checkout", "-q", "-b", "x", "HEAD", cwd=b)  # same lock: nothing to do
    assert moved.returncode == 0
    git("checkout", "-q", "--orphan", "empty", cwd=b)
    git("rm", "-rfq", "--cached", ".", cwd=b)
    git("commit", "-qm", "empty", "--allow-empty", "--no-verify", cwd=b)
    back = git("checkout", "-q", "-f", "main", cwd=b)
    assert back.returncode == 0
    assert "refstore: warning: data/ not updated" in back.stderr
    assert "the checkout of your code succeeded" in back.stderr
