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
    try:
        import servers
    except ImportError:
        pytest.skip("tests/servers.py (object-store emulators) is not available on this branch")
    spec: RemoteSpec = servers.refstore_remote(kind, request, prefix)  # type: ignore[attr-defined]
    for key, value in spec.env.items():
        monkeypatch.setenv(key, value)
    return spec
