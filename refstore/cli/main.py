"""The root command, global options, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from refstore._version import __version__
from refstore.errors import RefstoreError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
INTERNAL_ERROR = 70


class Context:
    """Lazily opened store shared by the commands of one invocation."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._store: Any = None

    def store(self) -> Any:
        if self._store is None:
            import refstore

            self._store = refstore.open()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


# Command name -> "module:attribute". Modules load only when their command runs,
# so `refstore --version` does not import SQLite, fsspec or any backend.
COMMANDS: dict[str, str] = {
    "init": "refstore.cli.artifacts:init",
    "put": "refstore.cli.artifacts:put",
    "ls": "refstore.cli.artifacts:list_artifacts",
    "log": "refstore.cli.artifacts:log_versions",
    "show": "refstore.cli.artifacts:show",
    "diff": "refstore.cli.artifacts:diff",
    "get": "refstore.cli.artifacts:get",
    "alias": "refstore.cli.artifacts:alias",
    "rm": "refstore.cli.artifacts:remove_version",
    "verify": "refstore.cli.maintenance:verify",
    "gc": "refstore.cli.maintenance:gc",
    "runs": "refstore.cli.runs:list_runs",
    "run": "refstore.cli.runs:run",
    "export": "refstore.cli.runs:export_group",
    "lineage": "refstore.cli.lineage:lineage",
    "import": "refstore.cli.importing:import_group",
    "remote": "refstore.cli.remotes:remote",
    "push": "refstore.cli.remotes:push",
    "pull": "refstore.cli.remotes:pull",
    "clone": "refstore.cli.remotes:clone",
    "demo": "refstore.cli.demo:demo",
    "track": "refstore.cli.git:track",
    "untrack": "refstore.cli.git:untrack",
    "status": "refstore.cli.git:status",
    "checkout": "refstore.cli.git:checkout",
    "hooks": "refstore.cli.git:hooks",
    "lock-merge": "refstore.cli.git:lock_merge",
}


class RefstoreGroup(click.Group):
    """Loads commands lazily and turns library errors into one line on stderr and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RefstoreError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            click.echo(f"refstore: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("refstore: interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"refstore: error: {exc.strerror or exc}{where}; check the path and permissions", err=True)
            ctx.exit(1)
        except Exception as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            click.echo(f"refstore: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", err=True)
            ctx.exit(INTERNAL_ERROR)


@click.group(cls=RefstoreGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="refstore")
@click.option("-C", "directory", type=click.Path(file_okay=False), help="Run as if started in DIRECTORY (like git -C).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, debug: bool) -> None:
    """refstore: a local-first, git-like store that versions datasets and models.

    The store is the nearest .refstore/ above the working directory, or
    REFSTORE_DIR when set. Exit codes: 0 ok, 1 error, 2 bad input, 3 no store,
    4 unsupported format, 5 not found, 6 integrity failure, 7 conflict,
    8 store busy, 9 backend unreachable, 70 internal error.
    """
    logging.basicConfig(level=logging.WARNING, format="refstore: %(levelname)s: %(message)s")
    if debug:
        # refstore's own loggers only: botocore/azure/gcsfs debug logs print request headers
        # and signed URLs, i.e. access key ids, signatures and SAS tokens.
        logging.getLogger("refstore").setLevel(logging.DEBUG)
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise click.UsageError(f"cannot change to directory {directory}: {exc.strerror}") from exc
    state = Context(debug)
    ctx.obj = state
    ctx.call_on_close(state.close)


def emit_json(value: Any) -> None:
    """Print one JSON document and nothing else."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


@contextmanager
def progress_bar(description: str, total: int | None = None, unit: str = "file") -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar on stderr when stdout is a terminal; otherwise no callback at all."""
    if not sys.stdout.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr) as bar:
        last = [0]

        def update(files: int, _bytes: int) -> None:
            bar.update(files - last[0])
            last[0] = files

        yield update


def main() -> None:
    cli(prog_name="refstore")
