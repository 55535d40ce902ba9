"""Kept for existing callers (tests/run.sh runs ``bench_core.py --smoke``): see bench.py.

python benchmarks/bench_core.py --smoke     # same as: python benchmarks/bench.py --smoke
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import main

if __name__ == "__main__":
    main()
