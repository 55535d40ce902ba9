"""The installed git hooks and the lock merge driver, driven by the real git binary."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import Cli, run_refstore
from gitfixtures import git, init_repo, make_old_tree

from refstore.services.gitpin import LockFile

SKIP = {"REFSTORE_SKIP_HOOKS": "1"}  # for setup steps whose hooks are not what a test checks


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Cli) -> Path:
    """A git repo with a store, hooks installed, data/ tracked and committed as v0."""
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    make_old_tree(root / "data", {"a.txt": "alpha\n", "b.txt": "bravo\n"})
    run_cli("hooks", "install")
    run_cli("track", "data", "--name", "mnist")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "data v0", cwd=root, env=SKIP)
    return root


def write_hook(root: Path, name: str, body: str) -> Path:
    path = root / ".git" / "hooks" / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_pre_commit_refuses_unrecorded_changes_and_says_what_to_do(repo: Path, run_cli: Cli) -> None:
    (repo / "data" / "a.txt").write_text("edited\n")
    (repo / "data" / "c.txt").write_text("new\n")
    (repo / "main.py").write_text("print('v2')\n")
    refused = git("commit", "-qam", "code v2", cwd=repo, check=False)
    assert refused.returncode == 1
    assert "commit refused: tracked data has changes that refstore.lock does not record" in refused.stderr
    assert "data/ (pinned default/mnist:v0 (" in refused.stderr and "1 modified, 1 added" in refused.stderr
    assert "    M a.txt\n    A c.txt\n" in refused.stderr
    assert "refstore track data/ && git add refstore.lock" in refused.stderr
    assert "git commit --no-verify" in refused.stderr and "REFSTORE_SKIP_HOOKS=1" in refused.stderr
    assert git("log", "--format=%s", cwd=repo).stdout.split("\n")[0] == "data v0"
    # recording the data and staging the lock lets the commit through
    run_cli("track", "data")
    git("add", "main.py", cwd=repo)
    unstaged = git("commit", "-qm", "code v2", cwd=repo, check=False)
    assert unstaged.returncode == 1 and "refstore.lock has changes that are not staged" in unstaged.stderr
    git("add", "refstore.lock", cwd=repo)
    git("commit", "-qam", "code v2 with data v1", cwd=repo)
    assert "v1" in git("show", "HEAD:refstore.lock", cwd=repo).stdout


def test_pre_commit_bypasses(repo: Path) -> None:
    (repo / "data" / "a.txt").write_text("edited\n")
    (repo / "main.py").write_text("print('v2')\n")
    git("commit", "-qam", "skip by env", cwd=repo, env={"REFSTORE_SKIP_HOOKS": "1"})
    (repo / "main.py").write_text("print('v3')\n")
    git("commit", "-qam", "skip by flag", "--no-verify", cwd=repo)
    assert git("log", "--format=%s", "-2", cwd=repo).stdout.split("\n")[:2] == ["skip by flag", "skip by env"]


def test_post_checkout_materialises_the_pinned_version(repo: Path, run_cli: Cli) -> None:
    (repo / "data" / "a.txt").write_text("second\n")
    (repo / "data" / "extra.txt").write_text("extra\n")
    run_cli("track", "data")
    git("commit", "-qam", "data v1", cwd=repo, env=SKIP)
    moved = git("checkout", "-q", "HEAD~1", cwd=repo)
    assert "refstore: data/ -> default/mnist:v0" in moved.stderr
    assert (repo / "data" / "a.txt").read_text() == "alpha\n" and not (repo / "data" / "extra.txt").exists()
    git("checkout", "-q", "main", cwd=repo)
    assert (repo / "data" / "a.txt").read_text() == "second\n" and (repo / "data" / "extra.txt").exists()
    assert json.loads(run_cli("status", "--json").stdout)[0]["state"] == "clean"
    # a branch switch that does not change the pin leaves the data alone and says nothing
    quiet = git("checkout", "-q", "-b", "feature", cwd=repo)
    assert "refstore" not in quiet.stderr


def test_post_checkout_never_fails_the_code_checkout(repo: Path, run_cli: Cli) -> None:
    (repo / "data" / "a.txt").write_text("second\n")
    run_cli("track", "data")
    git("commit", "-qam", "data v1", cwd=repo, env=SKIP)
    (repo / "data" / "a.txt").write_text("unrecorded work\n")  # dirty: must not be overwritten
    moved = git("checkout", "-q", "HEAD~1", cwd=repo)
    assert moved.returncode == 0
    assert "refstore: warning: data/ not updated: data/ has changes no version records (modified a.txt)" in moved.stderr
    assert "the checkout of your code succeeded" in moved.stderr
    assert (repo / "data" / "a.txt").read_text() == "unrecorded work\n"
    assert git("rev-parse", "HEAD", cwd=repo).stdout == git("rev-parse", "main~1", cwd=repo).stdout
    # a pin this store has never seen (made elsewhere, no remote): a warning, and the code is checked out
    git("checkout", "-q", "--force", "main", cwd=repo)
    lock = LockFile(repo)
    [pin] = lock.read()
    lock.write([type(pin)(pin.path, True, pin.artifact, "v7", "e" * 32)])
    git("commit", "-qam", "pin from another machine", "--no-verify", cwd=repo)
    git("checkout", "-q", "main~1", cwd=repo, env=SKIP)
    back = git("checkout", "-q", "main", cwd=repo)
    assert "warning: data/ not updated: data/: pinned default/mnist:v7 (eeeeeeeeeeee) is not in this store" in back.stderr


def test_hooks_chain_to_existing_hooks_and_uninstall_restores_them(
    tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    mine = 'echo mine >> "$(git rev-parse --git-dir)/ran"\n[ -f block ] && exit 3\nexit 0\n'
    write_hook(root, "pre-commit", mine)
    write_hook(root, "pre-push", 'cat > "$(git rev-parse --git-dir)/pushed"\n')
    out = run_cli("hooks", "install").stdout
    assert "pre-commit: chained (your hook now runs first from pre-commit.pre-refstore)" in out
    assert "post-checkout: installed" in out
    assert (root / ".git" / "hooks" / "pre-commit.pre-refstore").read_text().endswith(mine)
    assert "pre-commit: unchanged" in run_cli("hooks", "install").stdout  # idempotent: never chains to itself
    make_old_tree(root / "data", {"a.txt": "a\n"})
    run_cli("track", "data", "--name", "d")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "one", cwd=root)
    assert (root / ".git" / "ran").read_text() == "mine\n"
    (root / "block").write_text("")
    blocked = git("commit", "-qm", "two", "--allow-empty", cwd=root, check=False)
    assert blocked.returncode != 0  # the chained hook's failure still stops the commit
    assert git("log", "--format=%s", cwd=root).stdout.strip() == "one"
    (root / "block").unlink()
    # pre-push: the chained hook still gets git's stdin; no refstore remote, so the push just proceeds
    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=root)
    git("push", "-q", "origin", "main", cwd=root)
    head = git("rev-parse", "HEAD", cwd=root).stdout.strip()
    assert (root / ".git" / "pushed").read_text() == f"refs/heads/main {head} refs/heads/main {'0' * 40}\n"
    out = run_cli("hooks", "uninstall").stdout
    assert "pre-commit: removed (previous hook restored)" in out and "post-checkout: removed" in out
    assert (root / ".git" / "hooks" / "pre-commit").read_text().endswith(mine)
    assert not (root / ".git" / "hooks" / "post-checkout").exists()
    assert git("config", "--get", "merge.refstore.driver", cwd=root, check=False).returncode == 1


def test_install_refuses_when_it_would_overwrite_a_hook(tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    write_hook(root, "pre-commit", "exit 0\n")
    write_hook(root, "pre-commit.pre-refstore", "exit 0\n")
    result = run_cli("hooks", "install", expect=7)
    assert "Merge them by hand" in result.stderr
    assert not (root / ".git" / "hooks" / "post-checkout").exists()


def branch_with(root: Path, run_cli: Cli, branch: str, path: str, content: str) -> None:
    git("checkout", "-q", "-b", branch, "main", cwd=root)
    make_old_tree(root / path, {"f.txt": content})
    run_cli("track", path)
    git("add", "refstore.lock", cwd=root)
    git("commit", "-qm", f"{path} on {branch}", cwd=root, env=SKIP)


@pytest.mark.parametrize("driver", [True, False], ids=["driver", "plain-git-merge"])
def test_branches_pinning_different_paths_merge_cleanly(
    tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch, driver: bool
) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    if driver:
        run_cli("hooks", "install")
    for name in ("a", "b", "c"):
        make_old_tree(root / name, {"f.txt": name})
        run_cli("track", name, "--name", name)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root, env={"REFSTORE_SKIP_HOOKS": "1"})
    branch_with(root, run_cli, "x", "a", "a2")
    git("checkout", "-q", "main", cwd=root)
    branch_with(root, run_cli, "y", "b", "b2")
    merged = git("merge", "-q", "--no-edit", "x", cwd=root, env={"REFSTORE_SKIP_HOOKS": "1"})
    assert merged.returncode == 0
    versions = {p.path: p.version for p in LockFile(root).read()}
    assert versions == {"a": "v1", "b": "v1", "c": "v0"}


def test_a_conflict_on_one_path_is_reported_readably(tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    run_cli("hooks", "install")
    for name in ("a", "b"):
        make_old_tree(root / name, {"f.txt": name})
        run_cli("track", name, "--name", name)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root, env=SKIP)
    branch_with(root, run_cli, "x", "a", "from x")
    git("checkout", "-q", "main", cwd=root)
    branch_with(root, run_cli, "y", "a", "from y!")
    make_old_tree(root / "b", {"f.txt": "b on y"})
    run_cli("track", "b")
    git("commit", "-qam", "b on y", cwd=root, env=SKIP)
    env = {"REFSTORE_SKIP_HOOKS": "1"}
    result = git("merge", "--no-edit", "x", cwd=root, env=env, check=False)
    assert result.returncode == 1
    assert "refstore: refstore.lock: 1 conflicting path(s):" in result.stderr
    assert "a/: ours pins default/a:v2 (" in result.stderr and "theirs pins default/a:v1 (" in result.stderr
    assert "CONFLICT (content): Merge conflict in refstore.lock" in result.stdout
    text = (root / "refstore.lock").read_text()
    assert text.count("<<<<<<< ours") == 1 and "b/\tdefault/b\tv1\t" in text
    failed = run_cli("status", expect=7)
    assert "unresolved merge conflict" in failed.stderr


def test_worktrees_share_the_store_and_get_their_data(
    repo: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (repo / "data" / "a.txt").write_text("on feature\n")
    git("checkout", "-q", "-b", "feature", cwd=repo)
    run_cli("track", "data")
    git("commit", "-qam", "data v1 on feature", cwd=repo, env=SKIP)
    git("checkout", "-q", "main", cwd=repo)
    assert (repo / "data" / "a.txt").read_text() == "alpha\n"
    added = git("worktree", "add", "-q", str(tmp_path / "wt"), "feature", cwd=repo)
    assert "refstore: data/ -> default/mnist:v1" in added.stderr
    worktree = tmp_path / "wt"
    assert (worktree / "data" / "a.txt").read_text() == "on feature\n"
    assert not (worktree / ".refstore").exists()
    (worktree / "src").mkdir()
    proc = run_refstore("status", "--json", cwd=worktree / "src")
    assert [(r["path"], r["version"], r["state"]) for r in json.loads(proc.stdout)] == [("data/", "v1", "clean")]
    (worktree / "data" / "b.txt").write_text("edited in worktree\n")
    refused = git("commit", "-qam", "x", "--allow-empty", cwd=worktree, check=False)
    assert refused.returncode == 1 and "M b.txt" in refused.stderr
    assert (repo / "data" / "b.txt").read_text() == "bravo\n"  # the main worktree's data is untouched


def test_pre_push_collects_the_pins_of_every_pushed_commit(repo: Path, run_cli: Cli, tmp_path: Path) -> None:
    from refstore.api import githooks
    from refstore.api.workspace import open_workspace

    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo, env=SKIP)  # v0 is already on the remote
    pushed_before = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    for content in ("one\n", "two\n"):
        (repo / "data" / "a.txt").write_text(content)
        run_cli("track", "data")
        git("commit", "-qam", f"data {content}", cwd=repo, env=SKIP)
    head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    ws = open_workspace()
    try:
        line = f"refs/heads/main {head} refs/heads/main {pushed_before}"
        assert [p.version for p in githooks.pushed_pins(ws, [line])] == ["v1", "v2"]
        new_branch = f"refs/heads/main {head} refs/heads/topic {'0' * 40}"  # only what no remote branch has
        assert [p.version for p in githooks.pushed_pins(ws, [new_branch])] == ["v1", "v2"]
        deletion = f"(delete) {'0' * 40} refs/heads/old {head}"
        assert githooks.pushed_pins(ws, [deletion]) == []
        # this refstore has no remotes configured: the hook lets the push through and says nothing
        assert githooks.pre_push(ws, "origin", [line]) == githooks.HookReport(True, [])
    finally:
        ws.store.close()
    assert githooks.choose_remote(["backup", "origin"], "github") == "origin"
    assert githooks.choose_remote(["github", "origin"], "github") == "github"
    assert githooks.choose_remote(["only"], "github") == "only"
    assert githooks.choose_remote(["a", "b"], "github") is None


def test_a_hook_whose_interpreter_is_gone_says_how_to_fix_it(repo: Path, run_cli: Cli) -> None:
    from refstore.api import githooks
    from refstore.api.workspace import open_workspace

    ws = open_workspace()
    try:
        githooks.install(ws, python="/nonexistent/python3")
    finally:
        ws.store.close()
    env = {"PATH": "/usr/bin:/bin"}  # no refstore script on it
    refused = git("commit", "-qm", "x", "--allow-empty", cwd=repo, check=False, env=env)
    assert refused.returncode == 1
    assert "cannot run refstore (/nonexistent/python3 is gone, no refstore on PATH)" in refused.stderr
    assert "run 'refstore hooks install' again" in refused.stderr
    moved = git("checkout", "-q", "-b", "other", cwd=repo, check=False, env=env)
    assert moved.returncode == 0  # post-checkout warns but never fails


def test_post_checkout_keeps_a_chained_hooks_status_and_still_updates_data(repo: Path, run_cli: Cli) -> None:
    write_hook(repo, "post-checkout.pre-refstore", "exit 5\n")  # as if it was there before 'hooks install'
    (repo / "data" / "a.txt").write_text("second\n")
    run_cli("track", "data")
    git("commit", "-qam", "data v1", cwd=repo, env=SKIP)
    moved = git("checkout", "-q", "HEAD~1", cwd=repo, check=False)
    assert moved.returncode == 1  # git reports the chained hook's failure, as before refstore was installed
    assert (repo / "data" / "a.txt").read_text() == "alpha\n"


def test_hooks_go_where_core_hooks_path_says(tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    git("config", "core.hooksPath", ".githooks", cwd=root)
    run_cli("hooks", "install")
    for name in ("pre-commit", "post-checkout", "post-merge", "pre-push"):
        script = root / ".githooks" / name
        assert script.stat().st_mode & stat.S_IXUSR and "# refstore-hook 1" in script.read_text()
    assert not (root / ".git" / "hooks" / "pre-commit").exists()


def test_hooks_without_a_store_warn_and_let_git_proceed(tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    for hook in ("pre-commit", "post-checkout"):
        result = run_cli("hooks", "run", hook, expect=0)
        assert result.stderr.startswith(f"refstore: warning: {hook} hook skipped: no refstore store in ")
    run_cli("hooks", "install", expect=3)  # installing needs a store: one line, nothing written
    assert not (root / ".git" / "hooks" / "pre-commit").exists()


def test_post_merge_updates_the_data_after_a_merge_or_pull(repo: Path, run_cli: Cli) -> None:
    git("checkout", "-q", "-b", "x", cwd=repo)
    (repo / "data" / "a.txt").write_text("from x\n")
    run_cli("track", "data")
    git("commit", "-qam", "data v1 on x", cwd=repo, env=SKIP)
    git("checkout", "-q", "main", cwd=repo)
    assert (repo / "data" / "a.txt").read_text() == "alpha\n"
    merged = git("merge", "-q", "x", cwd=repo)  # a fast-forward, as 'git pull' often is
    assert "refstore: data/ -> default/mnist:v1" in merged.stderr
    assert (repo / "data" / "a.txt").read_text() == "from x\n"
