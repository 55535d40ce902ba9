"""Backends for the reference conformance suite: one small harness per storage server.

A harness gives the suite a fresh root URI per test, a way to write, overwrite
and delete objects *behind refstore's back* (with the server's own client),
and the environment refstore needs to reach the server — the same environment
a user would set (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``,
``AZURE_STORAGE_CONNECTION_STRING``…), so no test passes options refstore
would not get in real use.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import ServerHandle


@dataclass
class Harness:
    """One backend as the suite sees it."""

    kind: str  # file | s3 | s3-versioned | gcs | gcs-versioned | azure | http
    scheme: str
    root: str  # URI of this test's empty root, no trailing slash
    versioned: bool  # reads are pinned to the recorded version
    env: dict[str, str] = field(default_factory=dict)
    server: ServerHandle | None = None
    local_root: Path | None = None  # file:// and http docroot
    placeholders: bool = True  # the backend can hold zero-byte "folder/" objects
    _fs: Any = None

    def uri(self, key: str = "") -> str:
        return f"{self.root}/{key}" if key else self.root

    @property
    def bucket_path(self) -> str:
        return self.root.split("://", 1)[1]

    def fs(self) -> Any:
        if self._fs is None:
            assert self.server is not None
            self._fs = self.server.filesystem()
        return self._fs

    def write(self, key: str, data: bytes) -> None:
        if self.local_root is not None:
            path = self.local_root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            path.write_bytes(data)
            if existed:
                # nginx's ETag is mtime-size: make an overwrite visible even within one second
                st = path.stat()
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
            return
        if self.scheme == "s3":
            assert self.server is not None
            bucket, _, prefix = self.bucket_path.partition("/")
            self.server.boto3_client().put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)
            return
        if self.scheme == "az" and key.endswith("/"):
            # adlfs lists "name/" as "name": Azure tools mark folder blobs with this metadata instead
            from azure.storage.blob import BlobServiceClient

            container, _, prefix = self.bucket_path.partition("/")
            with BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"]) as svc:
                blob = svc.get_blob_client(container, f"{prefix}/{key}")
                blob.upload_blob(data, metadata={"hdi_isfolder": "true"}, overwrite=True)
            return
        self.fs().pipe_file(f"{self.bucket_path}/{key}", data)

    def remove(self, key: str) -> None:
        if self.local_root is not None:
            (self.local_root / key).unlink()
            return
        if self.scheme == "s3":
            assert self.server is not None
            bucket, _, prefix = self.bucket_path.partition("/")
            self.server.boto3_client().delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
            return
        self.fs().rm_file(f"{self.bucket_path}/{key}")

    def remove_versions(self, key: str) -> None:
        """Delete every stored version of ``key`` (versioned S3/GCS only)."""
        assert self.server is not None
        if self.scheme == "s3":
            bucket, _, prefix = self.bucket_path.partition("/")
            client = self.server.boto3_client()
            listing = client.list_object_versions(Bucket=bucket, Prefix=f"{prefix}/{key}")
            for item in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
                client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
        else:
            fs = self.server.filesystem(version_aware=True)
            for name in fs.ls(f"{self.bucket_path}/{key}", versions=True, detail=False):
                fs.rm_file(name)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def env_for(server: ServerHandle) -> dict[str, str]:
    env = dict(server.env)
    if server.protocol == "gs":
        # a user of the emulator would also say "no credentials" (token anon); nothing secret
        env["REFSTORE_STORAGE_OPTIONS_GS"] = '{"token": "anon", "project": "test"}'
    return env


def make_harness(kind: str, request: Any, tmp_path: Path) -> Harness:
    """Build the harness ``kind``, starting its server through the session fixtures."""
    if kind == "file":
        root = tmp_path / "remote"
        root.mkdir()
        return Harness("file", "file", "file://" + str(root), versioned=False, local_root=root, placeholders=False)
    if kind == "http":
        server = request.getfixturevalue("http_server")
        assert server.docroot is not None
        name = unique("site")
        (server.docroot / name).mkdir()
        return Harness(
            "http",
            "http",
            f"{server.url}/{name}",
            versioned=False,
            env=env_for(server),
            server=server,
            local_root=server.docroot / name,
            placeholders=False,
        )
    fixture = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azure_server"}[kind.split("-")[0]]
    server = request.getfixturevalue(fixture)
    versioned = kind.endswith("-versioned")
    bucket = server.make_bucket(unique("bkt"), versioned=versioned)
    scheme = {"s3": "s3", "gs": "gs", "az": "az"}[server.protocol]
    return Harness(kind, scheme, f"{scheme}://{bucket}/data", versioned=versioned, env=env_for(server), server=server)
