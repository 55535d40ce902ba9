"""``pull``: merge a remote's versions, manifests and aliases into the local database.

Everything read from the remote is untrusted. Version records must hash to
the digest they are named by and name their own artifact; manifest records
are checked by :func:`refstore.core.tree.parse_record` against their digest
(names, sizes, digests), full paths are checked again, and the sizes and file
counts of every directory must add up to what its parent and the version say.
Only when all of it passed does one transaction import it, so a bad remote
leaves the store exactly as it was.

Objects are fetched only with ``objects=True``; otherwise on demand by the
fetcher that :mod:`refstore.services.remotes` registers, verified on arrival.

Runs: for each run on the remote, the winning snapshot is read when it beats
the local state of that run (see :mod:`refstore.services.run_records`) and
applied in the same transaction; input edges to versions this store lacks are
kept by identity until the version arrives.

A local version that was never pushed and whose number the remote now uses is
renumbered above the remote's versions (the result says so). An alias moved
both here and on the remote is a conflict: the local one is kept and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from refstore.core.db import now
from refstore.core.paths import MAX_PATH_LENGTH
from refstore.core.remotefs import RemoteFS
from refstore.core.repo import Repository
from refstore.core.tree import DIR, FILE, Node, parse_record
from refstore.errors import ConflictError, IntegrityError, NotFoundError, UnsafePathError
from refstore.services.remote_layout import (
    VersionData,
    alias_path,
    number_path,
    parse_alias,
    parse_claim,
    parse_version,
    record_path,
    tree_path,
)
from refstore.services.remotes import local_version_data
from refstore.services.run_sync import apply_runs, read_runs, runs_to_read, touches, version_identities
from refstore.services.sync_common import Renumbered, SyncResult, open_remote, read_listing, renumber, selection
from refstore.services.transfer import Progress, download_objects
from refstore.services.versions import check_new_alias, check_new_names

log = logging.getLogger(__name__)


@dataclass
class _Incoming:
    number: int
    record: str
    data: VersionData
    local_id: int | None  # set when this store already has the version (under some number)


def pull(
    repo: Repository,
    remote_name: str | None = None,
    specs: Sequence[str] = (),
    *,
    objects: bool = False,
    jobs: int = 8,
    progress: Progress | None = None,
) -> SyncResult:
    config, remote = open_remote(repo, remote_name)
    result = SyncResult(config.name, config.url)
    wanted = selection(specs, repo.default_project)
    listing = read_listing(repo, remote, create=False)
    if not listing.has_marker:
        if listing.artifacts or listing.objects:
            raise IntegrityError(f"remote {config.url} has files but no refstore-remote.json; it is not a refstore remote")
        if wanted:
            raise NotFoundError(f"remote {config.name} is empty; push to it first")
        return result
    keys = sorted(k for k, v in listing.artifacts.items() if v.numbers)
    if wanted is not None:
        absent = [f"{p}/{n}" for (p, n) in wanted if (p, n) not in keys]
        if absent:
            raise NotFoundError(f"remote {config.name} has no artifact {absent[0]}")
        keys = [k for k in keys if k in wanted]
    known = _known_numbers(repo, config.name)
    local_data = local_version_data(repo)
    local_records = {d.digest(repo.algorithm): vid for vid, d in local_data.items()}
    # 1. claims we do not know yet
    claim_paths: dict[str, tuple[str, str, int]] = {}
    for project, name in keys:
        limit = wanted.get((project, name)) if wanted else None
        for number in sorted(listing.artifact(project, name).numbers):
            if limit is not None and number > limit:
                continue
            if known.get((project, name, number)) is None:
                claim_paths[number_path(project, name, number)] = (project, name, number)
    claims: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for path, body in remote.read_many(sorted(claim_paths)).items():
        project, name, number = claim_paths[path]
        claims.setdefault((project, name), []).append((number, parse_claim(body, repo.algorithm, path)))
    # 2. version records we do not have
    incoming: dict[tuple[str, str], list[_Incoming]] = {}
    record_paths: dict[str, tuple[str, str, int, str]] = {}
    for (project, name), pairs in claims.items():
        for number, record in sorted(pairs):
            if record in local_records:
                incoming.setdefault((project, name), []).append(_Incoming(number, record, None, local_records[record]))  # type: ignore[arg-type]
                continue
            if record not in listing.artifact(project, name).records:
                raise IntegrityError(
                    f"remote {config.name}: {project}/{name}:v{number} names a missing version record; the remote is damaged"
                )
            record_paths[record_path(project, name, record)] = (project, name, number, record)
    for path, body in remote.read_many(sorted(record_paths)).items():
        project, name, number, record = record_paths[path]
        data = parse_version(body, repo.algorithm, record, project, name)
        incoming.setdefault((project, name), []).append(_Incoming(number, record, data, None))
    # 3. manifest records we do not have, validated
    new_trees = fetch_trees(repo, remote, [i.data.manifest for items in incoming.values() for i in items if i.local_id is None])
    for items in incoming.values():
        for item in items:
            if item.local_id is None:
                check_totals(repo, new_trees, item.data, item.number)
    # 4. aliases of the selected artifacts
    # (only those that moved since we last saw them: the listing shows their latest move number)
    seen_seqs = {
        (r["project"], r["name"], r["alias"]): r["seq"]
        for r in repo.db.query("SELECT project, name, alias, seq FROM remote_aliases WHERE remote = ?", (config.name,))
    }
    alias_paths = {
        alias_path(p, n, a, seq): (p, n, a, seq)
        for p, n in keys
        for a, seq in sorted(listing.artifact(p, n).aliases.items())
        if seen_seqs.get((p, n, a)) != seq
    }
    remote_aliases: dict[tuple[str, str, str], tuple[str, int]] = {}
    for path, body in remote.read_many(sorted(alias_paths)).items():
        project, name, alias, seq = alias_paths[path]
        target = parse_alias(body, repo.algorithm, path)
        if target not in listing.artifact(project, name).records:  # a flipped digest must not quietly drop the alias
            raise IntegrityError(f"remote {config.name}: {path} names a version record the remote does not have; it is damaged")
        remote_aliases[(project, name, alias)] = (target, seq)
    # 5. run snapshots that beat what we have (of runs touching the selected artifacts), validated
    incoming_runs = read_runs(remote, repo.algorithm, runs_to_read(repo, listing, local_data))
    if wanted is not None:
        incoming_runs = [r for r in incoming_runs if touches(r, keys)]
    # 6. import everything in one transaction
    with repo.writing(), repo.db.transaction():
        result.records = repo.store_records(new_trees)
        for (project, name), items in sorted(incoming.items()):
            _import_artifact(repo, config.name, project, name, sorted(items, key=lambda i: i.number), result)
        _merge_aliases(repo, config.name, remote_aliases, result)
        if incoming_runs or (incoming and repo.db.scalar("SELECT 1 FROM run_pending_edges LIMIT 1")):
            apply_runs(repo, incoming_runs, version_identities(repo, local_version_data(repo)))
        result.runs = [r.id for r in incoming_runs]
    for change in result.renumbered:
        log.warning("the remote uses that number: %s", change)
    if objects:
        _pull_objects(repo, remote, keys, wanted, jobs, progress, result)
    return result


def _known_numbers(repo: Repository, remote_name: str) -> dict[tuple[str, str, int], int]:
    rows = repo.db.query(
        "SELECT a.project, a.name, v.number, v.id FROM remote_versions r JOIN versions v ON v.id = r.version_id "
        "JOIN artifacts a ON a.id = v.artifact_id WHERE r.remote = ?",
        (remote_name,),
    )
    return {(r["project"], r["name"], r["number"]): r["id"] for r in rows}


def fetch_trees(repo: Repository, remote: RemoteFS, roots: list[str]) -> dict[str, bytes]:
    """Every manifest record reachable from ``roots`` that the database lacks, each validated."""
    fetched: dict[str, bytes] = {}
    level = sorted(set(roots))
    while level:
        have = repo.db.existing("trees", "digest", level)
        need = [d for d in level if d not in have and d not in fetched]
        following: set[str] = set()
        paths = {tree_path(d): d for d in need}
        try:
            bodies = remote.read_many(sorted(paths))
        except FileNotFoundError as exc:
            raise IntegrityError(f"remote {remote.url} lacks a manifest record a version needs; the remote is damaged") from exc
        for path, body in bodies.items():
            digest = paths[path]
            nodes = parse_record(body, repo.algorithm, expected_digest=digest)
            fetched[digest] = body
            following.update(n.digest for n in nodes if n.type == DIR and n.digest is not None)
        level = sorted(following)
    return fetched


def check_totals(repo: Repository, new_trees: dict[str, bytes], data: VersionData, number: int) -> None:
    """Sizes and counts must add up, and every full path must be acceptable, before anything is stored."""
    cache: dict[str, tuple[int, int]] = {}

    def nodes_of(digest: str) -> list[Node]:
        body = new_trees.get(digest)
        return parse_record(body, repo.algorithm) if body is not None else repo.record(digest)

    def total(digest: str, prefix: str) -> tuple[int, int]:
        if digest in cache and not prefix:
            return cache[digest]
        size = count = 0
        for node in nodes_of(digest):
            path = prefix + node.name
            if len(path) > MAX_PATH_LENGTH:
                raise UnsafePathError(f"a path in {data.project}/{data.name} is longer than {MAX_PATH_LENGTH}; refused")
            if node.type == DIR:
                assert node.digest is not None
                sub_size, sub_count = total(node.digest, path + "/")
                if (sub_size, sub_count) != (node.size, node.count):
                    raise IntegrityError(f"manifest of {data.project}/{data.name}: sizes under {path} do not add up")
                size, count = size + sub_size, count + sub_count
            else:
                size, count = size + node.size, count + 1
        cache[digest] = (size, count)
        return size, count

    if total(data.manifest, "") != (data.size, data.files):
        raise IntegrityError(
            f"version record of {data.project}/{data.name}:v{number} disagrees with its manifest's size; refused"
        )


def _import_artifact(
    repo: Repository, remote_name: str, project: str, name: str, items: list[_Incoming], result: SyncResult
) -> None:
    first = next((i.data for i in items if i.data is not None), None)
    row = repo.db.one("SELECT id, type FROM artifacts WHERE project = ? AND name = ?", (project, name))
    if row is None:
        assert first is not None
        check_new_names(repo, project, name)
        artifact_id = int(
            repo.db.execute(
                "INSERT INTO artifacts (project, name, type, description, created_at) VALUES (?, ?, ?, '', ?)",
                (project, name, first.type, now()),
            ).lastrowid
            or 0
        )
    else:
        artifact_id = row["id"]
        if first is not None and first.type != row["type"]:
            raise ConflictError(
                f"artifact {project}/{name} is a {row['type']} here but a {first.type} on remote {remote_name}; "
                "nothing was pulled"
            )
    wanted: dict[int, int] = {}
    placeholder = -(10**12)  # below any temporary number renumber() uses (-id)
    for item in items:
        if item.local_id is None:
            data = item.data
            version_id = int(
                repo.db.execute(
                    "INSERT INTO versions (artifact_id, number, digest, size, file_count, description, metadata,"
                    " created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        artifact_id,
                        placeholder,
                        data.manifest,
                        data.size,
                        data.files,
                        data.description,
                        data.metadata,
                        data.created_at,
                        data.run_id,
                    ),
                ).lastrowid
                or 0
            )
            placeholder -= 1
            result.versions.append(f"{project}/{name}:v{item.number}")
        else:
            version_id = item.local_id
        wanted[version_id] = item.number
        repo.db.execute("INSERT OR IGNORE INTO remote_versions (remote, version_id) VALUES (?, ?)", (remote_name, version_id))
    for _version_id, old, new in renumber(repo, artifact_id, wanted):
        if old >= 0:
            result.renumbered.append(Renumbered(project, name, old, new))


def _merge_aliases(
    repo: Repository, remote_name: str, remote_aliases: dict[tuple[str, str, str], tuple[str, int]], result: SyncResult
) -> None:
    if not remote_aliases:
        return
    records = {d.digest(repo.algorithm): vid for vid, d in local_version_data(repo).items()}
    for (project, name, alias), (record, seq) in sorted(remote_aliases.items()):
        version_id = records.get(record)
        if version_id is None:
            continue  # its version was not pulled (not selected)
        art_id = repo.db.scalar("SELECT id FROM artifacts WHERE project = ? AND name = ?", (project, name))
        local_vid = repo.db.scalar("SELECT version_id FROM aliases WHERE artifact_id = ? AND alias = ?", (art_id, alias))
        seen = repo.db.scalar(
            "SELECT record FROM remote_aliases WHERE remote = ? AND project = ? AND name = ? AND alias = ?",
            (remote_name, project, name, alias),
        )
        local = next((d for d, v in records.items() if v == local_vid), None) if local_vid is not None else None
        if local is not None and local != record and local != seen:
            result.conflicts.append(
                f"alias {project}/{name}:{alias} moved both here and on remote {remote_name}; kept yours - "
                "'refstore push' now publishes yours, or set it to the remote's version to take theirs"
            )
        elif local != record:
            check_new_alias(repo, art_id, alias)
            repo.db.execute(
                "INSERT OR REPLACE INTO aliases (artifact_id, alias, version_id) VALUES (?, ?, ?)", (art_id, alias, version_id)
            )
            number = repo.db.scalar("SELECT number FROM versions WHERE id = ?", (version_id,))
            result.aliases.append(f"{project}/{name}:{alias} -> v{number}")
        repo.db.execute(
            "INSERT OR REPLACE INTO remote_aliases (remote, project, name, alias, record, seq) VALUES (?, ?, ?, ?, ?, ?)",
            (remote_name, project, name, alias, record, seq),
        )


def _pull_objects(
    repo: Repository,
    remote: RemoteFS,
    keys: list[tuple[str, str]],
    wanted: dict[tuple[str, str], int | None] | None,
    jobs: int,
    progress: Progress | None,
    result: SyncResult,
) -> None:
    roots: list[str] = []
    for project, name in keys:
        limit = wanted.get((project, name)) if wanted else None
        rows = repo.db.query(
            "SELECT v.digest, v.number FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
            "WHERE a.project = ? AND a.name = ?",
            (project, name),
        )
        roots.extend(r["digest"] for r in rows if limit is None or r["number"] <= limit)
    objects: dict[str, int] = {}
    seen: set[str] = set()
    while roots:
        digest = roots.pop()
        if digest in seen:
            continue
        seen.add(digest)
        for node in repo.record(digest):
            if node.type == DIR and node.digest is not None:
                roots.append(node.digest)
            elif node.type == FILE and node.digest is not None:
                objects[node.digest] = node.size  # download_objects skips cached ones (a listing per shard, not a stat each)
    result.objects, result.bytes = download_objects(repo, remote, sorted(objects.items()), jobs=jobs, progress=progress)
