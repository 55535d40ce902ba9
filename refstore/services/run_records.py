"""Run records on a remote: immutable snapshots of a run's whole state.

A run changes after it is pushed (it finishes, its summary or tags change), but
files on a remote are never rewritten. So each push of a changed run writes a new
*snapshot*, ``runs/<run id>/<rank>-<revision>-<stamp>-<digest>.json``, and readers
take the highest :class:`RunKey` (finished/failed over running, then the higher
revision, then the later ``updated_at``, then the digest). The file name carries the key, so one listing
tells every store which snapshot wins without reading any of them; the body must
agree with its name and hash to its digest, or it is refused.

A snapshot carries everything the run has — including its metrics history and
its lineage edges by *identity*: each input and output version as
``{"project", "name", "version": <version record digest>}``, the same digest
that names the version's record on the remote. Identities survive renumbering
and mean the same in every store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from refstore.core import hashing
from refstore.core.names import check_name
from refstore.core.repo import Repository, dumps_json
from refstore.errors import IntegrityError, UsageError
from refstore.services.remote_layout import FORMAT, RUN_ID, RunKey, VersionData
from refstore.services.runs import STATUSES, check_tags

Identity = tuple[str, str, str]  # (project, name, version record digest)
Metric = tuple[str, int, float | None, str]  # (key, step, value, logged_at)
_MAX_INT = 2**63  # SQLite INTEGER
_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class RunData:
    """One run as it travels to and from a remote."""

    id: str
    project: str
    name: str
    job_type: str
    status: str
    config: str  # canonical JSON text of an object
    summary: str  # canonical JSON text of an object
    tags: tuple[str, ...]
    created_at: str
    finished_at: str | None
    updated_at: str
    revision: int
    git_commit: str | None
    git_dirty: bool | None
    command: str | None
    host: str | None
    pid: int | None
    source: str | None
    history: tuple[Metric, ...]
    inputs: tuple[Identity, ...]
    outputs: tuple[Identity, ...]

    def encode(self) -> bytes:
        return dumps_json(
            {
                "format": FORMAT,
                "id": self.id,
                "project": self.project,
                "name": self.name,
                "job_type": self.job_type,
                "status": self.status,
                "config": json.loads(self.config),
                "summary": json.loads(self.summary),
                "tags": list(self.tags),
                "created_at": self.created_at,
                "finished_at": self.finished_at,
                "updated_at": self.updated_at,
                "revision": self.revision,
                "git_commit": self.git_commit,
                "git_dirty": self.git_dirty,
                "command": self.command,
                "host": self.host,
                "pid": self.pid,
                "source": self.source,
                "history": [[k, s, _encode_value(v), t] for k, s, v, t in self.history],
                "inputs": [_identity_json(i) for i in self.inputs],
                "outputs": [_identity_json(i) for i in self.outputs],
            }
        ).encode()

    def key(self, algorithm: str) -> RunKey:
        digest = hashing.hash_bytes(self.encode(), algorithm)
        return RunKey(rank_of(self.status), self.revision, stamp_of(self.updated_at), digest)


def rank_of(status: str) -> int:
    """Runs only move forward: running (0) → finished or failed (1)."""
    return 0 if status == "running" else 1


def stamp_of(timestamp: str) -> str:
    """The digits of a timestamp, as 20 characters (YYYYMMDDhhmmss + microseconds), for file names."""
    digits = "".join(c for c in timestamp if c.isascii() and c.isdigit())
    return (digits + "0" * 20)[:20]


def _encode_value(value: float | None) -> float | str | None:
    if value is not None and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _identity_json(identity: Identity) -> dict[str, str]:
    return {"project": identity[0], "name": identity[1], "version": identity[2]}


# -- local runs as records ------------------------------------------------------
def local_run_data(repo: Repository, records: dict[int, VersionData], run_ids: Sequence[str] | None = None) -> dict[str, RunData]:
    """run id → its snapshot as it would be pushed now. ``records``: version id → its record (all versions)."""
    algorithm = repo.algorithm
    identity = {vid: (d.project, d.name, d.digest(algorithm)) for vid, d in records.items()}
    rows = repo.db.query(
        "SELECT id, project, name, job_type, status, config, summary, created_at, finished_at, updated_at, revision,"
        " git_commit, git_dirty, command, host, pid, source FROM runs ORDER BY id"
    )
    wanted = set(run_ids) if run_ids is not None else None
    rows = [r for r in rows if wanted is None or r["id"] in wanted]
    if not rows:
        return {}
    tags: dict[str, list[str]] = {}
    for run_id, tag in repo.db.execute("SELECT run_id, tag FROM run_tags ORDER BY run_id, tag"):
        tags.setdefault(run_id, []).append(tag)
    history: dict[str, list[Metric]] = {}
    for run_id, key, step, value, logged_at in repo.db.execute(
        "SELECT run_id, key, step, value, logged_at FROM run_metrics ORDER BY run_id, key, step, rowid"
    ):
        history.setdefault(run_id, []).append((key, step, value, logged_at))
    inputs: dict[str, set[Identity]] = {}
    for run_id, version_id in repo.db.execute("SELECT run_id, version_id FROM run_inputs"):
        if version_id in identity:
            inputs.setdefault(run_id, set()).add(identity[version_id])
    outputs: dict[str, set[Identity]] = {}
    for version_id, run_id in repo.db.execute("SELECT id, run_id FROM versions WHERE run_id IS NOT NULL"):
        outputs.setdefault(run_id, set()).add(identity[version_id])
    for run_id, kind, project, name, record in repo.db.execute(
        "SELECT run_id, kind, project, name, record FROM run_pending_edges"
    ):
        (inputs if kind == "input" else outputs).setdefault(run_id, set()).add((project, name, record))
    result: dict[str, RunData] = {}
    for row in rows:
        run_id = row["id"]
        result[run_id] = RunData(
            id=run_id,
            project=row["project"],
            name=row["name"],
            job_type=row["job_type"],
            status=row["status"],
            config=dumps_json(json.loads(row["config"])),
            summary=dumps_json(json.loads(row["summary"])),
            tags=tuple(tags.get(run_id, ())),
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"] or row["finished_at"] or row["created_at"],
            revision=row["revision"],
            git_commit=row["git_commit"],
            git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]),
            command=row["command"],
            host=row["host"],
            pid=row["pid"],
            source=row["source"],
            history=tuple(history.get(run_id, ())),
            inputs=tuple(sorted(inputs.get(run_id, ()))),
            outputs=tuple(sorted(outputs.get(run_id, ()))),
        )
    return result


# -- validation of untrusted snapshots -------------------------------------------
def parse_run(body: bytes, algorithm: str, run_id: str, key: RunKey) -> RunData:
    """Validate an untrusted run snapshot: its digest, its name, every field, canonical form."""
    where = f"run record {run_id}/{key.digest}"
    actual = hashing.hash_bytes(body, algorithm)
    if actual != key.digest:
        raise IntegrityError(f"{where} is corrupt (hashes to {actual}); the remote is damaged", expected=key.digest, got=actual)
    try:
        raw = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where} is not valid JSON; the remote is damaged") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IntegrityError(f"{where} has an unknown format; upgrade refstore or repair the remote")

    def bad(what: str) -> IntegrityError:
        return IntegrityError(f"{where} has an invalid {what}; the remote is damaged")

    def text(key_: str, *, optional: bool = False, limit: int = 100_000) -> Any:
        value = raw.get(key_)
        if value is None and optional and key_ in raw:
            return None
        if not isinstance(value, str) or len(value) > limit or "\x00" in value:
            raise bad(repr(key_))
        return value

    if text("id") != run_id or not RUN_ID.fullmatch(run_id):
        raise IntegrityError(f"{where} names another run; the remote is damaged")
    project = text("project")
    job_type = text("job_type")
    try:
        check_name(project, "project")
        if job_type:
            check_name(job_type, "job type")
    except UsageError as exc:
        raise bad("project or job type") from exc
    name = text("name", limit=256)
    if not name.strip():
        raise bad("'name'")
    status = text("status")
    if status not in STATUSES:
        raise bad("'status'")
    for obj in ("config", "summary"):
        if not isinstance(raw.get(obj), dict):
            raise bad(repr(obj))
    tags = raw.get("tags")
    if not isinstance(tags, list) or tags != sorted(set(tags) if all(isinstance(t, str) for t in tags) else []):
        raise bad("'tags'")
    try:
        check_tags(tags)
    except UsageError as exc:
        raise bad("'tags'") from exc
    dirty = raw.get("git_dirty")
    pid = raw.get("pid")
    if dirty is not None and not isinstance(dirty, bool):
        raise bad("'git_dirty'")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < _MAX_INT):
        raise bad("'pid'")
    revision = raw.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or not 0 <= revision < 10**18:
        raise bad("'revision'")
    data = RunData(
        id=run_id,
        project=project,
        name=name,
        job_type=job_type,
        status=status,
        config=dumps_json(raw["config"]),
        summary=dumps_json(raw["summary"]),
        tags=tuple(tags),
        created_at=text("created_at", limit=64),
        finished_at=text("finished_at", optional=True, limit=64),
        updated_at=text("updated_at", limit=64),
        revision=revision,
        git_commit=text("git_commit", optional=True, limit=256),
        git_dirty=dirty,
        command=text("command", optional=True),
        host=text("host", optional=True, limit=256),
        pid=pid,
        source=text("source", optional=True, limit=1024),
        history=_parse_history(raw.get("history"), bad),
        inputs=_parse_identities(raw.get("inputs"), algorithm, bad, "inputs"),
        outputs=_parse_identities(raw.get("outputs"), algorithm, bad, "outputs"),
    )
    if (rank_of(data.status), data.revision, stamp_of(data.updated_at)) != (key.rank, key.revision, key.stamp):
        raise IntegrityError(f"{where} disagrees with its file name (status, revision or time); the remote is damaged")
    if data.encode() != body:
        raise IntegrityError(f"{where} is not in canonical form; the remote is damaged")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_history(value: Any, bad: Any) -> tuple[Metric, ...]:
    if not isinstance(value, list):
        raise bad("'history'")
    result: list[Metric] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 4):
            raise bad("'history' row")
        key, step, number, logged_at = item
        if not isinstance(key, str) or not key or len(key) > 256 or not isinstance(logged_at, str) or len(logged_at) > 64:
            raise bad("'history' row")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < _MAX_INT:
            raise bad("'history' step")
        if isinstance(number, str) and number in _NON_FINITE:
            number = _NON_FINITE[number]
        elif number is not None and (not isinstance(number, (int, float)) or isinstance(number, bool)):
            raise bad("'history' value")
        try:
            value = None if number is None else float(number)
        except OverflowError as exc:
            raise bad("'history' value") from exc
        result.append((key, step, value, logged_at))
    if result != sorted(result, key=lambda m: (m[0], m[1])):
        raise bad("'history' order")
    return tuple(result)


def _parse_identities(value: Any, algorithm: str, bad: Any, what: str) -> tuple[Identity, ...]:
    if not isinstance(value, list):
        raise bad(repr(what))
    result: list[Identity] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"project", "name", "version"}:
            raise bad(f"{what!r} entry")
        project, name, record = item["project"], item["name"], item["version"]
        try:
            check_name(project, "project")
            check_name(name, "artifact name")
        except UsageError as exc:
            raise bad(f"{what!r} entry") from exc
        if not isinstance(record, str) or not hashing.is_digest(record, algorithm):
            raise bad(f"{what!r} version digest")
        result.append((project, name, record))
    if result != sorted(set(result)):
        raise bad(f"{what!r} order")
    return tuple(result)
