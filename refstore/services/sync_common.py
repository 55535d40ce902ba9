"""What push and pull share: opening a remote, selecting versions, renumbering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from refstore.core.names import LATEST, parse_spec
from refstore.core.remotefs import RemoteFS
from refstore.core.repo import Repository
from refstore.errors import FormatError, NotFoundError, UsageError
from refstore.services.remote_layout import MARKER, Listing, marker_body, parse_listing, parse_marker
from refstore.services.remotes import RemoteConfig, get_remote


@dataclass
class Renumbered:
    """A version whose number changed to agree with a remote (like a rebased commit)."""

    project: str
    name: str
    old: int
    new: int

    def __str__(self) -> str:
        return f"{self.project}/{self.name}:v{self.old} is now v{self.new}"


@dataclass
class SyncResult:
    """What a push or pull did; ``conflicts`` are alias moves that were not applied."""

    remote: str
    url: str
    versions: list[str] = field(default_factory=list)
    renumbered: list[Renumbered] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    records: int = 0
    aliases: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # ids of runs whose snapshot was sent or taken

    def as_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "url": self.url,
            "versions": self.versions,
            "renumbered": [
                {"artifact": f"{r.project}/{r.name}", "old": f"v{r.old}", "new": f"v{r.new}"} for r in self.renumbered
            ],
            "objects": self.objects,
            "bytes": self.bytes,
            "records": self.records,
            "aliases": self.aliases,
            "conflicts": self.conflicts,
            "runs": self.runs,
        }


def open_remote(repo: Repository, name: str | None) -> tuple[RemoteConfig, RemoteFS]:
    config = get_remote(repo, name)
    return config, config.open()


def read_listing(repo: Repository, remote: RemoteFS, *, create: bool) -> Listing:
    """List the remote once and check its marker (creating it on first push)."""
    listing = parse_listing(remote.list_all(), repo.algorithm)
    if not listing.has_marker:
        if not create:
            return listing
        if remote.create(MARKER, marker_body(repo.algorithm)):
            return listing
    algorithm = parse_marker(remote.read(MARKER), remote.url)
    if algorithm != repo.algorithm:
        raise FormatError(
            f"remote {remote.url} uses digest algorithm {algorithm} but this store uses {repo.algorithm}; "
            "use a remote created by a store with the same algorithm"
        )
    return listing


def selection(specs: Sequence[str], default_project: str) -> dict[tuple[str, str], int | None] | None:
    """Specs → {(project, name): highest version number wanted, None for all}; None means everything."""
    if not specs:
        return None
    chosen: dict[tuple[str, str], int | None] = {}
    for text in specs:
        spec = parse_spec(text)
        key = (spec.project or default_project, spec.name)
        if spec.digest_prefix is not None or (spec.alias is not None and spec.alias != LATEST):
            raise UsageError(f"push/pull take NAME or NAME:vN, not {text!r}; use the version number")
        limit = spec.version if spec.version is not None else None
        if key in chosen:
            old = chosen[key]
            chosen[key] = None if old is None or limit is None else max(old, limit)
        else:
            chosen[key] = limit
    return chosen


def chosen_version_ids(repo: Repository, wanted: dict[tuple[str, str], int | None] | None) -> set[int] | None:
    """Ids of the local versions a selection names (None: every version)."""
    if wanted is None:
        return None
    rows = repo.db.query("SELECT v.id, v.number, a.project, a.name FROM versions v JOIN artifacts a ON a.id = v.artifact_id")
    chosen: set[int] = set()
    for row in rows:
        key = (row["project"], row["name"])
        if key not in wanted:
            continue
        limit = wanted[key]
        if limit is None or row["number"] <= limit:
            chosen.add(row["id"])
    return chosen


def renumber(repo: Repository, artifact_id: int, wanted: dict[int, int]) -> list[tuple[int, int, int]]:
    """Give versions ``wanted`` (id → number); move any other version that collides above the rest.

    Call inside a transaction. Returns (version id, old, new) for every version whose number changed.
    """
    rows = repo.db.query("SELECT id, number FROM versions WHERE artifact_id = ? ORDER BY number", (artifact_id,))
    current = {row["id"]: row["number"] for row in rows}
    final = dict(wanted)
    taken = set(wanted.values())
    ceiling = max([*taken, *current.values(), -1])
    for version_id, number in current.items():
        if version_id in final:
            continue
        if number in taken:
            ceiling += 1
            number = ceiling
        final[version_id] = number
        taken.add(number)
    changed = [(vid, current[vid], num) for vid, num in final.items() if current.get(vid) != num]
    if changed:
        for vid, _, _ in changed:
            repo.db.execute("UPDATE versions SET number = ? WHERE id = ?", (-vid, vid))
        for vid, _, new in changed:
            repo.db.execute("UPDATE versions SET number = ? WHERE id = ?", (new, vid))
    return changed


def artifact_row(repo: Repository, project: str, name: str) -> dict[str, Any]:
    row = repo.db.one("SELECT id, type FROM artifacts WHERE project = ? AND name = ?", (project, name))
    if row is None:
        raise NotFoundError(f"no artifact {project}/{name}; see 'refstore ls'")
    return row
