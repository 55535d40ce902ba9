"""How fast is ``refstore status`` on a tracked directory where nothing changed?

    python benchmarks/bench_git_status.py                 # 20,000 files of 1-8 KiB in 200 folders
    python benchmarks/bench_git_status.py --files 100000
    python benchmarks/bench_git_status.py --smoke         # tiny, so it cannot rot

Rows (median of --repeat runs, min-max):
- ``refstore status`` as a user runs it (a subprocess: interpreter start-up and imports included);
- the same comparison in process (``Workspace.status()``), i.e. the work itself;
- one file changed (same size, so it must be hashed);
- a cold stat cache (every file hashed: what the stat cache saves);
- the peer: ``git status --porcelain`` on the same files committed to a git repository.
The data files get an mtime in the past, as data written more than a second
before ``refstore track`` has (files newer than that are re-hashed once: the
stat cache's racy-write guard).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def generate(root: Path, files: int, folders: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    past = time.time() - 3600
    for index in range(files):
        folder = root / f"d{index % folders:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index:07d}.bin"
        path.write_bytes(rng.randbytes(rng.randint(1024, 8192)))
        os.utime(path, (past, past))


def sh(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(args)}\n{proc.stderr}")
    return proc.stdout


def timed(fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> list[float]:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="200 files, one repetition")
    opts = parser.parse_args()
    if opts.smoke:
        opts.files, opts.folders, opts.repeat = 200, 10, 1

    import refstore
    from refstore.api.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="refstore-bench-status-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        sh(["git", "init", "-q", "-b", "main"], root)
        generate(root / "data", opts.files, opts.folders)
        python = [sys.executable, "-m", "refstore"]
        sh([*python, "init"], root)
        start = time.perf_counter()
        sh([*python, "track", "data", "--name", "bench"], root)
        track_time = time.perf_counter() - start
        peer = ["git", "-c", "gc.auto=0", "--git-dir", str(Path(tmp) / "peer.git"), "--work-tree", str(root / "data")]
        sh(["git", "init", "-q", "--bare", str(Path(tmp) / "peer.git")], root)
        sh([*peer, "add", "-A"], root)
        sh([*peer, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "peer"], root)

        os.chdir(root)
        store = refstore.open(root)
        ws = Workspace(store, root)
        rows: list[tuple[str, list[float], str]] = []
        hashed: list[int] = []

        def status_in_process() -> None:
            result = ws.status()
            hashed.append(result[0].hashed)
            assert result[0].state == "clean", result[0].changes[:3]

        rows.append(("refstore status (CLI subprocess)", timed(lambda: sh([*python, "status"], root), opts.repeat), ""))
        rows.append(("Workspace.status() in process", timed(status_in_process, opts.repeat), f"files read: {max(hashed)}"))
        victim = next((root / "data").rglob("*.bin"))
        original = victim.read_bytes()

        def touch_one() -> None:
            victim.write_bytes(bytes(len(original)))

        def status_one_changed() -> None:
            assert ws.status()[0].state == "modified"

        rows.append(("one file changed, same size", timed(status_one_changed, opts.repeat, touch_one), "1 file read"))
        victim.write_bytes(original)

        def clear_cache() -> None:
            with store.repo.db.transaction():
                store.repo.db.execute("DELETE FROM stat_cache")

        hashed.clear()
        rows.append(
            (
                "cold stat cache (every file hashed)",
                timed(status_in_process, opts.repeat, clear_cache),
                f"files read: {max(hashed)}",
            )
        )
        rows.append(("peer: git status --porcelain", timed(lambda: sh([*peer, "status", "--porcelain"], root), opts.repeat), ""))
        store.close()
        os.chdir(REPO)

    print(
        f"refstore status, {opts.files:,} files in {opts.folders} folders, nothing changed (median of {opts.repeat};"
        f" track took {track_time:.2f}s)"
    )
    print(f"{'operation':40} {'median':>9} {'min-max':>17}  note")
    for name, times, note in rows:
        print(f"{name:40} {statistics.median(times):8.3f}s {min(times):7.3f}-{max(times):.3f}s  {note}")


if __name__ == "__main__":
    main()
