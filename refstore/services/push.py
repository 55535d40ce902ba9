"""``push``: send versions, their manifests and objects, and aliases to a remote.

Order matters for resuming after a crash: objects first, then manifest records
deepest first, then version records, then number claims, then run snapshots, then aliases. So a
manifest record on the remote implies its whole subtree and objects are there
(push skips such subtrees), and a claimed number always names a complete
version. One listing tells what is missing; a push of nothing new costs that
listing and one read of the marker file.

Version numbers: a version is claimed at the remote's next free number with an
exclusive create. When another store claimed that number first, the version
takes the next one and the local version is renumbered to agree (and the
result says so), as git refuses a non-fast-forward and makes you rebase.
Pushing ``name:vN`` pushes every version of ``name`` up to vN that the remote
lacks, so numbers keep their order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from refstore.core.remotefs import RemoteFS
from refstore.core.repo import Repository
from refstore.core.tree import DIR, FILE
from refstore.errors import IntegrityError, NotFoundError
from refstore.services.remote_layout import (
    Listing,
    VersionData,
    alias_body,
    alias_path,
    number_path,
    parse_alias,
    parse_claim,
    record_path,
    tree_path,
)
from refstore.services.remotes import local_version_data
from refstore.services.run_sync import push_runs
from refstore.services.sync_common import (
    Renumbered,
    SyncResult,
    chosen_version_ids,
    open_remote,
    read_listing,
    renumber,
    selection,
)
from refstore.services.transfer import Progress, upload_objects

log = logging.getLogger(__name__)
TREE_BATCH = 256


@dataclass
class _Pending:
    version_id: int
    artifact_id: int
    number: int
    data: VersionData
    record: str  # digest of the version record


def push(
    repo: Repository,
    remote_name: str | None = None,
    specs: Sequence[str] = (),
    *,
    jobs: int = 8,
    progress: Progress | None = None,
) -> SyncResult:
    config, remote = open_remote(repo, remote_name)
    result = SyncResult(config.name, config.url)
    wanted = selection(specs, repo.default_project)
    for project, name in wanted or ():
        if repo.db.scalar("SELECT 1 FROM artifacts WHERE project = ? AND name = ?", (project, name)) is None:
            raise NotFoundError(f"no artifact {project}/{name} in this store; see 'refstore ls'")
    listing = read_listing(repo, remote, create=True)
    stale = remote.remove_stale_parts()
    if stale:
        log.info("removed %d stale temporary file(s) from %s/tmp", stale, remote.url)
    with repo.writing():  # gc waits: the objects being sent stay in the cache
        _push_versions(repo, config.name, remote, listing, wanted, jobs, progress, result)
    push_runs(repo, remote, listing, local_version_data(repo), chosen_version_ids(repo, wanted), result)
    _push_aliases(repo, config.name, remote, listing, wanted, result)
    return result


def _push_versions(
    repo: Repository,
    remote_name: str,
    remote: RemoteFS,
    listing: Listing,
    wanted: dict[tuple[str, str], int | None] | None,
    jobs: int,
    progress: Progress | None,
    result: SyncResult,
) -> None:
    pending = _pending_versions(repo, remote_name, listing, wanted)
    if pending:
        trees, objects = _missing_content(repo, listing, pending)
        gone = repo.cache.missing(d for d, _ in objects)  # in bulk: digests from our own validated records
        absent = [d for d, _ in objects if d in gone]
        if absent:
            raise NotFoundError(
                f"{len(absent)} object(s) of the versions to push are neither in the cache nor on remote {remote_name} "
                f"(first {absent[0]}); pull them with 'refstore pull --objects' from where they are"
            )
        result.objects, result.bytes = upload_objects(repo, remote, objects, jobs=jobs, progress=progress)
        for depth_group in trees:
            for start in range(0, len(depth_group), TREE_BATCH):
                chunk = depth_group[start : start + TREE_BATCH]
                bodies = _tree_bodies(repo, chunk)
                remote.write_many({tree_path(d): bodies[d] for d in chunk})
                result.records += len(chunk)
        remote.write_many(
            {
                record_path(p.data.project, p.data.name, p.record): p.data.encode()
                for p in pending
                if p.record not in listing.artifact(p.data.project, p.data.name).records
            }
        )
        _claim_numbers(repo, remote_name, remote, listing, pending, result)


def _pending_versions(
    repo: Repository, remote_name: str, listing: Listing, wanted: dict[tuple[str, str], int | None] | None
) -> list[_Pending]:
    """Local versions the remote lacks, per artifact in number order."""
    rows = repo.db.query(
        "SELECT v.id, v.artifact_id, v.number, a.project, a.name, "
        "EXISTS (SELECT 1 FROM remote_versions r WHERE r.version_id = v.id AND r.remote = ?) AS known "
        "FROM versions v JOIN artifacts a ON a.id = v.artifact_id ORDER BY a.project, a.name, v.number",
        (remote_name,),
    )

    def chosen(row: dict[str, object]) -> bool:
        if wanted is None:
            return True
        key = (str(row["project"]), str(row["name"]))
        if key not in wanted:
            return False
        limit = wanted[key]
        return limit is None or int(row["number"]) <= limit  # type: ignore[call-overload]

    selected = [r for r in rows if chosen(r)]
    data = local_version_data(repo, [r["id"] for r in selected])
    pending: list[_Pending] = []
    for row in selected:
        item = data[row["id"]]
        digest = item.digest(repo.algorithm)
        on_remote = digest in listing.artifact(row["project"], row["name"]).records
        if row["known"] and on_remote:
            continue
        pending.append(_Pending(row["id"], row["artifact_id"], row["number"], item, digest))
    return pending


def _missing_content(
    repo: Repository, listing: Listing, pending: list[_Pending]
) -> tuple[list[list[str]], list[tuple[str, int]]]:
    """Manifest records (grouped deepest first) and objects the remote lacks.

    A record already on the remote is skipped with its whole subtree.
    """
    by_depth: dict[int, list[str]] = {}
    objects: dict[str, int] = {}
    seen: set[str] = set()
    stack = [(p.data.manifest, 0) for p in pending]
    while stack:
        digest, depth = stack.pop()
        if digest in seen or digest in listing.trees:
            continue
        seen.add(digest)
        by_depth.setdefault(depth, []).append(digest)
        for node in repo.record(digest):
            assert node.digest is not None or node.type not in (DIR, FILE)
            if node.type == DIR and node.digest is not None:
                stack.append((node.digest, depth + 1))
            elif node.type == FILE and node.digest is not None and node.digest not in listing.objects:
                objects[node.digest] = node.size
    groups = [sorted(by_depth[d]) for d in sorted(by_depth, reverse=True)]
    return groups, sorted(objects.items())


def _tree_bodies(repo: Repository, digests: list[str]) -> dict[str, bytes]:
    marks = ",".join("?" * len(digests))
    rows = repo.db.execute(f"SELECT digest, body FROM trees WHERE digest IN ({marks})", digests).fetchall()
    bodies = {row[0]: bytes(row[1]) for row in rows}
    if len(bodies) != len(digests):
        raise IntegrityError("a manifest record is missing from the database; run 'refstore verify'")
    return bodies


def _claim_numbers(
    repo: Repository, remote_name: str, remote: RemoteFS, listing: Listing, pending: list[_Pending], result: SyncResult
) -> None:
    by_artifact: dict[tuple[str, str], list[_Pending]] = {}
    for item in pending:
        by_artifact.setdefault((item.data.project, item.data.name), []).append(item)
    assigned: dict[int, int] = {}
    for (project, name), items in by_artifact.items():
        info = listing.artifact(project, name)
        claimed: dict[str, int] = {}
        if any(i.record in info.records for i in items) and info.numbers:
            # A record we wrote before (an interrupted push): find whether it already has its number.
            paths = {number_path(project, name, n): n for n in sorted(info.numbers)}
            for path, body in remote.read_many(list(paths)).items():
                claimed[parse_claim(body, repo.algorithm, path)] = paths[path]
        following = max(info.numbers, default=-1) + 1
        for item in items:
            if item.record in claimed:
                assigned[item.version_id] = claimed[item.record]
                continue
            while True:
                path = number_path(project, name, following)
                if remote.create(path, item.record.encode()):
                    break
                if parse_claim(remote.read(path), repo.algorithm, path) == item.record:
                    break
                following += 1
            assigned[item.version_id] = following
            info.numbers.add(following)
            following += 1
    with repo.db.transaction():
        for (project, name), items in by_artifact.items():
            artifact_id = items[0].artifact_id
            changes = renumber(repo, artifact_id, {i.version_id: assigned[i.version_id] for i in items})
            for _, old, new in changes:
                result.renumbered.append(Renumbered(project, name, old, new))
            for item in items:
                repo.db.execute(
                    "INSERT OR IGNORE INTO remote_versions (remote, version_id) VALUES (?, ?)", (remote_name, item.version_id)
                )
                result.versions.append(f"{project}/{name}:v{assigned[item.version_id]}")
    for change in result.renumbered:
        log.warning("another store pushed first: %s", change)


def _push_aliases(
    repo: Repository,
    remote_name: str,
    remote: RemoteFS,
    listing: Listing,
    wanted: dict[tuple[str, str], int | None] | None,
    result: SyncResult,
) -> None:
    """Push aliases that moved locally since we last saw the remote; report the ones that moved there too.

    A move is the exclusive creation of the alias's next move file, ``seq`` = the
    one we last saw + 1: if another store moved the alias in between, that file
    (or a later one) exists, and the move is reported instead of applied.
    """
    rows = repo.db.query(
        "SELECT a.project, a.name, al.alias, al.version_id, v.number, s.record AS seen, s.seq AS seen_seq "
        "FROM aliases al JOIN artifacts a ON a.id = al.artifact_id JOIN versions v ON v.id = al.version_id "
        "JOIN remote_versions rv ON rv.version_id = v.id AND rv.remote = ? "
        "LEFT JOIN remote_aliases s ON s.remote = ? AND s.project = a.project AND s.name = a.name AND s.alias = al.alias "
        "ORDER BY a.project, a.name, al.alias",
        (remote_name, remote_name),
    )
    rows = [r for r in rows if wanted is None or (r["project"], r["name"]) in wanted]
    if not rows:
        return
    data = local_version_data(repo, [r["version_id"] for r in rows])
    updates: list[tuple[str, str, str, str, int]] = []
    for row in rows:
        project, name, alias = row["project"], row["name"], row["alias"]
        local = data[row["version_id"]].digest(repo.algorithm)
        if local == row["seen"]:
            continue
        seen_seq = -1 if row["seen_seq"] is None else int(row["seen_seq"])
        latest_seq = listing.artifact(project, name).aliases.get(alias, -1)
        seq = max(seen_seq, latest_seq)
        if latest_seq <= seen_seq:
            seq = seen_seq + 1
            path = alias_path(project, name, alias, seq)
            if remote.create(path, alias_body(local, row["number"])):
                current = local
            else:
                current = parse_alias(remote.read(path), repo.algorithm, path)
        else:
            path = alias_path(project, name, alias, latest_seq)
            current = parse_alias(remote.read(path), repo.algorithm, path)
        if current != local:
            result.conflicts.append(
                f"alias {project}/{name}:{alias} was moved on remote {remote_name} by another store; "
                f"kept the remote's - pull, then set it again if yours should win"
            )
            continue
        updates.append((project, name, alias, local, seq))
        result.aliases.append(f"{project}/{name}:{alias} -> v{row['number']}")
    if updates:
        with repo.db.transaction():
            repo.db.conn.executemany(
                "INSERT OR REPLACE INTO remote_aliases (remote, project, name, alias, record, seq) VALUES (?, ?, ?, ?, ?, ?)",
                [(remote_name, *u) for u in updates],
            )
