"""Remote backends for the remote conformance suite: each gives a fresh, empty remote URL.

A backend supplies only a URL, fsspec options and the environment a child
process needs; the suite in ``test_remotes_conformance.py`` runs the same
tests against every one (fsspec's habit). Object-store backends use the
servers from ``tests/servers.py`` on 127.0.0.1 and skip when it is absent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class RemoteSpec:
    """One empty remote location."""

    kind: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def cli_options(self) -> list[str]:
        import json

        out: list[str] = []
        for key, value in self.options.items():
            out += ["-o", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        return out


def make_remote(kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RemoteSpec:
    prefix = uuid.uuid4().hex[:12]
    if kind == "dir":
        return RemoteSpec(kind, str(tmp_path / "remote"))
    if kind == "memory":
        return RemoteSpec(kind, f"memory://refstore-tests/{prefix}")
    handle = request.getfixturevalue(SERVER_FIXTURES[kind])
    bucket = handle.make_bucket(f"rs-{prefix}")
    # Credentials travel in the environment (as for a user); only non-secret options are stored.
    for key, value in handle.env.items():
        monkeypatch.setenv(key, value)
    if kind == "s3":
        return RemoteSpec(kind, f"s3://{bucket}/team", {"client_kwargs": {"endpoint_url": handle.url}}, dict(handle.env))
    if kind == "gcs":
        options = {"endpoint_url": handle.url, "token": "anon", "project": handle.storage_options["project"]}
        return RemoteSpec(kind, f"gs://{bucket}/team", options, dict(handle.env))
    return RemoteSpec(kind, f"az://{bucket}/team", {}, dict(handle.env))


SERVER_FIXTURES = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azure_server"}
