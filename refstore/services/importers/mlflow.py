"""Import runs from an MLflow tracking store (file store or database URI), read-only.

Mapping: an MLflow run becomes a refstore run (``job_type`` ``mlflow``, source
``mlflow:<run id>``): params → config (values that read as JSON numbers or
booleans become numbers/booleans; MLflow stores every param as a string),
latest metrics → summary, full metric histories → history, user tags →
tags ``key=value`` (plus ``mlflow`` and ``mlflow.experiment=<name>``), MLflow's
git-commit and source-name tags → ``git_commit`` and ``command``. The run's
logged artifacts are downloaded and stored as artifact ``mlflow-<run id>``
(type ``mlflow-run``), logged by the run, so lineage links them.

Deleted MLflow runs (in MLflow's trash) are not imported.

Incremental: one progress item per MLflow run, fingerprinted by its status,
end time, params, latest metrics and tags. A run whose fingerprint is
unchanged is skipped; a changed one (e.g. still running last time) is
updated in place; a failed one is retried. The source is only read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refstore.core.names import check_name
from refstore.core.repo import Repository
from refstore.errors import BackendError, NotFoundError, RefstoreError, UsageError
from refstore.services.importers.common import log_directory, upsert_run
from refstore.services.importers.progress import ImportReport, Tracker, fingerprint
from refstore.services.runs import new_run_id

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed", "RUNNING": "running", "SCHEDULED": "running"}
_PAGE = 500


def normalize_uri(tracking_uri: str) -> str:
    """A plain path becomes an absolute ``file://`` URI (so the progress key does not depend on the cwd)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", tracking_uri) or tracking_uri.startswith("sqlite:"):
        return tracking_uri
    return Path(tracking_uri).absolute().as_uri()


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise UsageError("importing from MLflow needs mlflow; install it with 'pip install mlflow-skinny'") from exc
    # MLflow draws its own download progress bar on stderr; the library layer must stay quiet.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri.startswith("file:"):
        path = tracking_uri[len("file://") :] if tracking_uri.startswith("file://") else tracking_uri[len("file:") :]
        if not Path(path).is_dir():
            raise NotFoundError(f"no MLflow file store at {path}; check --tracking-uri")
        # MLflow 3 refuses file stores unless told; reading one is all we do.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis * 1000:06d}Z"


def param_value(text: str) -> Any:
    """``"0.01"`` → 0.01, ``"true"`` → True, anything else stays a string."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return text
    if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
        return value
    return text


def _summary_value(value: float) -> Any:
    return value if math.isfinite(value) else ("NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity"))


def _experiments(client: Any, name: str | None) -> list[Any]:
    if name is not None:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise NotFoundError(f"MLflow has no experiment {name!r}; leave out --experiment to import all of them")
        return [found]
    return list(client.search_experiments())


def _runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    result: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_PAGE,
            page_token=token,
            order_by=["attributes.start_time ASC"],
        )
        result.extend(page)
        token = page.token
        if not token:
            return result


def _has_artifacts(client: Any, run_id: str) -> bool:
    return bool(client.list_artifacts(run_id))


def _import_run(
    repo: Repository, client: Any, tracker: Tracker, run: Any, experiment: Any, project: str, artifacts: bool
) -> tuple[str, bool]:
    """Import one MLflow run; returns (refstore run id, whether it existed before)."""
    info, data = run.info, run.data
    item = f"run:{info.run_id}"
    previous = tracker.target(item)
    run_id = previous or new_run_id()
    user_tags = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
    tags = ["mlflow", f"mlflow.experiment={experiment.name}", *(f"{k}={v}" for k, v in sorted(user_tags.items()))]
    history: list[tuple[str, int, float | None, str]] = []
    for key in sorted(data.metrics):
        for metric in client.get_metric_history(info.run_id, key):
            value = None if math.isnan(metric.value) else float(metric.value)
            history.append((key, int(metric.step), value, _iso(metric.timestamp) or ""))
    command = data.tags.get("mlflow.source.name")
    row = {
        "id": run_id,
        "project": project,
        "name": info.run_name or data.tags.get("mlflow.runName") or info.run_id,
        "job_type": "mlflow",
        "status": _STATUS.get(info.status, "failed"),
        "config": {k: param_value(v) for k, v in data.params.items()},
        "summary": {k: _summary_value(v) for k, v in data.metrics.items()},
        "created_at": _iso(info.start_time) or "",
        "finished_at": _iso(info.end_time),
        "git_commit": data.tags.get("mlflow.source.git.commit"),
        "git_dirty": None,
        "command": command,
        "host": None,
        "pid": None,
        "source": f"mlflow:{info.run_id}",
    }
    with repo.db.transaction():
        upsert_run(repo, row, tags, history)
    # The run row exists from here on, so a failure below keeps its id for the retry.
    try:
        if artifacts and _has_artifacts(client, info.run_id):
            with tempfile.TemporaryDirectory(prefix="refstore-mlflow-") as temp:
                local = client.download_artifacts(info.run_id, "", temp)
                log_directory(
                    repo,
                    f"{project}/mlflow-{info.run_id}",
                    "mlflow-run",
                    Path(local),
                    run_id=run_id,
                    metadata={"mlflow_run_id": info.run_id, "artifact_uri": info.artifact_uri},
                )
    except BaseException:
        tracker.failed(item, "artifacts failed", target=run_id)
        raise
    return run_id, previous is not None


def import_mlflow(
    repo: Repository,
    tracking_uri: str,
    *,
    experiment: str | None = None,
    project: str | None = None,
    artifacts: bool = True,
    progress: Progress | None = None,
) -> ImportReport:
    """Import new and changed runs of ``tracking_uri`` (all experiments, or one) into ``repo``."""
    project = check_name(project, "project") if project else repo.default_project
    uri = normalize_uri(tracking_uri)
    client = _client(uri)
    tracker = Tracker(repo, f"mlflow:{uri}")
    report = ImportReport(tracker.source)
    try:
        found = [(exp, run) for exp in _experiments(client, experiment) for run in _runs(client, exp.experiment_id)]
    except RefstoreError:
        raise
    except Exception as exc:  # MLflow raises its own exception types for unreachable or malformed stores
        raise BackendError(f"cannot read MLflow tracking store {uri}: {exc}") from exc
    for done, (exp, run) in enumerate(found, start=1):
        item = f"run:{run.info.run_id}"
        print_ = fingerprint(
            [run.info.status, run.info.end_time, run.data.params, run.data.metrics, run.data.tags, project, artifacts]
        )
        if tracker.is_done(item, print_):
            report.skipped += 1
        else:
            try:
                run_id, existed = _import_run(repo, client, tracker, run, exp, project, artifacts)
            except (RefstoreError, OSError, ValueError) as exc:
                log.warning("MLflow run %s failed to import: %s", run.info.run_id, exc)
                tracker.failed(item, str(exc))
                report.failed[run.info.run_id] = str(exc)
            except Exception as exc:  # an MLflow error on this run only: record it, go on with the others
                log.warning("MLflow run %s failed to import: %s", run.info.run_id, exc)
                tracker.failed(item, f"{type(exc).__name__}: {exc}")
                report.failed[run.info.run_id] = f"{type(exc).__name__}: {exc}"
            else:
                tracker.done(item, print_, run_id)
                (report.updated if existed else report.imported).append(run_id)
        if progress is not None:
            progress(done, len(found))
    return report
