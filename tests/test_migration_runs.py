"""A store created at format 1 (before runs) opens, migrates through 0003_runs, and keeps its data."""

from __future__ import annotations

from pathlib import Path

import pytest

import refstore
from refstore.core import db


def make_format_1_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:1])
        patch.setattr(db, "FORMAT_VERSION", 1)
        with refstore.init(root) as old:
            assert old.repo.db.format_version() == 1
            art = refstore.Artifact("mnist")
            with art.new_file("a.txt") as handle:
                handle.write("alpha")
            old.log_artifact(art, run_id="legacyrun0000001")


def test_format_1_store_migrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_format_1_store(tmp_path, monkeypatch)
    with refstore.open(tmp_path) as store:
        assert store.repo.db.format_version() == db.FORMAT_VERSION >= 2
        names = [r["name"] for r in store.repo.db.query("SELECT name FROM migrations ORDER BY name")]
        assert names == [name for name, _ in db.MIGRATIONS] and "0003_runs" in names
        assert (tmp_path / ".refstore" / "refstore.db.v1.bak").is_file()
        version = store.artifact("mnist:v0")
        assert version.record.run_id == "legacyrun0000001"
        assert store.runs() == []
        # a version logged with a run id that has no run row still shows up in lineage
        graph = store.lineage("mnist:v0", "upstream")
        assert {n.label for n in graph.nodes} == {"mnist:v0", "run legacyrun0000001"}
        with store.run(job_type="train") as run:
            run.use_artifact("mnist:v0")
        assert len(store.lineage("mnist:v0").nodes) == 2
