"""Disk full and I/O errors during put: a clear error, and the store exactly as it was.

Three ways to run out of space, from most to least realistic:

- ``tmpfs``: the store lives on a 6 MB tmpfs (needs root and ``mount``; skipped otherwise)
  and a 10 MB put fills it while objects are staged;
- ``tmpfs-nearly-full``: the same filesystem pre-filled to a few kB, so the put fails
  wherever the space runs out first (staging, the SQLite WAL, the commit);
- ``rlimit``: no privileges needed - the child runs with ``RLIMIT_FSIZE`` = 2 MB, so
  writing a bigger file fails with EFBIG (Python ignores SIGXFSZ).

Afterwards: no new version, every old one intact, ``verify`` passes, ``tmp/`` is empty
or emptied by ``gc``, and a put that fits succeeds.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_tree, subprocess_env
from faultkit import snapshot, verify_in_process

MB = 1 << 20


def refstore_proc(*args: str, cwd: Path, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "refstore", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


@contextlib.contextmanager
def small_filesystem(mount: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem until about ``leave`` bytes are free."""
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def check_unchanged_and_recovers(work: Path, before: dict[str, object], proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode not in (0, 70), proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("refstore: error:"), proc.stderr
    assert snapshot(work / ".refstore") == before
    assert verify_in_process(work) == []
    gc = refstore_proc("gc", cwd=work)
    assert gc.returncode == 0, gc.stderr
    assert not any((work / ".refstore" / "tmp").iterdir())
    return lines[0]


@pytest.fixture
def datasets(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(5)
    small = make_tree(tmp_path / "small", {f"s{i}.txt": f"small {i}\n" for i in range(20)})
    big = make_tree(tmp_path / "big", {f"b{i}.bin": rng.randbytes(MB) for i in range(10)} | {"tiny.txt": "t\n"})
    return small, big


def test_tmpfs_fills_during_put(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    small, big = datasets
    with small_filesystem(tmp_path / "mnt", "6m") as work:
        assert refstore_proc("init", cwd=work).returncode == 0
        assert refstore_proc("put", str(small), "--name", "ds", "--alias", "good", cwd=work).returncode == 0
        before = snapshot(work / ".refstore")
        line = check_unchanged_and_recovers(work, before, refstore_proc("put", str(big), "--name", "ds", cwd=work))
        assert "No space left on device" in line
        (small / "new.txt").write_text("fits\n")
        assert refstore_proc("put", str(small), "--name", "ds", cwd=work).returncode == 0
        assert verify_in_process(work) == []


@pytest.mark.parametrize("leave", [4096, 32 * 1024, 128 * 1024])
def test_tmpfs_nearly_full_before_put(tmp_path: Path, datasets: tuple[Path, Path], leave: int) -> None:
    small, _ = datasets
    rng = random.Random(leave)
    more = make_tree(tmp_path / "more", {f"m{i}.bin": rng.randbytes(8192) for i in range(40)})
    with small_filesystem(tmp_path / "mnt", "4m") as work:
        assert refstore_proc("init", cwd=work).returncode == 0
        assert refstore_proc("put", str(small), "--name", "ds", cwd=work).returncode == 0
        before = snapshot(work / ".refstore")
        fill(work, leave)
        check_unchanged_and_recovers(work, before, refstore_proc("put", str(more), "--name", "ds", cwd=work))
        (work / "filler").unlink()
        assert refstore_proc("put", str(more), "--name", "ds", cwd=work).returncode == 0
        assert verify_in_process(work) == []


def test_file_size_limit_during_put(workdir: Path, datasets: tuple[Path, Path]) -> None:
    """RLIMIT_FSIZE: an I/O error (EFBIG) part-way through staging, no privileges needed."""
    small, big = datasets
    assert refstore_proc("init", cwd=workdir).returncode == 0
    assert refstore_proc("put", str(small), "--name", "ds", cwd=workdir).returncode == 0
    before = snapshot(workdir / ".refstore")
    (big / "huge.bin").write_bytes(random.Random(1).randbytes(3 * MB))
    line = check_unchanged_and_recovers(
        workdir, before, refstore_proc("put", str(big), "--name", "ds", cwd=workdir, fsize=2 * MB)
    )
    assert "too large" in line.lower()


def test_tmpfs_fills_during_pull(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    """A pull of 10 MB into a 6 MB filesystem: one line, no version lost, verify clean.

    Pull commits version metadata first (by design, docs/remotes.md); a version whose objects did
    not fit stays visible with its objects on the remote, and verify accepts that."""
    import refstore

    small, big = datasets
    upstream = tmp_path / "up"
    with refstore.init(upstream) as store:
        art = refstore.Artifact("big")
        art.add_dir(big)
        store.log_artifact(art)
        store.add_remote("origin", str(tmp_path / "remote"))
        store.push("origin")
    with small_filesystem(tmp_path / "mnt", "6m") as work:
        assert refstore_proc("init", cwd=work).returncode == 0
        assert refstore_proc("put", str(small), "--name", "ds", cwd=work).returncode == 0
        assert refstore_proc("remote", "add", "origin", str(tmp_path / "remote"), cwd=work).returncode == 0
        before = snapshot(work / ".refstore")
        proc = refstore_proc("pull", "origin", "--objects", cwd=work)
        after = snapshot(work / ".refstore")
        assert proc.returncode not in (0, 70) and "Traceback" not in proc.stderr, proc.stderr
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
        assert all(after["versions"].get(k) == v for k, v in before["versions"].items())
        assert verify_in_process(work) == [], "a pulled version must not be visible without its objects"
        new = len(after["versions"]) - len(before["versions"])
        print(f"pull into a full disk: {proc.stderr.strip()}; new versions visible (objects on the remote): {new}")


def test_remote_fills_during_push(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    """A directory remote on a 6 MB tmpfs; a 10 MB push fills it part-way.

    One line and a non-zero exit; the local store exactly as it was and verify clean;
    after space is freed, a repeat push completes and a clone of the remote verifies.
    """
    small, big = datasets
    work = tmp_path / "work"
    work.mkdir()
    assert refstore_proc("init", cwd=work).returncode == 0
    assert refstore_proc("put", str(small), "--name", "ds", "--alias", "good", cwd=work).returncode == 0
    assert refstore_proc("put", str(big), "--name", "ds", cwd=work).returncode == 0
    with small_filesystem(tmp_path / "mnt", "6m") as mount:
        remote = mount / "remote"
        assert refstore_proc("remote", "add", "origin", str(remote), cwd=work).returncode == 0
        before = snapshot(work / ".refstore")
        proc = refstore_proc("push", cwd=work)
        assert proc.returncode not in (0, 70), proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("refstore: error:"), proc.stderr
        assert "No space left on device" in lines[0], lines[0]
        print(f"push to a full remote: {lines[0]} (exit {proc.returncode})")
        assert "free space where the remote lives" in lines[0]
        assert snapshot(work / ".refstore") == before
        assert verify_in_process(work) == []
        # nothing half-written under a name on the remote: every object there hashes to its name
        from refstore.core import hashing

        landed = [p for p in (remote / "objects").rglob("*") if p.is_file()]
        assert all(hashing.hash_file(p, "xxh3-128")[0] == p.parent.name + p.name for p in landed)
        assert not any((remote / "tmp").glob("*")), "staged remote temp files are removed on failure"
        print(f"objects that arrived before the disk filled: {len(landed)}")
        # a clone of the half-pushed remote sees nothing broken (at most the versions whose data all arrived)
        partial = tmp_path / "partial"
        clone = refstore_proc("clone", str(remote), str(partial), cwd=tmp_path)
        if clone.returncode == 0:
            assert verify_in_process(partial) == []
        # free space: make the filesystem bigger, as an operator would
        assert subprocess.run(["mount", "-o", "remount,size=32m", str(mount)], capture_output=True).returncode == 0
        again = refstore_proc("push", cwd=work)
        assert again.returncode == 0, again.stderr
        copy = tmp_path / "copy"
        assert refstore_proc("clone", str(remote), str(copy), cwd=tmp_path).returncode == 0
        assert refstore_proc("pull", "--objects", cwd=copy).returncode == 0
        assert verify_in_process(copy) == []
        assert snapshot(copy / ".refstore")["versions"].keys() == snapshot(work / ".refstore")["versions"].keys()
        assert refstore_proc("get", "ds", "-o", str(tmp_path / "out"), cwd=copy).returncode == 0
        assert (tmp_path / "out" / "b3.bin").read_bytes() == (big / "b3.bin").read_bytes()
