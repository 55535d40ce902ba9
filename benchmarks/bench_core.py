"""Time refstore's core operations on a generated tree and print a table.

    python benchmarks/bench_core.py                     # 20,000 small files + 4 x 64 MiB
    python benchmarks/bench_core.py --files 5000 --large 0 --repeat 3
    python benchmarks/bench_core.py --smoke             # tiny sizes; CI runs this so it cannot rot

Every operation runs the real CLI in a subprocess (start-up included, as a user
sees it). Each row is the median of --repeat runs with min-max, peak RSS from
/usr/bin/time when present, and the ratio to ``cp -a`` of the same tree where
that comparison makes sense. The DVC comparison lives in a later benchmark.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIME_BIN = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def generate(root: Path, files: int, folders: int, large: int, large_mib: int, seed: int = 1) -> int:
    """Deterministic tree: ``files`` files of 1-8 KiB in ``folders`` folders, plus ``large`` big files."""
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        folder = root / f"d{index % folders:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 8192)
        (folder / f"f{index:07d}.bin").write_bytes(rng.randbytes(size))
        total += size
    block = rng.randbytes(1 << 20)
    for index in range(large):
        with open(root / f"large{index}.bin", "wb") as handle:
            for chunk in range(large_mib):
                handle.write(block[:-8] + chunk.to_bytes(4, "little") + index.to_bytes(4, "little"))
        total += large_mib << 20
    return total


def run(args: list[str], cwd: Path) -> tuple[float, int | None]:
    """Wall time and peak RSS (KiB) of one command."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    prefix = [TIME_BIN, "-f", "%M", "-o", str(cwd / ".rss")] if TIME_BIN else []
    start = time.perf_counter()
    proc = subprocess.run(prefix + args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(args)}\n{proc.stderr}")
    rss = int((cwd / ".rss").read_text().split()[-1]) if TIME_BIN else None
    return elapsed, rss


def refstore(*args: str) -> list[str]:
    return [sys.executable, "-m", "refstore", *args]


def measure(repeat: int, setup: Callable[[], None], command: Callable[[], list[str]], cwd: Path) -> tuple[list[float], int]:
    times: list[float] = []
    peak = 0
    for _ in range(repeat):
        setup()
        elapsed, rss = run(command(), cwd)
        times.append(elapsed)
        peak = max(peak, rss or 0)
    return times, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--large", type=int, default=4, help="number of large files")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    opts = parser.parse_args()
    if opts.smoke:
        opts.files, opts.folders, opts.large, opts.large_mib, opts.repeat = 200, 10, 1, 2, 1

    base = Path(tempfile.mkdtemp(prefix="refstore-bench-", dir=opts.workdir))
    try:
        data = base / "data"
        total = generate(data, opts.files, opts.folders, opts.large, opts.large_mib)
        count = opts.files + opts.large
        print(
            f"# refstore core benchmark — {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
        )
        print(f"# tree: {count} files, {total / 1e6:.1f} MB; median of {opts.repeat} (min-max)")
        rows: list[tuple[str, list[float], int]] = []

        def fresh_store() -> None:
            shutil.rmtree(base / ".refstore", ignore_errors=True)
            shutil.rmtree(base / "cp", ignore_errors=True)
            run(refstore("init"), base)

        def no_setup() -> None:
            pass

        cp_times, _ = measure(
            opts.repeat,
            lambda: shutil.rmtree(base / "cp", ignore_errors=True),
            lambda: ["cp", "-a", str(data), str(base / "cp")],
            base,
        )
        rows.append(("cp -a (reference)", cp_times, 0))
        rows.append(("put (first)", *measure(opts.repeat, fresh_store, lambda: refstore("put", "data", "-n", "bench"), base)))
        rows.append(
            ("put (nothing changed)", *measure(opts.repeat, no_setup, lambda: refstore("put", "data", "-n", "bench"), base))
        )
        changed = sorted(data.rglob("f*.bin"))[:10]
        counter = [0]

        def touch_ten() -> None:
            counter[0] += 1
            for path in changed:
                with open(path, "ab") as handle:
                    handle.write(counter[0].to_bytes(4, "little"))

        rows.append(
            ("put (10 files changed)", *measure(opts.repeat, touch_ten, lambda: refstore("put", "data", "-n", "bench"), base))
        )
        for mode in ("copy", "hardlink"):
            target = base / f"get-{mode}"
            rows.append(
                (
                    f"get --link {mode}",
                    *measure(
                        opts.repeat,
                        lambda t=target: shutil.rmtree(t, ignore_errors=True),  # type: ignore[misc]
                        lambda t=target, m=mode: refstore("get", "bench", "-o", str(t), "--link", m),
                        base,
                    ),
                )
            )  # type: ignore[misc]
        rows.append(("verify (re-hash cache)", *measure(opts.repeat, no_setup, lambda: refstore("verify"), base)))
        rows.append(("--version (start-up)", *measure(opts.repeat, no_setup, lambda: refstore("--version"), base)))

        cp_median = statistics.median(cp_times)
        print(f"{'operation':<26}{'median s':>10}{'min-max s':>16}{'peak MiB':>10}{'÷ cp -a':>9}")
        for name, times, peak in rows:
            median = statistics.median(times)
            spread = f"{min(times):.3f}-{max(times):.3f}"
            ratio = f"{median / cp_median:.2f}" if cp_median > 0 else "-"
            mib = f"{peak / 1024:.0f}" if peak else "-"
            print(f"{name:<26}{median:>10.3f}{spread:>16}{mib:>10}{ratio:>9}")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
