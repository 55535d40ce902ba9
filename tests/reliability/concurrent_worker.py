"""One of the processes of test_concurrent_store: puts, aliases and gc on a shared store.

Usage: python concurrent_worker.py WORKDIR WORKER_ID OPERATIONS OUT.json
Writes what it did (and any error) to OUT.json for the test to check.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import traceback
from pathlib import Path

import refstore


def main() -> None:
    work, worker, count, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    rng = random.Random(worker)
    done: list[dict[str, object]] = []
    try:
        with refstore.open(work) as store:
            for step in range(count):
                roll = rng.random()
                if roll < 0.6 or not done:
                    name = rng.choice(["alpha", "beta"])
                    token = f"worker {worker} step {step}"
                    with tempfile.TemporaryDirectory() as tmp:
                        (Path(tmp) / "token.txt").write_text(token)
                        for i in range(rng.randint(1, 30)):
                            (Path(tmp) / f"f{i}.bin").write_bytes(rng.randbytes(rng.randint(10, 3000)))
                        art = refstore.Artifact(name)
                        art.add_dir(tmp)
                        version = store.log_artifact(art)
                    done.append(
                        {
                            "op": "put",
                            "name": name,
                            "version": version.version,
                            "digest": version.digest,
                            "token": token,
                            "created": version.created,
                        }
                    )
                elif roll < 0.85:
                    puts = [d for d in done if d["op"] == "put"]
                    target = rng.choice(puts)
                    alias = rng.choice([f"w{worker}", "shared"])
                    store.set_alias(f"{target['name']}:{target['version']}", alias)
                    done.append({"op": "alias", "name": target["name"], "alias": alias, "version": target["version"]})
                else:
                    report = store.gc()
                    done.append({"op": "gc", "objects": len(report.objects)})
    except Exception:
        out.write_text(json.dumps({"done": done, "error": traceback.format_exc()}))
        raise
    out.write_text(json.dumps({"done": done, "error": None}))


if __name__ == "__main__":
    main()
