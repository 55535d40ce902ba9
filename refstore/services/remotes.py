"""Configured remotes (name → URL and non-secret options) and the lazy object fetcher.

Remotes live in the ``remotes`` table (migration ``0004_remotes``). Credentials
are never stored: options whose names look like secrets are refused, and the
backends read credentials from their usual environment variables and files
(``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``, …).

Importing this module registers a fetcher with :mod:`refstore.services.fetch`,
so a checkout in a clone that lacks objects fetches them from the remotes,
verified, without the checkout code knowing about remotes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from refstore.core.db import now
from refstore.core.fs import check_no_credentials
from refstore.core.names import check_name
from refstore.core.remotefs import RemoteFS, normalize_url
from refstore.core.repo import Repository, dumps_json
from refstore.core.tree import Entry
from refstore.errors import BackendError, NotFoundError, RefstoreError, UsageError
from refstore.services import fetch
from refstore.services.remote_layout import VersionData

log = logging.getLogger(__name__)
DEFAULT_REMOTE = "origin"
# Option names that carry secrets; they belong in the environment, never in the database.
SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential", "connection_string", "sas", "auth", "signature")
# Values of secret-looking options that are not secrets (gcsfs token="anon" means "no credentials").
HARMLESS_VALUES = {"token": ("anon", "google_default", "cloud", None)}


@dataclass(frozen=True)
class RemoteConfig:
    name: str
    url: str
    options: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "options": dict(self.options)}

    def open(self) -> RemoteFS:
        return RemoteFS(self.url, self.options)


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Refuse anything that looks like a credential, anywhere in the (nested) options."""

    def visit(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise UsageError(f"remote option names must be strings, got {key!r}")
                lowered = key.lower()
                harmless = lowered in HARMLESS_VALUES and item in HARMLESS_VALUES[lowered]
                if any(word in lowered for word in SECRET_WORDS) and not harmless:
                    raise UsageError(
                        f"remote option {path}{key} looks like a credential; refstore never stores credentials - "
                        "set them in the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*) instead"
                    )
                visit(item, f"{path}{key}.")
        elif isinstance(value, list):
            for item in value:
                visit(item, path)

    visit(options, "")
    try:
        dumps_json(options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"remote options must be JSON values: {exc}") from exc
    return options


def add_remote(repo: Repository, name: str, url: str, options: dict[str, Any] | None = None) -> RemoteConfig:
    check_name(name, "remote name")
    check_no_credentials(url)  # the URL is stored: a password or signature in it would be too
    clean = normalize_url(url)
    opts = check_options(dict(options or {}))
    RemoteFS(clean, opts)  # refuses unknown protocols and bad options now, without network access
    with repo.db.transaction():
        if repo.db.scalar("SELECT 1 FROM remotes WHERE name = ?", (name,)):
            raise UsageError(f"remote {name} already exists; remove it first with 'refstore remote remove {name}'")
        repo.db.execute(
            "INSERT INTO remotes (name, url, options, created_at) VALUES (?, ?, ?, ?)", (name, clean, dumps_json(opts), now())
        )
    return RemoteConfig(name, clean, opts)


def remove_remote(repo: Repository, name: str) -> None:
    with repo.db.transaction():
        deleted = repo.db.execute("DELETE FROM remotes WHERE name = ?", (name,)).rowcount
    if not deleted:
        raise NotFoundError(f"no remote {name}; see 'refstore remote list'")


def list_remotes(repo: Repository) -> list[RemoteConfig]:
    rows = repo.db.query("SELECT name, url, options FROM remotes ORDER BY name")
    return [RemoteConfig(r["name"], r["url"], json.loads(r["options"])) for r in rows]


def get_remote(repo: Repository, name: str | None) -> RemoteConfig:
    """The named remote, or the default: ``origin``, else the only one."""
    remotes = list_remotes(repo)
    if name is None:
        if not remotes:
            raise NotFoundError("no remote configured; add one with 'refstore remote add origin URL'")
        named = [r for r in remotes if r.name == DEFAULT_REMOTE]
        if named:
            return named[0]
        if len(remotes) == 1:
            return remotes[0]
        raise UsageError(f"several remotes ({', '.join(r.name for r in remotes)}) and none is 'origin'; name one")
    for remote in remotes:
        if remote.name == name:
            return remote
    raise NotFoundError(f"no remote {name}; see 'refstore remote list'")


# -- local versions as remote records ------------------------------------------
def local_version_data(repo: Repository, version_ids: Sequence[int] | None = None) -> dict[int, VersionData]:
    """version id → its record as it would be pushed (the number is not part of it)."""
    sql = """
        SELECT v.id, a.project, a.name, a.type, v.digest, v.size, v.file_count, v.description,
               v.metadata, v.created_at, v.run_id
        FROM versions v JOIN artifacts a ON a.id = v.artifact_id
    """
    rows = repo.db.query(sql + " ORDER BY a.project, a.name, v.number")
    wanted = set(version_ids) if version_ids is not None else None
    return {
        row["id"]: VersionData(
            project=row["project"],
            name=row["name"],
            type=row["type"],
            manifest=row["digest"],
            size=row["size"],
            files=row["file_count"],
            description=row["description"],
            metadata=dumps_json(json.loads(row["metadata"])),
            created_at=row["created_at"],
            run_id=row["run_id"],
        )
        for row in rows
        if wanted is None or row["id"] in wanted
    }


def objects_on_remotes(repo: Repository) -> set[str]:
    """Digests of stored objects that a remote holds (those of versions pushed to or pulled from it)."""
    from refstore.core.tree import DIR, FILE

    sql = "SELECT DISTINCT v.digest FROM versions v JOIN remote_versions r ON r.version_id = v.id"
    roots = [row[0] for row in repo.db.execute(sql)]
    seen: set[str] = set()
    objects: set[str] = set()
    while roots:
        digest = roots.pop()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            nodes = repo.record(digest)
        except RefstoreError:
            continue
        for node in nodes:
            if node.type == DIR and node.digest is not None:
                roots.append(node.digest)
            elif node.type == FILE and node.digest is not None:
                objects.add(node.digest)
    return objects


# -- fetching objects on demand ------------------------------------------------
DEFAULT_JOBS = 8


@fetch.register
def fetch_from_remotes(repo: Repository, entries: Sequence[Entry]) -> dict[str, str]:
    """Bring missing stored objects from the configured remotes, verified on arrival."""
    from refstore.services.transfer import download_objects

    wanted = [e for e in entries if e.ref is None and e.digest is not None]
    if not wanted:
        return {}
    remotes = list_remotes(repo)
    provided: dict[str, str] = {}
    failures: list[str] = []
    for remote in remotes:
        digests = sorted({e.digest for e in wanted if e.digest is not None and not repo.cache.has(e.digest)})
        if not digests:
            break
        try:
            sizes = {e.digest: e.size for e in wanted if e.digest is not None}
            download_objects(repo, remote.open(), [(d, sizes[d]) for d in digests], jobs=DEFAULT_JOBS, missing_ok=True)
        except BackendError as exc:
            log.warning("%s", exc)
            failures.append(exc.message)
            continue
    for entry in wanted:
        assert entry.digest is not None
        if repo.cache.has(entry.digest):
            provided[entry.path] = entry.digest
    if len(provided) < len(wanted) and failures:
        raise BackendError(failures[0])
    return provided
