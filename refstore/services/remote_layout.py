"""The remote's file layout and its records (see ``docs/format.md``, "Remote layout").

::

    refstore-remote.json                 {"format": 1, "algorithm": "xxh3-128"}
    objects/ab/cdef…                     object bytes, named by their digest
    trees/ab/cdef…                       manifest (directory) records, named by their digest
    versions/PROJECT/NAME/<digest>.json  immutable version records, named by their digest
    numbers/PROJECT/NAME/v<N>            claim of number N: the digest of one version record
    aliases/PROJECT/NAME/<alias>/<seq>   {"version": <record digest>, "number": N}: the alias's move number seq
    runs/<run id>/<rank>-<revision>-<stamp>-<digest>.json  immutable run snapshots (see :mod:`refstore.services.run_records`)

Every file is immutable: content-addressed, or created once exclusively, so a
write that repeats is harmless and a listing says what is there. Writers
compete for version numbers (``numbers/…/v<N>``) and for alias moves (the next
``<seq>``; the highest is the alias's current target): both are exclusive
creates, which makes an alias move a compare-and-set on every backend.
Everything read from a remote is validated here before it reaches the database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from refstore.core import hashing
from refstore.core.names import check_alias, check_name
from refstore.core.repo import dumps_json
from refstore.errors import IntegrityError, UsageError

FORMAT = 1
MARKER = "refstore-remote.json"
_NUMBER = re.compile(r"v(0|[1-9][0-9]{0,8})")
_SEQ = re.compile(r"0|[1-9][0-9]{0,8}")
RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,63}")
_RUN_LEAF = re.compile(r"([01])-(0|[1-9][0-9]{0,17})-([0-9]{20})-([0-9a-f]+)\.json")


def object_path(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest[2:]}"


def tree_path(digest: str) -> str:
    return f"trees/{digest[:2]}/{digest[2:]}"


def record_path(project: str, name: str, digest: str) -> str:
    return f"versions/{project}/{name}/{digest}.json"


def number_path(project: str, name: str, number: int) -> str:
    return f"numbers/{project}/{name}/v{number}"


def alias_path(project: str, name: str, alias: str, seq: int) -> str:
    return f"aliases/{project}/{name}/{alias}/{seq}"


def run_path(run_id: str, key: RunKey) -> str:
    return f"runs/{run_id}/{key.rank}-{key.revision}-{key.stamp}-{key.digest}.json"


@dataclass(frozen=True, order=True)
class RunKey:
    """What a run snapshot's file name says: which snapshot of a run wins.

    Compared as a tuple: a finished or failed snapshot (rank 1) beats a running
    one (rank 0); then the higher ``revision`` (every change to a run adds one;
    a pulled run takes the snapshot's); then the later ``stamp`` (the run's
    ``updated_at``, digits only); then the digest, so every store picks the same one.
    """

    rank: int
    revision: int
    stamp: str
    digest: str


def marker_body(algorithm: str) -> bytes:
    return dumps_json({"format": FORMAT, "algorithm": algorithm}).encode()


def parse_marker(body: bytes, url: str) -> str:
    """The remote's digest algorithm, from its marker file."""
    try:
        data = json.loads(body)
        fmt, algorithm = data["format"], data["algorithm"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"remote {url} has a damaged {MARKER}; it is not a refstore remote") from exc
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise IntegrityError(f"remote {url} has format {fmt!r}, newer than this refstore; upgrade refstore")
    if algorithm not in hashing.ALGORITHMS:
        raise IntegrityError(f"remote {url} uses unknown digest algorithm {algorithm!r}; upgrade refstore")
    return str(algorithm)


@dataclass
class ArtifactListing:
    """What a listing shows about one artifact on the remote."""

    records: set[str] = field(default_factory=set)  # version record digests
    numbers: set[int] = field(default_factory=set)  # claimed numbers
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> highest move number


@dataclass
class Listing:
    """One recursive listing of a remote, parsed. Unknown files are ignored."""

    objects: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    artifacts: dict[tuple[str, str], ArtifactListing] = field(default_factory=dict)
    runs: dict[str, set[RunKey]] = field(default_factory=dict)  # run id -> its snapshots
    has_marker: bool = False

    def artifact(self, project: str, name: str) -> ArtifactListing:
        return self.artifacts.setdefault((project, name), ArtifactListing())


def parse_listing(paths: set[str], algorithm: str) -> Listing:
    listing = Listing(has_marker=MARKER in paths)
    for path in paths:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] in ("objects", "trees") and len(parts[1]) == 2:
            digest = parts[1] + parts[2]
            if hashing.is_digest(digest, algorithm):
                (listing.objects if parts[0] == "objects" else listing.trees).add(digest)
        elif len(parts) == 4 and parts[0] in ("versions", "numbers") and _valid_names(parts[1], parts[2]):
            entry = listing.artifact(parts[1], parts[2])
            leaf = parts[3]
            if parts[0] == "versions" and leaf.endswith(".json") and hashing.is_digest(leaf[:-5], algorithm):
                entry.records.add(leaf[:-5])
            elif parts[0] == "numbers" and _NUMBER.fullmatch(leaf):
                entry.numbers.add(int(leaf[1:]))
        elif len(parts) == 5 and parts[0] == "aliases" and _is_alias_move(parts):
            entry = listing.artifact(parts[1], parts[2])
            entry.aliases[parts[3]] = max(int(parts[4]), entry.aliases.get(parts[3], -1))
        elif len(parts) == 3 and parts[0] == "runs" and RUN_ID.fullmatch(parts[1]):
            found = _RUN_LEAF.fullmatch(parts[2])
            if found and hashing.is_digest(found[4], algorithm):
                key = RunKey(int(found[1]), int(found[2]), found[3], found[4])
                listing.runs.setdefault(parts[1], set()).add(key)
    return listing


def _is_alias_move(parts: list[str]) -> bool:
    return bool(_SEQ.fullmatch(parts[4])) and _valid_alias(parts[3]) and _valid_names(parts[1], parts[2])


def _valid_name(text: str) -> bool:
    try:
        check_name(text)
    except UsageError:
        return False
    return True


def _valid_alias(text: str) -> bool:
    """Only names a user may set: a remote cannot plant ``latest`` or ``v3`` as an alias."""
    try:
        check_alias(text)
    except UsageError:
        return False
    return True


def _valid_names(project: str, name: str) -> bool:
    return _valid_name(project) and _valid_name(name)


# -- version records ----------------------------------------------------------
@dataclass(frozen=True)
class VersionData:
    """A version as pushed: everything but its number, which is claimed apart."""

    project: str
    name: str
    type: str
    manifest: str
    size: int
    files: int
    description: str
    metadata: str  # canonical JSON text of an object
    created_at: str
    run_id: str | None

    def encode(self) -> bytes:
        return dumps_json(
            {
                "format": FORMAT,
                "project": self.project,
                "name": self.name,
                "type": self.type,
                "manifest": self.manifest,
                "size": self.size,
                "files": self.files,
                "description": self.description,
                "metadata": json.loads(self.metadata),
                "created_at": self.created_at,
                "run_id": self.run_id,
            }
        ).encode()

    def digest(self, algorithm: str) -> str:
        return hashing.hash_bytes(self.encode(), algorithm)


def parse_version(body: bytes, algorithm: str, expected: str, project: str, name: str) -> VersionData:
    """Validate an untrusted version record; it must hash to ``expected`` and name its own artifact."""
    actual = hashing.hash_bytes(body, algorithm)
    if actual != expected:
        raise IntegrityError(
            f"version record {expected} of {project}/{name} is corrupt (hashes to {actual})", expected=expected, got=actual
        )
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"version record {expected} of {project}/{name} is not valid JSON") from exc
    where = f"version record {expected} of {project}/{name}"
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IntegrityError(f"{where} has an unknown format; upgrade refstore or repair the remote")

    def field_of(key: str, kind: type | tuple[type, ...]) -> Any:
        value = raw.get(key)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise IntegrityError(f"{where} has an invalid {key!r}")
        return value

    if field_of("project", str) != project or field_of("name", str) != name:
        raise IntegrityError(f"{where} names another artifact; the remote is damaged")
    kind = field_of("type", str)
    if not _valid_name(kind):
        raise IntegrityError(f"{where} has an invalid type {kind!r}")
    manifest = field_of("manifest", str)
    if not hashing.is_digest(manifest, algorithm):
        raise IntegrityError(f"{where} has an invalid manifest digest")
    size, files = field_of("size", int), field_of("files", int)
    if size < 0 or files < 0:
        raise IntegrityError(f"{where} has a negative size or file count")
    metadata = field_of("metadata", dict)
    data = VersionData(
        project=project,
        name=name,
        type=kind,
        manifest=manifest,
        size=size,
        files=files,
        description=field_of("description", str),
        metadata=dumps_json(metadata),
        created_at=field_of("created_at", str),
        run_id=field_of("run_id", (str, type(None))),
    )
    if data.encode() != body:
        raise IntegrityError(f"{where} is not in canonical form; the remote is damaged")
    return data


def parse_claim(body: bytes, algorithm: str, where: str) -> str:
    text = body.decode("ascii", errors="replace").strip()
    if not hashing.is_digest(text, algorithm):
        raise IntegrityError(f"{where} does not hold a version record digest; the remote is damaged")
    return text


def alias_body(record: str, number: int) -> bytes:
    return dumps_json({"version": record, "number": number}).encode()


def parse_alias(body: bytes, algorithm: str, where: str) -> str:
    try:
        raw = json.loads(body)
        record = raw["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{where} is not a valid alias record; the remote is damaged") from exc
    if not isinstance(record, str) or not hashing.is_digest(record, algorithm):
        raise IntegrityError(f"{where} names an invalid version digest; the remote is damaged")
    return record
