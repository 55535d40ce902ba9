"""Count the requests refstore makes to reference an N-object prefix on each backend.

    python benchmarks/bench_references.py                 # 10,000 objects per backend
    python benchmarks/bench_references.py --objects 500 --backends s3,http
    python benchmarks/bench_references.py --smoke         # 30 objects, s3 only

Each backend is a real server on 127.0.0.1 (tests/servers.py). Requests are
counted client-side, by wrapping ``aiohttp.ClientSession._request``: s3fs
(aiobotocore), gcsfs, adlfs (azure-storage-blob aio) and fsspec's HTTP backend
all send through it, so the count is what goes on the wire, retries included.
Populating the prefix is done before counting starts. The comparison column is
the naive peer: one listing walk plus one metadata request (HEAD) per object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("NO_GCE_CHECK", "true")

import servers  # noqa: E402

COUNTS: Counter[str] = Counter()


def install_counter() -> None:
    import aiohttp

    original = aiohttp.ClientSession._request

    async def counted(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS[method.upper()] += 1
        return await original(self, method, url, *args, **kwargs)

    aiohttp.ClientSession._request = counted  # type: ignore[method-assign]


def populate(handle: servers.ServerHandle, bucket: str, count: int) -> None:
    if handle.protocol == "http":
        assert handle.docroot is not None
        root = handle.docroot / bucket / "data"
        root.mkdir(parents=True)
        for i in range(count):
            (root / f"f{i:06d}.bin").write_bytes(b"x" * (i % 100 + 1))
        return
    handle.make_bucket(bucket)
    if handle.protocol == "s3":
        client = handle.boto3_client()

        def put(i: int) -> None:
            client.put_object(Bucket=bucket, Key=f"data/f{i:06d}.bin", Body=b"x" * (i % 100 + 1))

    else:
        fs = handle.filesystem()

        def put(i: int) -> None:
            fs.pipe_file(f"{bucket}/data/f{i:06d}.bin", b"x" * (i % 100 + 1))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))


def measure(name: str, count: int) -> tuple[str, int, Counter[str], float]:
    starter = {"s3": servers.start_s3, "gcs": servers.start_gcs, "azure": servers.start_azure}.get(name)
    docroot = Path(tempfile.mkdtemp(prefix="bench-refs-http-"))
    handle = starter() if starter else servers.start_http(docroot)
    try:
        populate(handle, "bench-bucket", count)
        for key, value in handle.env.items():
            os.environ[key] = value
        if name == "gcs":
            os.environ["REFSTORE_STORAGE_OPTIONS_GS"] = '{"token": "anon", "project": "test"}'
        scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}.get(name)
        uri = f"{scheme}://bench-bucket/data/" if scheme else f"{handle.url}/bench-bucket/data/"
        import refstore

        with tempfile.TemporaryDirectory() as work, refstore.init(work) as store:
            art = refstore.Artifact("bench")
            art.add_reference(uri, max_objects=count)
            COUNTS.clear()
            started = time.perf_counter()
            version = store.log_artifact(art)
            seconds = time.perf_counter() - started
            assert version.file_count == count, version.file_count
            return name, count, Counter(COUNTS), seconds
    finally:
        handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--backends", default="s3,gcs,azure,http")
    parser.add_argument("--smoke", action="store_true", help="30 objects on s3 only")
    args = parser.parse_args()
    if args.smoke:
        args.objects, args.backends = 30, "s3"
    install_counter()
    rows = [measure(name, args.objects) for name in args.backends.split(",")]
    print(f"{'backend':8} {'objects':>8} {'requests':>9} {'by method':28} {'naive (list+HEAD each)':>23} {'seconds':>8}")
    for name, count, counts, seconds in rows:
        total = sum(counts.values())
        methods = ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))
        naive = total + count if name != "http" else total
        print(f"{name:8} {count:8d} {total:9d} {methods:28} {naive:23d} {seconds:8.2f}")


if __name__ == "__main__":
    main()
