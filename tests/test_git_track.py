"""track, status and checkout in a real git repository, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli
from gitfixtures import age, git, init_repo, make_old_tree

import refstore
from refstore.api.workspace import Workspace
from refstore.services.gitpin import LockFile


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Cli) -> Path:
    """A git repository with a store in its root, cwd at the root, and data/ with three old files."""
    root = init_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    run_cli("init")
    make_old_tree(root / "data", {"a.txt": "alpha\n", "b.txt": "bravo\n", "sub/c.bin": bytes(range(256))})
    return root


def status(run_cli: Cli, *paths: str) -> list[dict[str, object]]:
    return json.loads(run_cli("status", "--json", *paths).stdout)  # type: ignore[no-any-return]


def test_track_pins_the_path_and_ignores_it_in_git(repo: Path, run_cli: Cli) -> None:
    out = run_cli("track", "data", "--name", "mnist", "--type", "dataset")
    assert out.stdout.startswith("data/: recorded default/mnist:v0 (")
    [pin] = LockFile(repo).read()
    with refstore.open() as store:
        version = store.artifact("mnist:v0")
    assert (pin.display, pin.artifact, pin.version, pin.digest) == ("data/", "default/mnist", "v0", version.digest)
    assert (repo / ".gitignore").read_text() == "/data/\n"
    assert (repo / ".gitattributes").read_text() == "/refstore.lock merge=refstore\n"
    assert git("status", "--porcelain", cwd=repo).stdout.split() == [
        "??",
        ".gitattributes",
        "??",
        ".gitignore",
        "??",
        "main.py",
        "??",
        "refstore.lock",
    ]
    # tracking again with nothing changed: same pin, no new version, .gitignore not duplicated
    again = run_cli("track", "data")
    assert "unchanged, default/mnist:v0" in again.stdout
    assert (repo / ".gitignore").read_text() == "/data/\n"


def test_track_from_a_subdirectory_and_a_single_file(repo: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    (repo / "models").mkdir()
    (repo / "models" / "net.pt").write_bytes(b"weights")
    monkeypatch.chdir(sub)
    run_cli("track", "../../data", "--name", "mnist")
    run_cli("track", "../../models/net.pt", "--name", "net", "--type", "model")
    pins = {p.display: p for p in LockFile(repo).read()}
    assert sorted(pins) == ["data/", "models/net.pt"]
    assert pins["models/net.pt"].artifact == "default/net" and not pins["models/net.pt"].is_dir
    assert not (sub / "refstore.lock").exists()
    assert (repo / ".gitignore").read_text() == "/data/\n/models/net.pt\n"
    assert [r["state"] for r in status(run_cli)] == ["clean", "clean"]
    (repo / "models" / "net.pt").write_bytes(b"weights v2")
    assert [r["state"] for r in status(run_cli, "../../models/net.pt")] == ["modified"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["track", "data"], 2, "give the artifact a name with --name"),
        (["track", "nowhere", "--name", "x"], 2, "no such file or directory"),
        (["track", ".", "--name", "x"], 2, "cannot track the workspace root"),
        (["track", ".refstore", "--name", "x"], 2, "inside .refstore/"),
        (["track", "data/sub", "--name", "x"], 2, "overlaps tracked data/"),
        (["track", "/", "--name", "x"], 2, "is outside the workspace"),
        (["checkout", "main.py"], 2, "main.py is not tracked"),
        (["track", "data", "--name", "mnist", "--type", "model"], 2, "has type 'dataset'"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(repo: Path, run_cli: Cli, args: list[str], code: int, words: str) -> None:
    if args[1] != "data" or "--type" in args:
        run_cli("track", "data", "--name", "mnist")
    before = (repo / "refstore.lock").read_bytes() if (repo / "refstore.lock").exists() else None
    result = run_cli(*args, expect=code)
    assert result.stdout == ""
    assert result.stderr.startswith("refstore: error: ") and words in result.stderr and result.stderr.count("\n") == 1
    after = (repo / "refstore.lock").read_bytes() if (repo / "refstore.lock").exists() else None
    assert after == before


def test_status_reports_added_modified_removed_without_reading_unchanged_files(repo: Path, run_cli: Cli) -> None:
    run_cli("track", "data", "--name", "mnist")
    with refstore.open() as store:
        [clean] = Workspace(store).status()
    assert clean.state == "clean" and clean.hashed == 0  # every file answered by the stat cache
    (repo / "data" / "a.txt").write_text("ALPHA\n")  # same size: must be hashed
    (repo / "data" / "b.txt").unlink()
    (repo / "data" / "sub" / "new.txt").write_text("new\n")
    [result] = status(run_cli)
    assert result["state"] == "modified"
    assert result["changes"] == [
        {"status": "modified", "path": "a.txt"},
        {"status": "removed", "path": "b.txt"},
        {"status": "added", "path": "sub/new.txt"},
    ]
    human = run_cli("status").stdout.splitlines()
    assert human == ["data/\tdefault/mnist:v0\tmodified", "\tM a.txt", "\tD b.txt", "\tA sub/new.txt"]
    run_cli("status", "--exit-code", expect=1)
    # touching a file without changing it costs one read, once: status remembers it
    age(repo / "data" / "a.txt", repo / "data" / "sub" / "new.txt")
    run_cli("track", "data")
    (repo / "data" / "sub" / "c.bin").write_bytes(bytes(range(256)))
    age(repo / "data" / "sub" / "c.bin")
    with refstore.open() as store:
        assert [s.hashed for s in Workspace(store).status()] == [1]
        assert [s.hashed for s in Workspace(store).status()] == [0]
    run_cli("status", "--exit-code")


def test_checkout_restores_pins_and_deletes_only_inside_tracked_paths(repo: Path, run_cli: Cli) -> None:
    run_cli("track", "data", "--name", "mnist")
    (repo / "data" / "a.txt").write_text("changed\n")
    (repo / "data" / "extra" / "x.txt").parent.mkdir()
    (repo / "data" / "extra" / "x.txt").write_text("x\n")
    run_cli("track", "data")  # v1 records the change and the extra file
    (repo / "notes.txt").write_text("not tracked\n")
    (repo / "data2").mkdir()
    (repo / "data2" / "keep.txt").write_text("keep\n")
    lock = LockFile(repo)
    [v1] = lock.read()
    with refstore.open() as store:
        v0 = store.artifact("mnist:v0")
    lock.write([type(v1)(v1.path, True, v1.artifact, "v0", v0.digest)])  # as a git checkout of an older lock would
    outcome = json.loads(run_cli("checkout", "--json").stdout)
    assert outcome == [
        {"path": "data/", "version": f"default/mnist:v0 ({v0.digest[:12]})", "action": "updated", "written": 1, "removed": 1}
    ]
    assert (repo / "data" / "a.txt").read_text() == "alpha\n"
    assert not (repo / "data" / "extra").exists()  # emptied directory pruned
    assert (repo / "notes.txt").read_text() == "not tracked\n" and (repo / "data2" / "keep.txt").exists()
    assert status(run_cli)[0]["state"] == "clean"
    assert "already at" in run_cli("checkout", "data").stdout


def test_checkout_refuses_to_lose_unrecorded_bytes_unless_forced(repo: Path, run_cli: Cli) -> None:
    run_cli("track", "data", "--name", "mnist")
    (repo / "data" / "a.txt").write_text("my unsaved work\n")
    (repo / "data" / "mine.txt").write_text("also mine\n")
    result = run_cli("checkout", expect=7)
    assert "has changes no version records (modified a.txt, added mine.txt)" in result.stderr
    assert "refstore track data/" in result.stderr
    assert (repo / "data" / "a.txt").read_text() == "my unsaved work\n" and (repo / "data" / "mine.txt").exists()
    run_cli("checkout", "--force", "data")
    assert (repo / "data" / "a.txt").read_text() == "alpha\n" and not (repo / "data" / "mine.txt").exists()


def test_checkout_of_a_missing_path_and_of_recorded_bytes_needs_no_force(repo: Path, run_cli: Cli) -> None:
    run_cli("track", "data", "--name", "mnist")
    (repo / "data" / "a.txt").write_text("second\n")
    run_cli("track", "data")  # v1: its bytes are in the cache
    lock = LockFile(repo)
    [v1] = lock.read()
    with refstore.open() as store:
        v0 = store.artifact("mnist:v0")
    lock.write([type(v1)(v1.path, True, v1.artifact, "v0", v0.digest)])
    run_cli("checkout")  # a.txt holds v1's bytes, which the store has: no --force needed
    assert (repo / "data" / "a.txt").read_text() == "alpha\n"
    import shutil

    shutil.rmtree(repo / "data")
    assert status(run_cli)[0]["state"] == "missing"
    run_cli("checkout")
    assert (repo / "data" / "sub" / "c.bin").read_bytes() == bytes(range(256))


def test_untrack_and_a_pin_unknown_to_this_store(repo: Path, run_cli: Cli) -> None:
    run_cli("track", "data", "--name", "mnist")
    lock = LockFile(repo)
    [pin] = lock.read()
    lock.write([type(pin)(pin.path, True, pin.artifact, "v9", "f" * 32)])
    [result] = status(run_cli)
    assert result["state"] == "unknown" and "is not in this store" in str(result["detail"])
    failed = run_cli("checkout", expect=5)
    assert "is not in this store" in failed.stderr
    assert "no longer tracked" in run_cli("untrack", "data").stdout
    assert lock.read() == []


def test_outside_git_the_lock_lives_beside_the_store(workdir: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    run_cli("init")
    make_old_tree(workdir / "data", {"a.txt": "a"})
    monkeypatch.chdir(workdir / "data")
    run_cli("track", ".", "--name", "x")  # "." from inside data/ is data/
    assert [p.display for p in LockFile(workdir).read()] == ["data/"]
    assert not (workdir / "data" / "refstore.lock").exists() and not (workdir / ".gitignore").exists()
    assert status(run_cli)[0]["state"] == "clean"


def test_a_path_reached_through_a_symlink_is_inside_the_workspace(repo: Path, run_cli: Cli, tmp_path: Path) -> None:
    link = tmp_path / "link-to-repo"
    link.symlink_to(repo)
    run_cli("track", str(link / "data"), "--name", "mnist")
    assert [p.display for p in LockFile(repo).read()] == ["data/"]


def test_track_warns_when_git_also_tracks_the_files(repo: Path, run_cli: Cli) -> None:
    git("add", "data/a.txt", cwd=repo)
    result = run_cli("track", "data", "--name", "mnist")
    assert "refstore: warning: git also tracks 1 file(s) under data/; run 'git rm -r --cached data/'" in result.stderr


def test_concurrent_tracks_of_different_paths_keep_both_pins(repo: Path) -> None:
    import subprocess
    import sys

    from conftest import subprocess_env

    names = [f"set{i}" for i in range(4)]
    for name in names:
        make_old_tree(repo / name, {f"f{j}.txt": f"{name} {j}\n" for j in range(20)})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "refstore", "track", name, "--name", name],
            cwd=repo,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(p.path for p in LockFile(repo).read()) == names
    assert sorted((repo / ".gitignore").read_text().split()) == [f"/{n}/" for n in names]
