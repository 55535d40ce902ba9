"""``refstore import``: bring runs and artifacts from MLflow or another refstore."""

from __future__ import annotations

import click

from refstore.cli.main import Context, emit_json, progress_bar
from refstore.errors import UsageError

pass_state = click.make_pass_decorator(Context)


def _print_report(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    imported, updated, failed = report["imported"], report["updated"], report["failed"]
    assert isinstance(imported, list) and isinstance(updated, list) and isinstance(failed, dict)
    click.echo(
        f"imported {len(imported)}, updated {len(updated)}, unchanged {report['skipped']}, failed {len(failed)}"
        f" from {report['source']}"
    )
    for item, error in sorted(failed.items()):
        click.echo(f"failed: {item}: {error} (retried by the next import)", err=True)


@click.group("import")
def import_group() -> None:
    """Import runs and artifacts from MLflow or another refstore (incremental, read-only on the source)."""


@import_group.command("mlflow")
@click.option("--tracking-uri", required=True, help="MLflow tracking URI: ./mlruns, file:///…, sqlite:///mlflow.db, http://…")
@click.option("--experiment", help="Only this experiment (default: all).")
@click.option("--project", help="refstore project for the runs (default: the store's default project).")
@click.option("--no-artifacts", is_flag=True, help="Import runs only, not their logged artifacts.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def import_mlflow(
    state: Context, tracking_uri: str, experiment: str | None, project: str | None, no_artifacts: bool, as_json: bool
) -> None:
    """Import MLflow runs: params → config, metrics → summary and history, tags, artifacts."""
    with progress_bar("importing", unit="run") as progress:
        report = state.store().import_mlflow(
            tracking_uri, experiment=experiment, project=project, artifacts=not no_artifacts, progress=progress
        )
    _print_report(report.as_dict(), as_json)
    if report.failed:
        raise click.exceptions.Exit(1)


@import_group.command("store")
@click.argument("source")
@click.option("--remap", "remaps", multiple=True, help="Rename a project: OLD=NEW (repeatable).")
@click.option("--option", "-o", "pairs", multiple=True, help="Backend option KEY=VALUE for a remote URL; no credentials.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def import_store(state: Context, source: str, remaps: tuple[str, ...], pairs: tuple[str, ...], as_json: bool) -> None:
    """Import artifacts, versions, aliases and runs from another refstore.

    SOURCE is a store directory, or a remote: any URL 'remote add' takes (s3://, gs://, az://, a remote directory).
    """
    from refstore.cli.remotes import parse_options

    mapping: dict[str, str] = {}
    for pair in remaps:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise UsageError(f"invalid --remap {pair!r}; use OLD=NEW")
        mapping[old] = new
    with progress_bar("importing", unit="item") as progress:
        report = state.store().import_store(source, remap=mapping, progress=progress, **parse_options(pairs))
    _print_report(report.as_dict(), as_json)
    if report.failed:
        raise click.exceptions.Exit(1)
