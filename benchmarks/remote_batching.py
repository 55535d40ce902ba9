"""Push/pull of many small objects: one request per task vs batched fsspec pipe/cat.

    python benchmarks/remote_batching.py [--files 1000] [--size 2048] [--jobs 8] [--smoke]

Runs against moto S3 and fake-gcs-server on 127.0.0.1 (tests/servers.py) and a
local directory, and prints one table. "per-object" is the same code with
batching switched off (each object its own task on the thread pool), so the two
columns differ only in batching.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import refstore  # noqa: E402
from refstore.core.remotefs import RemoteFS  # noqa: E402
from refstore.services.transfer import download_objects, upload_objects  # noqa: E402


def build_store(base: Path, files: int, size: int) -> refstore.Store:
    data = base / "data"
    for i in range(files):
        path = data / f"d{i % 20}" / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    store = refstore.init(base / "store")
    art = refstore.Artifact("bench")
    art.add_dir(data)
    store.log_artifact(art)
    return store


def measure(store: refstore.Store, remote: RemoteFS, jobs: int, batch: bool, base: Path) -> tuple[float, float]:
    items = [(d, store.repo.cache.path(d).stat().st_size) for d in store.repo.cache.digests()]
    start = time.perf_counter()
    upload_objects(store.repo, remote, items, jobs=jobs, batch=batch)
    up = time.perf_counter() - start
    target = refstore.init(base / f"pull-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    download_objects(target.repo, remote, items, jobs=jobs, batch=batch)
    down = time.perf_counter() - start
    target.close()
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="tiny run, local directory only")
    args = parser.parse_args()
    if args.smoke:
        args.files = 50
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = build_store(base, args.files, args.size)
        backends: list[tuple[str, str, dict[str, object], object]] = [("dir", str(base / "remote-{}"), {}, None)]
        if not args.smoke:
            import servers

            s3 = servers.start_s3()
            gcs = servers.start_gcs()
            os.environ.update(s3.env)
            backends += [
                ("s3 (moto)", "s3://{}/r", {"client_kwargs": {"endpoint_url": s3.url}}, s3),
                ("gcs (fake)", "gs://{}/r", {"endpoint_url": gcs.url, "token": "anon", "project": "test"}, gcs),
            ]
        print(f"{args.files} objects of {args.size} B, jobs={args.jobs}")
        print(f"{'backend':<12} {'mode':<11} {'push s':>8} {'pull s':>8} {'push obj/s':>11}")
        for name, pattern, options, handle in backends:
            for batch in (False, True):
                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                if handle is not None:
                    handle.make_bucket(bucket)  # type: ignore[attr-defined]
                remote = RemoteFS(pattern.format(bucket), options)
                up, down = measure(store, remote, args.jobs, batch, base)
                mode = "batched" if batch else "per-object"
                print(f"{name:<12} {mode:<11} {up:>8.2f} {down:>8.2f} {args.files / up:>11.0f}")
            if handle is not None:
                handle.stop()  # type: ignore[attr-defined]
        store.close()


if __name__ == "__main__":
    main()
