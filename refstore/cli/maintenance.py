"""Commands that check and tidy a store: verify, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from refstore.cli.main import Context, emit_json, human_size, progress_bar
from refstore.errors import BackendError, IntegrityError, UsageError

pass_state = click.make_pass_decorator(Context)


@click.command()
@click.argument("spec", required=False)
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="With SPEC: check this directory against it.")
@click.option("--download", is_flag=True, help="With SPEC: re-hash the bytes of its references, not only their metadata.")
@click.option("--repair", is_flag=True, help="Remove corrupt objects and refetch corrupt or missing ones from remotes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def verify(state: Context, spec: str | None, directory: str | None, download: bool, repair: bool, as_json: bool) -> None:
    """Re-hash every cached object and manifest record (exit 6 on any problem).

    With --repair, a corrupt object is removed and, like a missing one,
    refetched (and re-hashed) from the configured remotes, or for cached
    reference bytes from the unchanged reference source; exit 6 while anything
    is still broken.
    With SPEC and --dir, check that a directory holds exactly that version.
    With SPEC of a version that has references (and no --dir), re-check each
    reference's remote metadata without downloading; --download re-hashes bytes.
    """
    store = state.store()
    if spec is not None and repair:
        raise UsageError("--repair checks the whole store; run 'refstore verify --repair' without SPEC")
    if spec is not None:
        from refstore.services.checkout import verify_directory

        version = store.artifact(spec)
        if directory is None and any(entry.ref is not None for entry in version.files()):
            verify_references(version, download, as_json)
            return
        root = Path(directory) if directory else version.default_root()
        problems = verify_directory(store.repo, version.record, root.absolute())
        if as_json:
            emit_json([{"status": p.status, "path": p.path, "detail": p.detail} for p in problems])
        else:
            for problem in problems:
                click.echo(f"{problem.status}\t{problem.path}\t{problem.detail}")
        if problems:
            raise IntegrityError(f"{root} does not match {version.qualified_name}: {len(problems)} problem(s)")
        if not as_json:
            click.echo(f"{root} matches {version.qualified_name}")
        return
    with progress_bar("verifying") as progress:
        report = store.verify(progress, repair=repair)
    fixed = report.repair
    if as_json:
        data: dict[str, Any] = {"objects": report.objects_checked, "records": report.records_checked, "problems": report.problems}
        if fixed is not None:
            data["repair"] = {
                "repaired": fixed.repaired,
                "unrepaired": fixed.unrepaired,
                "removed": fixed.removed,
                "sources": fixed.sources,
                "records_repaired": fixed.records_repaired,
                "records_unrepaired": fixed.records_unrepaired,
            }
        emit_json(data)
    else:
        if fixed is not None:
            for digest, source in sorted(fixed.records_repaired.items()):
                click.echo(f"repaired manifest record {digest} from {source}")
            for digest, reason in sorted(fixed.records_unrepaired.items()):
                click.echo(f"manifest record {digest}: not repaired: {reason}")
            for digest in fixed.removed:
                click.echo(f"removed corrupt object {digest}")
            for digest, source in sorted(fixed.repaired.items()):
                click.echo(f"repaired object {digest} from {source}")
        for problem in report.problems:
            click.echo(problem)
    done = ""
    if fixed is not None and (fixed.repaired or fixed.records_repaired):
        done = f"; repaired {len(fixed.repaired)} object(s), {len(fixed.records_repaired)} manifest record(s)"
    if not report.ok:
        if fixed is not None and (fixed.unrepaired or fixed.records_unrepaired):
            raise IntegrityError(
                f"verify --repair: {len(report.problems)} problem(s) remain in {store.path}{done}; "
                f"{len(fixed.unrepaired) + len(fixed.records_unrepaired)} object(s) or record(s) could not be refetched "
                "(see above)"
            )
        hint = "" if repair or not report.broken_objects else "; 'refstore verify --repair' refetches objects from remotes"
        raise IntegrityError(f"verify found {len(report.problems)} problem(s) in {store.path}{done}{hint}")
    if not as_json:
        click.echo(f"ok: {report.objects_checked} objects, {report.records_checked} manifest records{done}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def gc(state: Context, dry_run: bool, as_json: bool) -> None:
    """Remove objects and manifest records no version references, and stale temp files."""
    report = state.store().gc(dry_run=dry_run)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "objects": report.objects,
                "records": report.records,
                "temp_files": report.temp_files,
                "bytes": report.bytes,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for digest in report.objects:
        click.echo(digest)
    click.echo(
        f"{verb} {len(report.objects)} objects ({human_size(report.bytes)}), "
        f"{len(report.records)} manifest records, {report.temp_files} temp files"
    )


def verify_references(version: Any, download: bool, as_json: bool) -> None:
    """Print the reference problems of ``version``; exit 6 when one changed or vanished."""
    problems = version.check_references(download=download)
    if as_json:
        emit_json([{"status": p.status, "path": p.path, "detail": p.detail} for p in problems])
    else:
        for problem in problems:
            click.echo(f"{problem.status}\t{problem.path}\t{problem.detail}")
    failed = [p for p in problems if p.status != "unchecked"]
    if failed and all(p.status == "error" for p in failed):
        raise BackendError(f"could not re-check {len(failed)} reference(s) of {version.qualified_name}: {failed[0].detail}")
    if failed:
        raise IntegrityError(f"{len(failed)} reference(s) of {version.qualified_name} no longer match: first {failed[0].detail}")
    if not as_json:
        checked = sum(1 for entry in version.files() if entry.ref is not None) - len(problems)
        how = "bytes re-hashed" if download else "metadata re-checked"
        click.echo(f"ok: {checked} reference(s) of {version.qualified_name} unchanged ({how})")
