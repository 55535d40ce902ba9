"""Runs on remotes: migration 0005_run_sync, the updated_at triggers, snapshot keys and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refstore
from refstore.core import db
from refstore.errors import IntegrityError
from refstore.services import maintenance  # noqa: F401  (bound to the real MIGRATIONS before the test patches them)
from refstore.services.remote_layout import RunKey, parse_listing, run_path
from refstore.services.remotes import local_version_data
from refstore.services.run_records import local_run_data, parse_run
from refstore.services.run_sync import apply_runs


def test_format_4_store_with_runs_migrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:4])
        patch.setattr(db, "FORMAT_VERSION", 4)
        with refstore.init(tmp_path) as old:
            assert old.repo.db.format_version() == 4
            with old.run(job_type="train") as run:
                run.log({"loss": 0.5})
            finished_at = old.get_run(run.id).as_dict()["finished_at"]
    with refstore.open(tmp_path) as store:
        assert store.repo.db.format_version() == db.FORMAT_VERSION >= 5
        assert (tmp_path / ".refstore" / "refstore.db.v4.bak").is_file()
        # an existing run's last change is taken to be its end
        assert store.repo.db.scalar("SELECT updated_at FROM runs WHERE id = ?", (run.id,)) == finished_at
        assert store.get_run(run.id).history()[0]["value"] == 0.5
        assert store.verify().ok


def test_every_change_to_a_run_moves_its_revision_and_time_forward(store: refstore.Store) -> None:
    def stamp(run_id: str) -> tuple[int, str]:
        row = store.repo.db.one("SELECT revision, updated_at FROM runs WHERE id = ?", (run_id,))
        assert row is not None
        return row["revision"], row["updated_at"]

    run = store.run(job_type="train").__enter__()
    seen = [stamp(run.id)]
    for change in (
        lambda: run.summary.__setitem__("acc", 1),
        lambda: run.log({"loss": 1.0}),
        lambda: run.tag("x"),
        lambda: run.finish(),
    ):
        change()
        seen.append(stamp(run.id))
    revisions, times = [r for r, _ in seen], [t for _, t in seen]
    assert revisions == sorted(set(revisions))  # strictly increasing: each change counts
    assert times == sorted(times) and len(times[0]) == len(times[-1]) == len("2026-01-01T00:00:00.000000Z")


def test_snapshot_key_ranks_finished_over_running_and_parses_back(store: refstore.Store) -> None:
    with store.run(job_type="train", config={"lr": 0.1}) as run:
        run.log({"loss": float("inf")})
        running = local_run_data(store.repo, local_version_data(store.repo))[run.id]
    finished = local_run_data(store.repo, local_version_data(store.repo))[run.id]
    algorithm = store.repo.algorithm
    assert running.key(algorithm).rank == 0 and finished.key(algorithm).rank == 1
    assert finished.key(algorithm) > running.key(algorithm)
    key = finished.key(algorithm)
    assert parse_run(finished.encode(), algorithm, run.id, key) == finished
    listing = parse_listing({run_path(run.id, key), f"runs/{run.id}/junk.json", "runs/../x/1-0-0.json"}, algorithm)
    assert listing.runs == {run.id: {key}}
    with pytest.raises(IntegrityError, match="file name"):  # a name that claims a later time than the body
        parse_run(finished.encode(), algorithm, run.id, RunKey(1, key.revision, "2" * 20, key.digest))
    with pytest.raises(IntegrityError, match="file name"):  # ... or a higher revision
        parse_run(finished.encode(), algorithm, run.id, RunKey(1, key.revision + 1, key.stamp, key.digest))
    with pytest.raises(IntegrityError, match="another run"):
        parse_run(finished.encode(), algorithm, "someoneelse", key)


FIELDS = {
    "format",
    "id",
    "project",
    "name",
    "job_type",
    "status",
    "config",
    "summary",
    "tags",
    "created_at",
    "finished_at",
    "updated_at",
    "revision",
    "git_commit",
    "git_dirty",
    "command",
    "host",
    "pid",
    "source",
    "history",
    "inputs",
    "outputs",
}

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.just(10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(FIELDS)), value=_JSON)
def test_any_field_replaced_is_accepted_whole_or_refused_with_an_integrity_error(
    store: refstore.Store, field: str, value: object
) -> None:
    """A well-hashed, canonical snapshot with any field replaced by any JSON value: valid or IntegrityError, nothing else."""
    import json

    from refstore.core import hashing
    from refstore.services.run_records import rank_of, stamp_of

    if not store.runs():
        with store.run(job_type="train", config={"a": 1}, tags=["t"]) as run:
            run.log({"loss": 0.5})
    run_id = store.runs()[0].id
    data = local_run_data(store.repo, local_version_data(store.repo))[run_id]
    raw = json.loads(data.encode())
    raw[field] = value
    body = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    status = raw["status"] if isinstance(raw.get("status"), str) else "running"
    stamp = stamp_of(raw["updated_at"]) if isinstance(raw.get("updated_at"), str) else "0" * 20
    revision = raw["revision"] if isinstance(raw.get("revision"), int) else 0
    key = RunKey(rank_of(status), revision, stamp, hashing.hash_bytes(body, store.repo.algorithm))
    try:
        parsed = parse_run(body, store.repo.algorithm, run_id, key)
    except IntegrityError:
        return
    assert parsed.encode() == body
    with store.repo.db.transaction():  # what is accepted can be stored
        apply_runs(store.repo, [parsed], {})


def _art(name: str, text: str) -> refstore.Artifact:
    art = refstore.Artifact(name)
    with art.new_file("f") as handle:
        handle.write(text)
    return art


def test_rm_keeps_a_pushed_runs_record_whole_and_pull_reconnects_it(store: refstore.Store, tmp_path: Path) -> None:
    store.add_remote("origin", str(tmp_path / "remote"))
    store.log_artifact(_art("raw", "raw"))
    with store.run(job_type="train") as run:
        run.use_artifact("raw:v0")
        run.log_artifact(_art("model", "weights"))
    assert store.push().runs == [run.id]
    before = store.repo.db.one("SELECT revision, updated_at FROM runs WHERE id = ?", (run.id,))
    store.delete("raw:v0")
    store.delete("model:v0")
    assert store.get_run(run.id).used() == [] and store.get_run(run.id).logged() == []
    assert store.repo.db.one("SELECT revision, updated_at FROM runs WHERE id = ?", (run.id,)) == before
    assert store.push().runs == []  # the run did not change: its record on the remote keeps both edges
    assert sorted(store.pull().versions) == ["default/model:v0", "default/raw:v0"]  # the remote is append-only
    assert [v.qualified_name for v in store.get_run(run.id).used()] == ["default/raw:v0"]
    assert [v.qualified_name for v in store.get_run(run.id).logged()] == ["default/model:v0"]
    assert store.repo.db.scalar("SELECT COUNT(*) FROM run_pending_edges") == 0
    assert store.push().runs == []


def test_logging_an_output_is_a_change_to_the_run(store: refstore.Store) -> None:
    run = store.run(job_type="train").__enter__()
    revision = store.repo.db.scalar("SELECT revision FROM runs WHERE id = ?", (run.id,))
    run.log_artifact(_art("model", "weights"))
    assert store.repo.db.scalar("SELECT revision FROM runs WHERE id = ?", (run.id,)) == revision + 1
