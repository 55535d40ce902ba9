"""Validation of paths inside manifests.

A manifest path is a relative, normalized POSIX path. Manifests can come from
remotes, so the same check runs when a path is added and again before anything
is written at checkout: nothing may escape the target directory on any OS.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from refstore.errors import UnsafePathError

_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(1, 10)] + [f"lpt{i}" for i in range(1, 10)]
)
MAX_PATH_LENGTH = 4096


def normalize(path: str) -> str:
    """Return ``path`` as a clean relative POSIX path or raise :class:`UnsafePathError`."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty path in manifest; give every entry a name")
    if "\x00" in path:
        raise UnsafePathError(f"path {path!r} contains a NUL byte; rename the file")
    if len(path) > MAX_PATH_LENGTH:
        raise UnsafePathError(f"path {path[:60]!r}… is longer than {MAX_PATH_LENGTH} characters")
    unified = path.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafePathError(f"path {path!r} is absolute; entries must be relative paths")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafePathError(f"path {path!r} names no file; give the entry a file name")
    for part in parts:
        if part == "..":
            raise UnsafePathError(f"path {path!r} escapes its root with '..'; use a path inside the artifact")
        if ":" in part and _DRIVE.match(part):
            raise UnsafePathError(f"path {path!r} contains a drive letter")
        if part.split(".")[0].lower() in _WINDOWS_RESERVED and os.name == "nt":
            raise UnsafePathError(f"path {path!r} uses a reserved Windows device name")
    return posixpath.join(*parts)


def check_normalized(path: str) -> str:
    """Accept ``path`` only if it is already normalized (stricter: for untrusted manifests)."""
    clean = normalize(path)
    if clean != path:
        raise UnsafePathError(f"path {path!r} is not normalized (expected {clean!r})")
    return clean


def safe_join(root: Path, path: str) -> Path:
    """Join a manifest ``path`` under ``root``, refusing anything that would land outside."""
    clean = check_normalized(path)
    target = root.joinpath(*clean.split("/"))
    root_resolved = os.path.realpath(root)
    parent_resolved = os.path.realpath(target.parent)
    if parent_resolved != root_resolved and not parent_resolved.startswith(root_resolved + os.sep):
        raise UnsafePathError(f"path {path!r} would be written outside {root} (through a symlink?)")
    return target
