"""Commands on runs: runs (query), run show/start/finish/use, export runs."""

from __future__ import annotations

import json
from typing import Any

import click

from refstore.cli.main import Context, emit_json
from refstore.errors import UsageError
from refstore.services.versions import parse_json_object

pass_state = click.make_pass_decorator(Context)


def parse_filter(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f'--filter is not valid JSON ({exc.args[0]}); e.g. \'{{"summary.acc": {{"$gt": 0.9}}}}\'') from exc
    if not isinstance(value, dict):
        raise UsageError('--filter must be a JSON object such as \'{"job_type": "train"}\'')
    return value


@click.command("runs")
@click.option("--filter", "filter_", help='MongoDB-style JSON filter, e.g. \'{"summary.acc": {"$gt": 0.9}}\'.')
@click.option("--order", default="-created_at", show_default=True, help="Sort keys, comma-separated: -created_at, +summary.acc.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many runs.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many runs first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (config.* and summary.* as columns).")
@pass_state
def list_runs(
    state: Context, filter_: str | None, order: str, limit: int | None, offset: int, as_json: bool, as_csv: bool
) -> None:
    """List runs, newest first, optionally filtered and ordered."""
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    store = state.store()
    parsed = parse_filter(filter_)
    if as_csv:
        click.echo(store.runs_csv(parsed, order, limit, offset), nl=False)
        return
    found = [r.record for r in store.runs(parsed, order, limit, offset)]
    if as_json:
        emit_json([r.as_dict() for r in found])
    else:
        for r in found:
            click.echo(f"{r.id}\t{r.status}\t{r.job_type or '-'}\t{r.name}\t{r.created_at}")


@click.group("run")
def run() -> None:
    """Show, start and finish runs (record lineage from shell pipelines)."""


@run.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def run_show(state: Context, run_id: str, as_json: bool) -> None:
    """Show a run: config, summary, inputs, outputs and metrics history."""
    found = state.store().get_run(run_id)
    info = found.as_dict()
    used = [v.qualified_name for v in found.used()]
    logged = [v.qualified_name for v in found.logged()]
    history = found.history()
    if as_json:
        emit_json({**info, "inputs": used, "outputs": logged, "history": history})
        return
    click.echo(f"run {info['id']}  {info['name']}  job_type {info['job_type'] or '-'}  status {info['status']}")
    click.echo(f"project {info['project']}  started {info['created_at']}  finished {info['finished_at'] or '-'}")
    if info["git_commit"]:
        click.echo(f"git {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}")
    if info["command"]:
        click.echo(f"command: {info['command']}")
    if info["tags"]:
        click.echo(f"tags: {', '.join(info['tags'])}")
    click.echo(f"config: {json.dumps(info['config'], sort_keys=True)}")
    click.echo(f"summary: {json.dumps(info['summary'], sort_keys=True)}")
    click.echo(f"inputs: {', '.join(used) or '-'}")
    click.echo(f"outputs: {', '.join(logged) or '-'}")
    if history:
        click.echo(f"history: {len(history)} points of {', '.join(sorted({h['key'] for h in history}))}")


@run.command("start")
@click.option("--job-type", "-j", help="Job type (train, eval, preprocess, …).")
@click.option("--name", help="Run name (default JOBTYPE-ID).")
@click.option("--project", help="Project (default: the store's default project).")
@click.option("--config", "config", help="Config as a JSON object.")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--input", "-i", "inputs", multiple=True, help="Version the run uses, e.g. mnist:v1 (repeatable).")
@click.option("--command", help="Command line to record (default: this refstore command).")
@pass_state
def run_start(
    state: Context,
    job_type: str | None,
    name: str | None,
    project: str | None,
    config: str | None,
    tags: tuple[str, ...],
    inputs: tuple[str, ...],
    command: str | None,
) -> None:
    """Start a run and print its id (use it with 'put --run ID' and 'run finish ID')."""
    store = state.store()
    parsed = parse_json_object(config, "--config")
    for spec in inputs:  # resolve first so a bad spec leaves no half-made run
        store.artifact(spec)
    started = store.run(job_type, name, parsed, tags, project=project, command=command)
    for spec in inputs:
        started.use_artifact(spec)
    click.echo(started.id)


@run.command("use")
@click.argument("run_id")
@click.argument("specs", nargs=-1, required=True)
@pass_state
def run_use(state: Context, run_id: str, specs: tuple[str, ...]) -> None:
    """Record that RUN_ID used the versions SPECS."""
    found = state.store().get_run(run_id)
    for spec in specs:
        version = found.use_artifact(spec)
        click.echo(f"{found.id} uses {version.qualified_name}")


@run.command("finish")
@click.argument("run_id")
@click.option("--status", type=click.Choice(["finished", "failed"]), default="finished", show_default=True)
@click.option("--summary", help="Summary values to merge, as a JSON object.")
@pass_state
def run_finish(state: Context, run_id: str, status: str, summary: str | None) -> None:
    """End a run started with 'run start'."""
    values = parse_json_object(summary, "--summary")
    found = state.store().get_run(run_id)
    found.finish(status, summary=values)
    click.echo(f"{found.id} {found.status}")


@click.group("export")
def export_group() -> None:
    """Export runs to other tools."""


@export_group.command("runs")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="CSV file to write.")
@click.option("--filter", "filter_", help="MongoDB-style JSON filter.")
@pass_state
def export_runs(state: Context, csv_path: str, filter_: str | None) -> None:
    """Write runs (config.* and summary.* as columns) to a CSV file."""
    count = state.store().export_runs_csv(csv_path, parse_filter(filter_))
    click.echo(f"wrote {count} runs to {csv_path}")
