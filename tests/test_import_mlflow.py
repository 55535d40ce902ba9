"""Importing from a real MLflow tracking store, created here by MLflow itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli
from test_import_store import snapshot

import refstore

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")


def make_runs(scratch: Path, uri: str, spec: str, artifact_root: Path | None = None) -> list[str]:
    """Create runs ``experiment:name:artifact-file`` (``-`` for none) with MLflow's own client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    scratch.mkdir(parents=True, exist_ok=True)
    ids = []
    for item in spec.split(","):
        exp_name, name, artifact = item.split(":", 2)
        exp = client.get_experiment_by_name(exp_name)
        location = (artifact_root / exp_name).as_uri() if artifact_root is not None else None
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(exp_name, artifact_location=location)
        run = client.create_run(exp_id, run_name=name, tags={"team": "vision", "mlflow.source.git.commit": "abc123"})
        run_id = run.info.run_id
        for key, value in {"lr": 0.01, "layers": 3, "opt": "adam"}.items():
            client.log_param(run_id, key, value)
        for step, loss in enumerate([1.0, 0.5, 0.25]):
            client.log_metric(run_id, "loss", loss, step=step)
        client.log_metric(run_id, "acc", 0.9)
        if artifact != "-":
            (scratch / "sub").mkdir(exist_ok=True)
            (scratch / artifact).write_text("model for " + name)
            (scratch / "sub" / "notes.txt").write_text("notes")
            client.log_artifact(run_id, str(scratch / artifact), artifact_path="model")
            client.log_artifact(run_id, str(scratch / "sub" / "notes.txt"), artifact_path="model/sub")
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def tracking(tmp_path: Path, workdir: Path) -> tuple[str, Path]:
    """A sqlite tracking URI (artifacts under mlruns/ beside it) with two runs in two experiments."""
    root = tmp_path / "mlflow"
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, root


def test_import_sqlite_store_incrementally(tracking: tuple[str, Path], store: refstore.Store, workdir: Path) -> None:
    uri, root = tracking
    first = make_runs(root.parent / "scratch", uri, "vision:cnn:w.bin,nlp:bert:-", root / "artifacts")
    before = snapshot(root)
    report = store.import_mlflow(uri, project="ml")
    assert report.failed == {} and len(report.imported) == 2
    assert snapshot(root) == before  # the source is only read

    (cnn,) = store.runs(filter={"name": "cnn"})
    assert cnn.project == "ml" and cnn.job_type == "mlflow" and cnn.status == "finished"
    assert cnn.config == {"lr": 0.01, "layers": 3, "opt": "adam"}  # params come back typed
    assert dict(cnn.summary) == {"loss": 0.25, "acc": 0.9}
    assert [(h["step"], h["value"]) for h in cnn.history(["loss"])] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert set(cnn.tags) == {"mlflow", "mlflow.experiment=vision", "team=vision"}
    assert cnn.record.git_commit == "abc123" and cnn.record.source == f"mlflow:{first[0]}"
    (model,) = cnn.logged()
    assert model.qualified_name == f"ml/mlflow-{first[0]}:v0" and model.type == "mlflow-run"
    assert sorted(e.path for e in model.files()) == ["model/sub/notes.txt", "model/w.bin"]
    target = model.download(workdir / "got")
    assert (target / "model" / "w.bin").read_text() == "model for cnn"
    (bert,) = store.runs(filter={"tags": "mlflow.experiment=nlp"})
    assert bert.logged() == []
    assert store.runs(filter={"summary.acc": {"$gt": 0.5}, "config.layers": 3}, order="name")[0].name == "bert"

    again = store.import_mlflow(uri, project="ml")
    assert again.imported == [] and again.updated == [] and again.skipped == 2

    make_runs(root.parent / "scratch", uri, "vision:cnn-2:-", root / "artifacts")
    third = store.import_mlflow(uri, project="ml", experiment="vision")
    assert len(third.imported) == 1 and third.skipped == 1
    assert sorted(r.name for r in store.runs()) == ["bert", "cnn", "cnn-2"]
    assert store.verify().problems == []


def test_failed_run_is_recorded_and_retried(tracking: tuple[str, Path], store: refstore.Store, workdir: Path) -> None:
    uri, root = tracking
    # a file name refstore refuses on every OS (a drive letter) makes this run's artifacts fail to import
    (bad_id, good_id) = make_runs(root.parent / "scratch", uri, "vision:bad:c:evil.txt,vision:good:ok.bin", root / "artifacts")
    report = store.import_mlflow(uri)
    assert list(report.failed) == [bad_id] and "drive letter" in report.failed[bad_id]
    assert len(report.imported) == 1
    rows = store.repo.db.query("SELECT item, status, error FROM import_progress ORDER BY status")
    assert [(r["item"], r["status"]) for r in rows] == [(f"run:{good_id}", "done"), (f"run:{bad_id}", "failed")]
    # the user fixes the file in the MLflow store; the next import retries only the failed run
    artifact_dir = next(root.rglob(f"{bad_id}/artifacts/model"))
    (artifact_dir / "c:evil.txt").rename(artifact_dir / "evil.txt")
    retry = store.import_mlflow(uri)
    assert retry.failed == {} and retry.skipped == 1 and len(retry.updated) == 1
    (bad,) = store.runs(filter={"name": "bad"})
    assert retry.updated == [bad.id]
    assert [e.path for e in bad.logged()[0].files()] == ["model/evil.txt", "model/sub/notes.txt"]
    assert len(store.runs()) == 2  # the retried run was updated in place, not duplicated


def test_file_store_and_cli(tmp_path: Path, workdir: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    mlruns = tmp_path / "mlruns"
    _, gone = make_runs(tmp_path / "scratch", mlruns.as_uri(), "default-exp:r1:m.txt,default-exp:gone:-")
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=mlruns.as_uri()).delete_run(gone)  # in MLflow's trash: not imported
    run_cli("init")
    out = json.loads(run_cli("import", "mlflow", "--tracking-uri", str(mlruns), "--no-artifacts", "--json").stdout)
    assert len(out["imported"]) == 1 and out["source"] == f"mlflow:{mlruns.as_uri()}"
    assert json.loads(run_cli("ls", "--json").stdout) == []  # --no-artifacts
    assert "unchanged 1" in run_cli("import", "mlflow", "--tracking-uri", str(mlruns), "--no-artifacts").stdout
    runs = json.loads(run_cli("runs", "--json").stdout)
    assert runs[0]["name"] == "r1" and runs[0]["summary"]["acc"] == 0.9
    missing = run_cli("import", "mlflow", "--tracking-uri", str(tmp_path / "nowhere"), expect=5)
    assert missing.stderr.startswith("refstore: error: no MLflow file store")
    run_cli("import", "mlflow", "--tracking-uri", str(mlruns), "--experiment", "nope", expect=5)
    run_cli("import", "mlflow", "--tracking-uri", str(mlruns), "--project", "bad project", expect=2)
    assert len(json.loads(run_cli("runs", "--json").stdout)) == 1
