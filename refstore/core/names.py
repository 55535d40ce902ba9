"""Names of projects, artifacts and aliases, and the version-spec grammar.

    spec    := [project "/"] name [":" selector | "@" hexprefix]
    selector:= "v" digits | alias            (alias "latest" is the newest version)

A bare ``name`` means ``name:latest``. Names are restricted to a portable
character set so they can be file names on every remote and every OS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from refstore.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"v(0|[1-9][0-9]{0,8})")
_HEX = re.compile(r"[0-9a-f]{8,64}")
LATEST = "latest"


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid project/artifact name, else raise a UsageError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith("."):
        raise UsageError(f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if a user may set it; ``latest`` and ``vN`` are managed by refstore."""
    check_name(alias, "alias")
    if _VERSION.fullmatch(alias) or re.fullmatch(r"v[0-9]+", alias):
        raise UsageError(f"alias {alias!r} looks like a version number; choose another name")
    if alias == LATEST:
        raise UsageError("alias 'latest' moves automatically to the newest version; choose another name")
    return alias


@dataclass(frozen=True)
class VersionSpec:
    """A parsed reference to one version (or, with nothing selected, to the latest)."""

    project: str | None
    name: str
    version: int | None = None
    alias: str | None = None
    digest_prefix: str | None = None

    def __str__(self) -> str:
        base = f"{self.project}/{self.name}" if self.project else self.name
        if self.version is not None:
            return f"{base}:v{self.version}"
        if self.alias is not None:
            return f"{base}:{self.alias}"
        if self.digest_prefix is not None:
            return f"{base}@{self.digest_prefix}"
        return base


def split_name(text: str) -> tuple[str | None, str]:
    """Split ``[project/]name`` into its parts, validating both."""
    if not isinstance(text, str) or not text:
        raise UsageError("empty artifact name; give a name such as 'mnist' or 'project/mnist'")
    if text.count("/") > 1:
        raise UsageError(f"invalid artifact name {text!r}: use [project/]name")
    project, _, name = text.rpartition("/")
    return (check_name(project, "project") if project else None), check_name(name, "artifact name")


def parse_spec(text: str) -> VersionSpec:
    """Parse ``[project/]name[:vN|:alias|@digestprefix]``."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty version spec; use name, name:v3, name:alias or name@digestprefix")
    if "@" in text:
        base, _, prefix = text.partition("@")
        if not _HEX.fullmatch(prefix):
            raise UsageError(f"invalid digest prefix in {text!r}: give 8 or more lowercase hex digits")
        project, name = split_name(base)
        return VersionSpec(project, name, digest_prefix=prefix)
    base, colon, selector = text.partition(":")
    project, name = split_name(base)
    if not colon or selector == LATEST:
        return VersionSpec(project, name, alias=LATEST)
    match = _VERSION.fullmatch(selector)
    if match:
        return VersionSpec(project, name, version=int(match.group(1)))
    return VersionSpec(project, name, alias=check_name(selector, "alias"))
