"""Git integration commands: track, untrack, status, checkout, hooks, lock-merge."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from refstore.cli.main import Context, emit_json, progress_bar
from refstore.core.linking import LINK_MODES
from refstore.errors import RefstoreError, StoreNotFoundError

pass_state = click.make_pass_decorator(Context)
_MARKS = {"added": "A", "modified": "M", "removed": "D"}


@click.command()
@click.argument("path", type=click.Path())
@click.option("--name", "-n", help="Artifact name: [project/]name (default: the one the path is tracked as).")
@click.option("--type", "-t", "type_", help="Artifact type (default: the artifact's type, or dataset).")
@click.option("--alias", "-a", "aliases", multiple=True, help="Alias to set on the version (repeatable).")
@click.option("--description", "-d", help="Artifact description.")
@click.option("--json", "as_json", is_flag=True, help="Print the pin as JSON.")
@pass_state
def track(
    state: Context,
    path: str,
    name: str | None,
    type_: str | None,
    aliases: tuple[str, ...],
    description: str | None,
    as_json: bool,
) -> None:
    """Record PATH (a directory or file) as a version and pin it in refstore.lock.

    The path is added to .gitignore (git keeps the lock; refstore keeps the
    bytes). Run it again after changing the data; commit refstore.lock.
    """
    from refstore.api.workspace import Workspace

    ws = Workspace(state.store())
    with progress_bar("hashing") as progress:
        result = ws.track(path, name, type_, aliases=aliases, description=description, progress=progress)
    pin, version = result.pin, result.version
    if as_json:
        emit_json(
            {
                "path": pin.display,
                "artifact": pin.artifact,
                "version": pin.version,
                "digest": pin.digest,
                "created": version.created,
                "lock": str(ws.lock.path),
            }
        )
        return
    verb = "recorded" if version.created else "unchanged,"
    click.echo(f"{pin.display}: {verb} {pin.artifact}:{pin.version} ({pin.digest[:12]}), pinned in {ws.lock.path.name}")
    if result.ignored:
        click.echo(f"added /{pin.display} to .gitignore")
    if result.committed_files:
        click.echo(
            f"refstore: warning: git also tracks {len(result.committed_files)} file(s) under {pin.display}; "
            f"run 'git rm -r --cached {pin.display}' so the data lives only in refstore",
            err=True,
        )
    if ws.in_git:
        click.echo(f"next: git add {ws.lock.path.name} .gitignore .gitattributes && git commit")


@click.command()
@click.argument("path", type=click.Path())
@pass_state
def untrack(state: Context, path: str) -> None:
    """Remove PATH from refstore.lock (its files and versions stay; .gitignore is left as is)."""
    from refstore.api.workspace import Workspace

    pin = Workspace(state.store()).untrack(path)
    click.echo(f"{pin.display}: no longer tracked ({pin.label} stays in the store)")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when a tracked path differs from its pin.")
@pass_state
def status(state: Context, paths: tuple[str, ...], as_json: bool, exit_code: bool) -> None:
    """Show which tracked paths differ from refstore.lock (added, modified, removed files).

    Only files whose size, mtime or inode changed since they were last hashed are read.
    """
    from refstore.api.workspace import Workspace

    ws = Workspace(state.store())
    results = ws.status(paths)
    if not results and not as_json:
        click.echo(f"nothing tracked ({ws.lock.path.name} has no entries); use 'refstore track PATH'", err=True)
    if as_json:
        emit_json([r.as_dict() for r in results])
    else:
        for result in results:
            click.echo(f"{result.pin.display}\t{result.pin.artifact}:{result.pin.version}\t{result.state}")
            if result.detail:
                click.echo(f"\t{result.detail}")
            for change in result.changes:
                click.echo(f"\t{_MARKS[change.status]} {change.path}")
    if exit_code and any(r.state != "clean" for r in results):
        sys.exit(1)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--force", "-f", is_flag=True, help="Overwrite and delete files even when no version records their bytes.")
@click.option("--link", type=click.Choice(LINK_MODES), default="copy", show_default=True, help="How files come from the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def checkout(state: Context, paths: tuple[str, ...], force: bool, link: str, as_json: bool) -> None:
    """Make tracked PATHS (default: all) match refstore.lock.

    Missing and changed files are restored, files the pinned version does not
    have are deleted - only inside tracked paths. Without --force, refuses
    when that would lose bytes no version records.
    """
    from refstore.api.workspace import Workspace

    outcomes = Workspace(state.store()).checkout(paths, force=force, link=link)
    if as_json:
        emit_json([o.as_dict() for o in outcomes])
        return
    for outcome in outcomes:
        if outcome.action == "unchanged":
            click.echo(f"{outcome.pin.display}: already at {outcome.pin.label}")
        else:
            click.echo(f"{outcome.pin.display}: -> {outcome.pin.label} ({outcome.written} written, {outcome.removed} removed)")


@click.group()
def hooks() -> None:
    """Install, remove or run refstore's git hooks (see docs/git.md)."""


@hooks.command("install")
@pass_state
def hooks_install(state: Context) -> None:
    """Install pre-commit, post-checkout, post-merge and pre-push hooks and the refstore.lock merge driver.

    Hooks already there are kept and run first (uninstall restores them).
    Bypass: REFSTORE_SKIP_HOOKS=1 git ..., or git commit/push --no-verify.
    """
    from refstore.api import githooks
    from refstore.api.workspace import Workspace

    for name, action in githooks.install(Workspace(state.store())):
        click.echo(f"{name}: {action}")


@hooks.command("uninstall")
@pass_state
def hooks_uninstall(state: Context) -> None:
    """Remove refstore's hooks and restore the hooks they chained to."""
    from refstore.api import githooks
    from refstore.api.workspace import Workspace

    for name, action in githooks.uninstall(Workspace(state.store())):
        click.echo(f"{name}: {action}")


@hooks.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("hook", type=click.Choice(["pre-commit", "post-checkout", "post-merge", "pre-push"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_state
def hooks_run(state: Context, hook: str, args: tuple[str, ...]) -> None:
    """Run one hook's logic (the installed scripts and the pre-commit framework call this)."""
    from refstore.api import githooks
    from refstore.api.workspace import Workspace

    if githooks.skipped():
        return
    try:
        ws = Workspace(state.store())
    except StoreNotFoundError as exc:
        # No store here (a fresh clone, a machine without the data): nothing to check, never block git.
        click.echo(f"refstore: warning: {hook} hook skipped: {exc.message}", err=True)
        return
    if hook == "pre-commit":
        report = githooks.pre_commit(ws)
    elif hook in ("post-checkout", "post-merge"):
        try:
            if hook == "post-merge":
                report = githooks.post_merge(ws)
            else:
                previous, new, flag = [*args, "", "", "1"][:3]
                report = githooks.post_checkout(ws, previous, new, flag)
        except Exception as exc:  # git checkout exits with this hook's status: never fail a checkout of code
            message = exc.message if isinstance(exc, RefstoreError) else f"{type(exc).__name__}: {exc}"
            report = githooks.HookReport(True, [f"refstore: warning: data not updated: {message}"])
    else:
        git_remote = args[0] if args else "origin"
        report = githooks.pre_push(ws, git_remote, sys.stdin.read().splitlines())
    for line in report.lines:
        click.echo(line, err=True)
    if not report.ok:
        sys.exit(1)


@click.command("lock-merge")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
@click.argument("pathname", required=False)
def lock_merge(base: str, ours: str, theirs: str, pathname: str | None) -> None:
    """Git merge driver for refstore.lock: merge per tracked path, write the result to OURS.

    Exits 1 with conflict markers around each path both sides pinned differently.
    """
    from refstore.services import gitpin

    def read(path: str, label: str) -> list[gitpin.Pin]:
        file = Path(path)
        return gitpin.parse(file.read_text(encoding="utf-8"), f"{label} {pathname or gitpin.LOCK_NAME}") if file.exists() else []

    merged, conflicts = gitpin.merge(read(base, "base"), read(ours, "ours"), read(theirs, "theirs"))
    text = gitpin.render_with_conflicts(merged, conflicts) if conflicts else gitpin.render(merged)
    Path(ours).write_text(text, encoding="utf-8")
    if conflicts:
        click.echo(f"refstore: {pathname or gitpin.LOCK_NAME}: {len(conflicts)} conflicting path(s):", err=True)
        for conflict in conflicts:
            click.echo(f"  {conflict.describe()}", err=True)
        click.echo(
            "  keep one line per path (or merge the data and run 'refstore track PATH'), then 'git add refstore.lock'",
            err=True,
        )
        sys.exit(1)
