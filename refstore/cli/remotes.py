"""Commands that share versions: remote add/list/remove, push, pull, clone."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from refstore.cli.main import Context, emit_json, human_size
from refstore.errors import ConflictError, UsageError

pass_state = click.make_pass_decorator(Context)
JOBS = click.option("--jobs", "-j", default=8, show_default=True, type=click.IntRange(1, 256), help="Concurrent transfers.")


@contextmanager
def transfer_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A bar with bytes and files on stderr when stdout is a terminal; otherwise no callback."""
    if not sys.stdout.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=description, unit="B", unit_scale=True, leave=False, file=sys.stderr) as bar:
        last = [0]

        def update(files: int, done: int) -> None:
            bar.update(done - last[0])
            last[0] = done
            bar.set_postfix(files=files)

        yield update


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-o key=value``; a value that parses as JSON is used as such (``-o client_kwargs='{...}'``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


@click.group()
def remote() -> None:
    """Add, list and remove remotes (any fsspec URL or a directory)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--option", "-o", "pairs", multiple=True, help="Backend option KEY=VALUE (JSON values allowed); no credentials.")
@pass_state
def remote_add(state: Context, name: str, url: str, pairs: tuple[str, ...]) -> None:
    """Remember remote NAME at URL. Credentials come from the environment, never from here."""
    added = state.store().add_remote(name, url, **parse_options(pairs))
    click.echo(f"added remote {added['name']} -> {added['url']}")


@remote.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def remote_list(state: Context, as_json: bool) -> None:
    """List remotes with their URLs."""
    rows = state.store().remotes()
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['url']}")


@remote.command("remove")
@click.argument("name")
@pass_state
def remote_remove(state: Context, name: str) -> None:
    """Forget remote NAME (nothing on the remote is touched)."""
    state.store().remove_remote(name)
    click.echo(f"removed remote {name}")


def _report(verb: str, result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
    else:
        for change in result.renumbered:
            click.echo(f"renumbered: {change} (another store used v{change.old} first)", err=True)
        for line in result.aliases:
            click.echo(f"alias {line}")
        if result.versions or result.objects or result.aliases or result.runs:
            click.echo(
                f"{verb} {result.remote}: {len(result.versions)} versions, {result.objects} objects "
                f"({human_size(result.bytes)}), {result.records} manifest records, {len(result.runs)} runs"
            )
        else:
            click.echo(f"{result.remote} is up to date")
    if result.conflicts:
        for line in result.conflicts:
            click.echo(f"conflict: {line}", err=True)
        raise ConflictError(f"{len(result.conflicts)} alias conflict(s) with remote {result.remote}; see above")


@click.command()
@click.argument("remote_name", metavar="[REMOTE]", required=False)
@click.argument("specs", nargs=-1)
@JOBS
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def push(state: Context, remote_name: str | None, specs: tuple[str, ...], jobs: int, as_json: bool) -> None:
    """Send versions, aliases, runs and the objects they need to REMOTE (default origin).

    SPECS are NAME or NAME:vN (that version and the ones before it); default everything.
    """
    store = state.store()
    remote_name, specs = _split_remote(store, remote_name, specs)
    with transfer_bar("push") as progress:
        result = store.push(remote_name, specs, jobs=jobs, progress=progress)
    _report("pushed to", result, as_json)


@click.command()
@click.argument("remote_name", metavar="[REMOTE]", required=False)
@click.argument("specs", nargs=-1)
@click.option("--objects", is_flag=True, help="Also fetch every object (default: on download).")
@JOBS
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def pull(state: Context, remote_name: str | None, specs: tuple[str, ...], objects: bool, jobs: int, as_json: bool) -> None:
    """Merge versions, aliases and runs from REMOTE (default origin); objects with --objects or on download."""
    store = state.store()
    remote_name, specs = _split_remote(store, remote_name, specs)
    with transfer_bar("pull") as progress:
        result = store.pull(remote_name, specs, objects=objects, jobs=jobs, progress=progress)
    _report("pulled from", result, as_json)


def _split_remote(store: Any, first: str | None, specs: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """``push mnist`` means the default remote when no remote is called mnist."""
    if first is None:
        return None, specs
    if first in {r["name"] for r in store.remotes()}:
        return first, specs
    return None, (first, *specs)


@click.command()
@click.argument("url")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--option", "-o", "pairs", multiple=True, help="Backend option KEY=VALUE (JSON values allowed); no credentials.")
def clone(url: str, directory: str | None, pairs: tuple[str, ...]) -> None:
    """Create a store in DIRECTORY from the remote at URL (metadata now, objects on download)."""
    import refstore

    with refstore.clone(url, directory, **parse_options(pairs)) as store:
        count = sum(row["versions"] for row in store.artifacts())
        click.echo(f"cloned {url} into {store.path.parent} ({len(store.artifacts())} artifacts, {count} versions)")
