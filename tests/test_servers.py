"""Smoke tests for tests/servers.py: each server works through its fsspec backend.

These pin the server behaviours refstore relies on (version ids, generations,
ETags), so a package upgrade that breaks one shows up here first, not as a
puzzling failure in a refstore test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import servers
from servers import ServerHandle, VersioningUnsupported

# Expose the session fixtures to this module (a conftest may instead declare
# pytest_plugins = ["servers"]; both together are harmless).
s3_server = servers.s3_server
gcs_server = servers.gcs_server
azure_server = servers.azure_server
http_server = servers.http_server


def _name(prefix: str) -> str:
    """Unique bucket name per test: session servers are shared across tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _roundtrip(h: ServerHandle, bucket: str) -> None:
    """Write, read and list one small object through a fresh fsspec instance."""
    fs = h.filesystem()
    fs.pipe_file(f"{bucket}/dir/a.txt", b"hello")
    assert fs.cat_file(f"{bucket}/dir/a.txt") == b"hello"
    assert fs.ls(f"{bucket}/dir", detail=False) == [f"{bucket}/dir/a.txt"]
    assert fs.info(f"{bucket}/dir/a.txt")["size"] == 5


# ----------------------------------------------------------------------------- S3


def test_s3_roundtrip(s3_server: ServerHandle) -> None:
    _roundtrip(s3_server, s3_server.make_bucket(_name("plain")))


def test_s3_versioned_bucket_keeps_old_version(s3_server: ServerHandle) -> None:
    bucket = s3_server.make_bucket(_name("ver"), versioned=True)
    fs = s3_server.filesystem(version_aware=True)
    path = f"{bucket}/obj"
    fs.pipe_file(path, b"v1")
    v1 = fs.info(path)["VersionId"]
    fs.pipe_file(path, b"v2")
    fs.invalidate_cache()
    assert fs.info(path)["VersionId"] != v1
    assert fs.cat_file(path) == b"v2"
    assert fs.cat_file(path, version_id=v1) == b"v1"
    assert len(fs.object_version_info(path)) == 2


def test_s3_reset_clears_state(s3_server: ServerHandle) -> None:
    bucket = s3_server.make_bucket(_name("gone"))
    fs = s3_server.filesystem()
    fs.pipe_file(f"{bucket}/x", b"x")
    s3_server.reset()
    assert not s3_server.filesystem().exists(f"{bucket}/x")


# ----------------------------------------------------------------------------- GCS


def test_gcs_roundtrip(gcs_server: ServerHandle) -> None:
    _roundtrip(gcs_server, gcs_server.make_bucket(_name("plain")))


def test_gcs_versioned_bucket_keeps_old_generation(gcs_server: ServerHandle) -> None:
    bucket = gcs_server.make_bucket(_name("ver"), versioned=True)
    # version_aware=True: otherwise gcsfs treats "#123" as part of the object name.
    fs = gcs_server.filesystem(version_aware=True)
    path = f"{bucket}/obj"
    fs.pipe_file(path, b"v1")
    gen1 = fs.info(path)["generation"]
    fs.pipe_file(path, b"v2")
    fs.invalidate_cache()
    assert fs.info(path)["generation"] != gen1
    assert fs.cat_file(path) == b"v2"
    # The "path#GENERATION" form reads the old bytes (open(path, generation=...)
    # returns the latest ones in gcsfs).
    assert fs.cat_file(f"{path}#{gen1}") == b"v1"


# ----------------------------------------------------------------------------- Azure


def test_azure_roundtrip(azure_server: ServerHandle) -> None:
    _roundtrip(azure_server, azure_server.make_bucket(_name("plain")))
    info = azure_server.filesystem().ls(azure_server.make_bucket(_name("e")), detail=True)
    assert info == []


def test_azure_has_no_versioning(azure_server: ServerHandle) -> None:
    assert azure_server.supports_versioning is False
    with pytest.raises(VersioningUnsupported):
        azure_server.make_bucket(_name("ver"), versioned=True)


# ----------------------------------------------------------------------------- HTTP


def test_http_etag_and_size(http_server: ServerHandle) -> None:
    assert http_server.docroot is not None
    sub = http_server.docroot / _name("d")
    sub.mkdir()
    (sub / "f.bin").write_bytes(b"0123456789")
    fs = http_server.filesystem()
    url = f"{http_server.url}/{sub.name}/f.bin"
    assert fs.cat_file(url) == b"0123456789"
    assert fs.cat_file(url, start=2, end=5) == b"234"  # Range honoured
    info = fs.info(url)
    assert info["size"] == 10
    assert info["ETag"].strip('"')
    assert fs.ls(f"{http_server.url}/{sub.name}/", detail=False) == [url]


# ----------------------------------------------------------------------------- env for subprocesses

_CHILD = """
import sys, fsspec
proto, path = sys.argv[1], sys.argv[2]
sys.stdout.buffer.write(fsspec.filesystem(proto).cat_file(path))
"""


@pytest.mark.parametrize("fixture", ["s3_server", "gcs_server", "azure_server"])
def test_env_alone_reaches_server(fixture: str, request: pytest.FixtureRequest) -> None:
    """A child process given only ``handle.env`` (no storage_options) reaches the server."""
    h: ServerHandle = request.getfixturevalue(fixture)
    bucket = h.make_bucket(_name("env"))
    h.filesystem().pipe_file(f"{bucket}/k", b"from-parent")
    strip = ("AWS_", "AZURE_", "STORAGE_EMULATOR_HOST", "GOOGLE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
    env.update(h.env)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, h.protocol, f"{bucket}/k"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout == b"from-parent"
