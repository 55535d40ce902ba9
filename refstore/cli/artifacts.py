"""Commands on artifacts and versions: init, put, ls, log, show, diff, get, alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

import refstore
from refstore.cli.main import Context, emit_json, human_size, progress_bar
from refstore.core.linking import LINK_MODES
from refstore.errors import UsageError
from refstore.services.versions import parse_metadata

pass_state = click.make_pass_decorator(Context)


def read_metadata(value: str | None) -> dict[str, Any]:
    """``--metadata`` as inline JSON or ``@file.json``."""
    if value is not None and value.startswith("@"):
        try:
            value = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read metadata file {value[1:]}: {exc.strerror}") from exc
    return parse_metadata(value)


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option(
    "--algorithm",
    default="xxh3-128",
    show_default=True,
    type=click.Choice(["xxh3-128", "sha256"]),
    help="Digest algorithm; sha256 for stores that pull from remotes others can write.",
)
@click.option("--project", default="default", show_default=True, help="Default project for names without one.")
def init(path: str | None, algorithm: str, project: str) -> None:
    """Create a store (.refstore/) in PATH or the current directory."""
    with refstore.init(path, algorithm=algorithm, project=project) as store:
        click.echo(f"initialised refstore store in {store.path}")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--name", "-n", required=True, help="Artifact name: [project/]name.")
@click.option("--type", "-t", "type_", default="dataset", show_default=True, help="Artifact type (dataset, model, …).")
@click.option("--alias", "-a", "aliases", multiple=True, help="Alias to set on the version (repeatable).")
@click.option("--description", "-d", help="Artifact description.")
@click.option("--metadata", "-m", help="Version metadata: a JSON object, or @file.json.")
@click.option("--reference", "-r", "references", multiple=True, help="Track URI by metadata only (repeatable; any fsspec URL).")
@click.option("--max-objects", type=click.IntRange(min=1), help="Refuse a --reference prefix with more objects (default 10000).")
@click.option("--no-checksum", is_flag=True, help="Record each --reference uri alone, without listing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@click.option("--run-job-type", help="Record the put as a run of this job type (its output is the new version).")
@click.option("--run-name", help="Name of that run.")
@click.option("--input", "-i", "inputs", multiple=True, help="Version the run used, e.g. mnist:v1 (repeatable).")
@click.option("--run", "run_id", help="Log the version in an existing run (from 'refstore run start').")
@pass_state
def put(
    state: Context,
    paths: tuple[str, ...],
    name: str,
    type_: str,
    aliases: tuple[str, ...],
    description: str | None,
    metadata: str | None,
    references: tuple[str, ...],
    max_objects: int | None,
    no_checksum: bool,
    as_json: bool,
    run_job_type: str | None,
    run_name: str | None,
    inputs: tuple[str, ...],
    run_id: str | None,
) -> None:
    """Record files and directories as the next version of an artifact.

    One directory is stored with its contents at the artifact's root; with
    several paths, each is stored under its own base name. Content equal to
    the latest version creates no new version.
    """
    if not paths and not references:
        raise UsageError("nothing to put; give one or more files or directories, or --reference URI")
    meta = read_metadata(metadata)
    art = refstore.Artifact(name, type=type_, description=description, metadata=meta)
    for path in paths:
        single = len(paths) == 1
        if os.path.isdir(path):
            art.add_dir(path, name=None if single else os.path.basename(os.path.abspath(path)))
        else:
            art.add_file(path)
    for uri in references:
        art.add_reference(uri, checksum=not no_checksum, max_objects=max_objects)
    store = state.store()
    if run_id is not None and (run_job_type or run_name):
        raise UsageError("--run names an existing run; do not combine it with --run-job-type or --run-name")
    for spec in inputs:  # resolve first so a bad spec records nothing
        store.artifact(spec)
    run = store.get_run(run_id) if run_id is not None else None
    if run is None and (run_job_type or run_name or inputs):
        run = store.run(run_job_type or "put", run_name)
    try:
        for spec in inputs:
            assert run is not None
            run.use_artifact(spec)
        with progress_bar("hashing") as progress:
            if run is not None:
                version = run.log_artifact(art, aliases=aliases, progress=progress)
            else:
                version = store.log_artifact(art, aliases=aliases, progress=progress)
    except BaseException:
        if run is not None and run_id is None:
            run.finish("failed")
        raise
    if run is not None and run_id is None:
        run.finish("finished")
    if as_json:
        emit_json({**version.as_dict(), "created": version.created})
    elif version.created:
        click.echo(
            f"{version.name}:{version.version} (digest {version.digest[:12]}, "
            f"{version.file_count} files, {human_size(version.size)})"
        )
    else:
        click.echo(f"{version.name}:{version.version} unchanged (no new version)")


@click.command("ls")
@click.option("--project", help="Only this project.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def list_artifacts(state: Context, project: str | None, as_json: bool) -> None:
    """List artifacts with their type, number of versions and latest version."""
    rows = state.store().artifacts(project)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['project']}/{row['name']}\t{row['type']}\t{row['versions']} versions\tlatest {row['latest']}")


@click.command("log")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def log_versions(state: Context, name: str, as_json: bool) -> None:
    """Show the versions of an artifact, newest first."""
    versions = state.store().versions(name)
    if as_json:
        emit_json([v.as_dict() for v in versions])
        return
    for v in versions:
        aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
        click.echo(f"{v.version}{aliases}\t{v.digest[:12]}\t{v.file_count} files\t{human_size(v.size)}\t{v.created_at}")


@click.command()
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state: Context, spec: str, as_json: bool) -> None:
    """Show a version and its entries (SPEC: name, name:v3, name:alias, name@digest)."""
    version = state.store().artifact(spec)
    files = version.files()
    if as_json:
        emit_json({**version.as_dict(), "entries": [e.as_dict() for e in files]})
        return
    click.echo(f"{version.qualified_name}  type {version.type}  digest {version.digest}")
    click.echo(
        f"aliases: {', '.join(version.aliases) or '-'}  files: {version.file_count}  "
        f"size: {human_size(version.size)}  created: {version.created_at}"
    )
    if version.metadata:
        click.echo(f"metadata: {version.metadata}")
    for entry in files:
        where = entry.ref["uri"] if entry.ref else (entry.digest or "")
        click.echo(f"{entry.path}\t{entry.size}\t{where}")


@click.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def diff(state: Context, old: str, new: str, as_json: bool) -> None:
    """Show added, removed and modified paths between two versions."""
    changes = state.store().diff(old, new)
    if as_json:
        emit_json(
            [
                {
                    "status": c.status,
                    "path": c.path,
                    "old": c.old.as_dict() if c.old else None,
                    "new": c.new.as_dict() if c.new else None,
                }
                for c in changes
            ]
        )
        return
    marks = {"added": "+", "removed": "-", "modified": "M"}
    for change in changes:
        click.echo(f"{marks[change.status]} {change.path}")


@click.command()
@click.argument("spec")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Target directory (default ./artifacts/NAME/vN).")
@click.option(
    "--link",
    type=click.Choice(LINK_MODES),
    default="copy",
    show_default=True,
    help="How files come from the cache; hardlink/symlink files are read-only.",
)
@pass_state
def get(state: Context, spec: str, output: str | None, link: str) -> None:
    """Materialise a version into a directory; every file is verified."""
    version = state.store().artifact(spec)
    from refstore.services import checkout, reffetch

    target = Path(output) if output else version.default_root()
    with progress_bar("fetching", unit="ref") as fetching, progress_bar("checkout", total=version.file_count) as progress:
        token = reffetch.PROGRESS.set(fetching)
        try:
            result = checkout.download(state.store().repo, version.record, target.absolute(), link=link, progress=progress)
        finally:
            reffetch.PROGRESS.reset(token)
    modes = ", ".join(f"{n} {m}" for m, n in sorted(result.modes.items())) or "nothing to write"
    click.echo(f"{version.name}:{version.version} -> {target} ({modes}; {result.unchanged} already present)")


@click.group()
def alias() -> None:
    """Set, remove and list aliases (movable names on versions)."""


@alias.command("set")
@click.argument("spec")
@click.argument("name")
@pass_state
def alias_set(state: Context, spec: str, name: str) -> None:
    """Point alias NAME at the version SPEC (moving it if needed)."""
    version = state.store().set_alias(spec, name)
    click.echo(f"{version.name}:{name} -> {version.version}")


@alias.command("rm")
@click.argument("artifact")
@click.argument("name")
@pass_state
def alias_rm(state: Context, artifact: str, name: str) -> None:
    """Remove alias NAME from ARTIFACT."""
    state.store().remove_alias(artifact, name)
    click.echo(f"removed alias {name} from {artifact}")


@alias.command("list")
@click.argument("artifact")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def alias_list(state: Context, artifact: str, as_json: bool) -> None:
    """List the aliases of ARTIFACT and the versions they point at."""
    pairs = {a: v.version for v in state.store().versions(artifact) for a in v.aliases}
    if as_json:
        emit_json(pairs)
        return
    for name, version in sorted(pairs.items()):
        click.echo(f"{name}\t{version}")


@click.command("rm")
@click.argument("spec")
@click.option("--delete-aliases", is_flag=True, help="Also remove the aliases that point at the version.")
@pass_state
def remove_version(state: Context, spec: str, delete_aliases: bool) -> None:
    """Delete a version (run 'refstore gc' afterwards to free its bytes)."""
    version = state.store().artifact(spec)
    state.store().delete(spec, delete_aliases=delete_aliases)
    click.echo(f"deleted {version.name}:{version.version}")
