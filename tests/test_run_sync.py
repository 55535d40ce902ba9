"""Runs on remotes: migration 0005_run_sync, the updated_at triggers, snapshot keys and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

import refstore
from refstore.core import db
from refstore.errors import IntegrityError
from refstore.services import maintenance  # noqa: F401  (bound to the real MIGRATIONS before the test patches them)
from refstore.services.remote_layout import RunKey, parse_listing, run_path
from refstore.services.remotes import local_version_data
from refstore.services.run_records import local_run_data, parse_run


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


def test_every_change_to_a_run_moves_updated_at_forward(store: refstore.Store) -> None:
    def stamp(run_id: str) -> str:
        return str(store.repo.db.scalar("SELECT updated_at FROM runs WHERE id = ?", (run_id,)))

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
    assert seen == sorted(seen) and len(seen[0]) == len(seen[-1]) == len("2026-01-01T00:00:00.000000Z")


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
        parse_run(finished.encode(), algorithm, run.id, RunKey(1, "2" * 20, key.digest))
    with pytest.raises(IntegrityError, match="another run"):
        parse_run(finished.encode(), algorithm, "someoneelse", key)
