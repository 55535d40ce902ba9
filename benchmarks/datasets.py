"""Deterministic benchmark datasets (the issue's A, B, C and the file-count curve).

The same arguments always give the same bytes, so runs on different days and
machines measure the same work. Small files are spread round-robin over
folders; sizes are uniform in [min_kib, max_kib] KiB.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Spec:
    """What to generate; ``large`` files of ``large_mib`` MiB are added at the root."""

    files: int = 0
    folders: int = 1
    min_kib: int = 1
    max_kib: int = 8
    large: int = 0
    large_mib: int = 0
    seed: int = 1

    def label(self) -> str:
        parts = []
        if self.files:
            parts.append(f"{self.files} files of {self.min_kib}-{self.max_kib} KiB in {self.folders} folders")
        if self.large:
            parts.append(f"{self.large} x {self.large_mib} MiB")
        return " + ".join(parts) or "empty"


PRESETS = {
    "A": Spec(files=20_000, folders=100, min_kib=1, max_kib=8),
    "B": Spec(large=8, large_mib=128),
    "C": Spec(files=1_000_000, folders=10_000, min_kib=1, max_kib=4),
}


def curve_spec(files: int) -> Spec:
    """C's shape (1-4 KiB, 100 files per folder) at another size, for the per-file cost curve."""
    return Spec(files=files, folders=max(1, files // 100), min_kib=1, max_kib=4)


def generate(root: Path, spec: Spec) -> int:
    """Write ``spec`` under ``root`` (reusing it when a marker says it is complete); return total bytes."""
    marker = root.parent / f"{root.name}.spec.json"  # beside the tree, so it is not part of the data
    wanted = asdict(spec)
    if marker.is_file() and json.loads(marker.read_text())["spec"] == wanted:
        return int(json.loads(marker.read_text())["total"])
    if root.exists():
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(spec.seed)
    pool = rng.randbytes(1 << 22)  # slices of one random pool: fast and still distinct per file
    total = 0
    made: set[int] = set()
    for index in range(spec.files):
        folder = index % spec.folders
        directory = root / f"d{folder:05d}"
        if folder not in made:
            directory.mkdir()
            made.add(folder)
        size = rng.randint(spec.min_kib * 1024, spec.max_kib * 1024)
        start = rng.randrange(0, len(pool) - size)
        data = index.to_bytes(8, "little") + pool[start : start + size - 8]
        with open(directory / f"f{index:07d}.bin", "wb") as handle:
            handle.write(data)
        total += size
    block = rng.randbytes(1 << 20)
    for index in range(spec.large):
        with open(root / f"large{index}.bin", "wb") as handle:
            for chunk in range(spec.large_mib):
                handle.write(block[:-8] + chunk.to_bytes(4, "little") + index.to_bytes(4, "little"))
        total += spec.large_mib << 20
    marker.write_text(json.dumps({"spec": wanted, "total": total}, sort_keys=True))
    return total
