"""Artifacts, versions and aliases: logging, resolving, listing.

Version numbers are assigned inside one ``BEGIN IMMEDIATE`` transaction that
also checks whether the content equals the latest version's (then no version
is created, as in W&B) and writes the manifest records, the version row, its
aliases and the stat-cache rows together. ``latest`` is not stored: it is
always the highest version number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from refstore.core.db import now
from refstore.core.names import LATEST, VersionSpec, check_alias, check_name, parse_spec, split_name
from refstore.core.repo import Repository, dumps_json
from refstore.core.statcache import StatKey
from refstore.core.tree import BuiltTree
from refstore.errors import NotFoundError, UsageError


@dataclass
class VersionRecord:
    """One version as stored, with its artifact's identity and aliases."""

    id: int
    project: str
    name: str
    type: str
    number: int
    digest: str
    size: int
    file_count: int
    description: str
    metadata: dict[str, Any]
    created_at: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    created: bool = True  # False when logging found identical content

    @property
    def label(self) -> str:
        return f"{self.name}:v{self.number}"

    @property
    def qualified(self) -> str:
        return f"{self.project}/{self.name}:v{self.number}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "type": self.type,
            "version": f"v{self.number}",
            "digest": self.digest,
            "size": self.size,
            "files": self.file_count,
            "description": self.description,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "aliases": self.aliases,
        }


_SELECT = """
SELECT v.id, a.project, a.name, a.type, v.number, v.digest, v.size, v.file_count, v.description,
       v.metadata, v.created_at, v.run_id, v.artifact_id
FROM versions v JOIN artifacts a ON a.id = v.artifact_id
"""


def _record(repo: Repository, row: dict[str, Any]) -> VersionRecord:
    aliases = [r["alias"] for r in repo.db.query("SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (row["id"],))]
    latest = repo.db.scalar("SELECT MAX(number) FROM versions WHERE artifact_id = ?", (row["artifact_id"],))
    if latest == row["number"]:
        aliases = [LATEST, *aliases]
    return VersionRecord(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        type=row["type"],
        number=row["number"],
        digest=row["digest"],
        size=row["size"],
        file_count=row["file_count"],
        description=row["description"],
        metadata=json.loads(row["metadata"]),
        created_at=row["created_at"],
        run_id=row["run_id"],
        aliases=aliases,
    )


def parse_json_object(text: str | None, what: str) -> dict[str, Any]:
    """A JSON object from command-line text (``--metadata``, ``--config``, ``--summary``)."""
    if text is None or text == "":
        return {}

    def refuse(constant: str) -> Any:
        # Python's json reads NaN/Infinity; JSON does not have them, and --json output would stop being JSON.
        raise UsageError(f'{what} holds {constant}, which is not JSON; use null or a string such as "{constant}"')

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc.args[0]}); give a JSON object such as '{{\"k\": 1}}'") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object such as '{{\"k\": 1}}'")
    return value


def parse_metadata(text: str | None) -> dict[str, Any]:
    """Version metadata from JSON text."""
    return parse_json_object(text, "metadata")


def check_text(text: str, what: str) -> str:
    """Refuse text SQLite cannot store as UTF-8 (lone surrogates, e.g. from undecodable argv bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"{what} contains text that is not valid Unicode ({exc.reason}); use UTF-8 text") from exc
    return text


def check_metadata(metadata: dict[str, Any] | None) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise UsageError("metadata must be a dict (a JSON object)")
    try:
        json.dumps(metadata, allow_nan=False, default=str)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise UsageError(f"metadata cannot be stored as JSON: {exc}") from exc
        raise UsageError(
            'metadata holds a NaN or infinite number, which JSON cannot represent; use None or a string such as "NaN"'
        ) from exc
    try:
        return check_text(dumps_json(metadata), "metadata")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata cannot be stored as JSON: {exc}") from exc


def check_new_names(repo: Repository, project: str, name: str) -> None:
    """Refuse a new project or artifact whose name differs only in case from an existing one.

    Names are ASCII (``core/names``), so Unicode normalisation cannot make two
    names look alike; case can. ``MNIST`` and ``mnist`` would share one
    directory on a case-insensitive filesystem (macOS, Windows) - a directory
    remote's ``versions/PROJECT/NAME`` - and are easy to confuse anyway.
    Call inside the transaction that creates the artifact.
    """
    other = repo.db.scalar(
        "SELECT project FROM artifacts WHERE lower(project) = lower(?) AND project != ? LIMIT 1", (project, project)
    )
    if other is not None:
        raise UsageError(f"project {project!r} differs only in case from the existing project {other!r}; use {other!r}")
    other = repo.db.scalar(
        "SELECT name FROM artifacts WHERE project = ? AND lower(name) = lower(?) AND name != ? LIMIT 1", (project, name, name)
    )
    if other is not None:
        raise UsageError(
            f"artifact name {name!r} differs only in case from the existing artifact {project}/{other}; use {other!r}"
        )


def check_new_alias(repo: Repository, art_id: int, alias: str) -> None:
    """Refuse an alias that differs only in case from another alias of the same artifact (see check_new_names)."""
    other = repo.db.scalar(
        "SELECT alias FROM aliases WHERE artifact_id = ? AND lower(alias) = lower(?) AND alias != ? LIMIT 1",
        (art_id, alias, alias),
    )
    if other is not None:
        raise UsageError(f"alias {alias!r} differs only in case from the existing alias {other!r}; use {other!r}")


def artifact_id(repo: Repository, project: str, name: str) -> int:
    found = repo.db.scalar("SELECT id FROM artifacts WHERE project = ? AND name = ?", (project, name))
    if found is None:
        raise NotFoundError(f"no artifact {project}/{name}; see 'refstore ls' for the artifacts in this store")
    return int(found)


def commit_version(
    repo: Repository,
    name: str,
    type: str,
    tree: BuiltTree,
    *,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    aliases: Sequence[str] = (),
    run_id: str | None = None,
    stat_rows: Sequence[tuple[str, StatKey, str]] = (),
) -> VersionRecord:
    """Record ``tree`` as the next version of ``name`` unless it equals the latest.

    All objects the tree names must already be in the cache.
    """
    project, short = split_name(name)
    project = project or repo.default_project
    check_name(type, "artifact type")
    alias_list = [check_alias(a) for a in dict.fromkeys(aliases)]
    metadata_json = check_metadata(metadata)
    if description:
        check_text(description, "description")
    with repo.db.transaction():
        row = repo.db.one("SELECT id, type FROM artifacts WHERE project = ? AND name = ?", (project, short))
        if row is None:
            check_new_names(repo, project, short)
            art_id = repo.db.execute(
                "INSERT INTO artifacts (project, name, type, description, created_at) VALUES (?, ?, ?, ?, ?)",
                (project, short, type, description or "", now()),
            ).lastrowid
        else:
            art_id = row["id"]
            if row["type"] != type:
                raise UsageError(
                    f"artifact {project}/{short} has type {row['type']!r}, not {type!r}; use --type {row['type']} or another name"
                )
            if description:
                repo.db.execute("UPDATE artifacts SET description = ? WHERE id = ?", (description, art_id))
        repo.stat_cache.record(stat_rows)
        latest = repo.db.one("SELECT id, digest FROM versions WHERE artifact_id = ? ORDER BY number DESC LIMIT 1", (art_id,))
        created = not (latest is not None and latest["digest"] == tree.root)
        if created:
            repo.store_records(tree.records)
            number = repo.db.scalar("SELECT COALESCE(MAX(number) + 1, 0) FROM versions WHERE artifact_id = ?", (art_id,))
            version_id = repo.db.execute(
                "INSERT INTO versions (artifact_id, number, digest, size, file_count, description, metadata, created_at, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (art_id, number, tree.root, tree.size, tree.count, description or "", metadata_json, now(), run_id),
            ).lastrowid
            if run_id is not None:
                from refstore.services.run_sync import note_output  # (lazy: run_sync needs this module)

                note_output(repo, run_id)
        else:
            assert latest is not None
            version_id = latest["id"]
        for alias in alias_list:
            check_new_alias(repo, int(art_id or 0), alias)
            repo.db.execute(
                "INSERT OR REPLACE INTO aliases (artifact_id, alias, version_id) VALUES (?, ?, ?)", (art_id, alias, version_id)
            )
    record = get_version_by_id(repo, int(version_id))  # type: ignore[arg-type]
    record.created = created
    return record


def get_version_by_id(repo: Repository, version_id: int) -> VersionRecord:
    row = repo.db.one(_SELECT + " WHERE v.id = ?", (version_id,))
    if row is None:
        raise NotFoundError(f"no version with id {version_id}")
    return _record(repo, row)


def resolve(repo: Repository, spec: str | VersionSpec) -> VersionRecord:
    """The version a spec names, or a NotFoundError that says what exists."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    project = parsed.project or repo.default_project
    art_id = artifact_id(repo, project, parsed.name)
    where, params = "v.artifact_id = ?", [art_id]
    if parsed.version is not None:
        row = repo.db.one(_SELECT + f" WHERE {where} AND v.number = ?", (*params, parsed.version))
        missing = f"{parsed.name} has no version v{parsed.version}"
    elif parsed.digest_prefix is not None:
        rows = repo.db.query(
            _SELECT + f" WHERE {where} AND v.digest >= ? AND v.digest < ? ORDER BY v.number DESC",
            (*params, parsed.digest_prefix, parsed.digest_prefix + "g"),
        )
        digests = {r["digest"] for r in rows}
        if len(digests) > 1:
            raise UsageError(f"digest prefix {parsed.digest_prefix} is ambiguous in {parsed.name}; give more digits")
        row = rows[0] if rows else None
        missing = f"{parsed.name} has no version with digest {parsed.digest_prefix}…"
    elif parsed.alias == LATEST:
        row = repo.db.one(_SELECT + f" WHERE {where} ORDER BY v.number DESC LIMIT 1", params)
        missing = f"{parsed.name} has no versions"
    else:
        row = repo.db.one(
            _SELECT + f" WHERE {where} AND v.id = (SELECT version_id FROM aliases WHERE artifact_id = ? AND alias = ?)",
            (*params, art_id, parsed.alias),
        )
        missing = f"{parsed.name} has no alias {parsed.alias!r}"
    if row is None:
        raise NotFoundError(f"{missing}; see 'refstore log {parsed.name}'")
    return _record(repo, row)


def list_versions(repo: Repository, name: str) -> list[VersionRecord]:
    """Versions of one artifact, newest first."""
    project, short = split_name(name)
    art_id = artifact_id(repo, project or repo.default_project, short)
    rows = repo.db.query(_SELECT + " WHERE v.artifact_id = ? ORDER BY v.number DESC", (art_id,))
    return [_record(repo, row) for row in rows]


def list_artifacts(repo: Repository, project: str | None = None) -> list[dict[str, Any]]:
    """Artifacts with their type, version count and latest version."""
    rows = repo.db.query(
        """
        SELECT a.project, a.name, a.type, a.description, a.created_at,
               COUNT(v.id) AS versions, MAX(v.number) AS latest
        FROM artifacts a LEFT JOIN versions v ON v.artifact_id = a.id
        WHERE (? IS NULL OR a.project = ?)
        GROUP BY a.id ORDER BY a.project, a.name
        """,
        (project, project),
    )
    for row in rows:
        row["latest"] = None if row["latest"] is None else f"v{row['latest']}"
    return rows


def set_alias(repo: Repository, spec: str, alias: str) -> VersionRecord:
    """Point ``alias`` at the version ``spec`` names (moving it if it was elsewhere)."""
    check_alias(alias)
    with repo.db.transaction():
        version = resolve(repo, spec)
        art_id = repo.db.scalar("SELECT artifact_id FROM versions WHERE id = ?", (version.id,))
        check_new_alias(repo, art_id, alias)
        repo.db.execute(
            "INSERT OR REPLACE INTO aliases (artifact_id, alias, version_id) VALUES (?, ?, ?)", (art_id, alias, version.id)
        )
    return get_version_by_id(repo, version.id)


def remove_alias(repo: Repository, name: str, alias: str) -> None:
    """Remove ``alias`` from artifact ``name``."""
    check_alias(alias)
    project, short = split_name(name)
    with repo.db.transaction():
        art_id = artifact_id(repo, project or repo.default_project, short)
        deleted = repo.db.execute("DELETE FROM aliases WHERE artifact_id = ? AND alias = ?", (art_id, alias)).rowcount
    if not deleted:
        raise NotFoundError(f"{short} has no alias {alias!r}; see 'refstore log {short}'")


def delete_version(repo: Repository, spec: str, *, delete_aliases: bool = False) -> VersionRecord:
    """Delete one version (its objects go at the next ``gc``).

    As in W&B, a version that carries aliases is kept unless ``delete_aliases``.
    """
    with repo.db.transaction():
        version = resolve(repo, spec)
        user_aliases = [a for a in version.aliases if a != LATEST]
        if user_aliases and not delete_aliases:
            raise UsageError(f"{version.label} has aliases {', '.join(user_aliases)}; remove them first or pass --delete-aliases")
        from refstore.services.run_sync import keep_edges_of  # (lazy: run_sync needs this module)

        keep_edges_of(repo, version.id)  # runs keep knowing what they used and logged
        repo.db.execute("DELETE FROM aliases WHERE version_id = ?", (version.id,))
        repo.db.execute("DELETE FROM versions WHERE id = ?", (version.id,))
    return version
