"""What each git hook does: pre-commit, post-checkout, post-merge, pre-push.

A hook returns a :class:`HookReport` (whether git may go on, and lines for
stderr); the CLI prints it. The rules: pre-commit refuses data the lock does
not record; post-checkout (and post-merge, after ``git pull``) never fails
git (problems become warnings); pre-push pushes the pinned versions when a remote is configured
and stops the push if that fails, so no pushed commit names data nobody can get.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from refstore.api.workspace import Workspace, push_spec, remote_names
from refstore.errors import RefstoreError
from refstore.services import hooks
from refstore.services.gitpin import ATTRIBUTES_LINE, LOCK_NAME, Pin, ensure_line, parse
from refstore.services.gitutil import NULL_SHA, git_path, revisions_touching, show_file
from refstore.services.status import MISSING, MODIFIED, UNKNOWN, PathStatus

log = logging.getLogger(__name__)
MAX_LISTED = 10
_MARKS = {"added": "A", "modified": "M", "removed": "D"}


@dataclass
class HookReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)


def skipped() -> bool:
    return os.environ.get(hooks.SKIP_ENV, "") == "1"


# -- install -------------------------------------------------------------------


def install(ws: Workspace, python: str | None = None) -> list[tuple[str, str]]:
    """Install the hooks (chaining existing ones) and the ``refstore.lock`` merge driver."""
    if not ws.in_git:
        raise RefstoreError(f"{ws.root} is not in a git repository; run 'git init' first")
    python = python or sys.executable
    done = hooks.install(git_path(ws.root, "hooks"), python)
    command = hooks.configure_merge_driver(ws.root, python)
    ensure_line(ws.root / ".gitattributes", ATTRIBUTES_LINE)
    done.append(("merge driver", f"configured ({command}; .gitattributes: {ATTRIBUTES_LINE})"))
    return done


def uninstall(ws: Workspace) -> list[tuple[str, str]]:
    done = hooks.uninstall(git_path(ws.root, "hooks"))
    hooks.remove_merge_driver(ws.root)
    done.append(("merge driver", "removed from git config (.gitattributes left as is)"))
    return done


# -- pre-commit ------------------------------------------------------------------


def describe(status: PathStatus, limit: int = MAX_LISTED) -> list[str]:
    """Readable lines for one tracked path that differs from its pin."""
    counts = {kind: sum(1 for c in status.changes if c.status == kind) for kind in ("modified", "added", "removed")}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or status.state
    lines = [f"  {status.pin.display} (pinned {status.pin.label}): {summary}"]
    if status.detail and status.state != UNKNOWN:
        lines.append(f"    {status.detail}")
    for change in status.changes[:limit]:
        lines.append(f"    {_MARKS[change.status]} {change.path}")
    if len(status.changes) > limit:
        lines.append(f"    … and {len(status.changes) - limit} more ('refstore status {status.pin.display}' lists all)")
    return lines


def pre_commit(ws: Workspace) -> HookReport:
    """Refuse the commit when tracked data differs from the ``refstore.lock`` being committed."""
    report = HookReport()
    if skipped():
        return report
    staged = show_file(ws.root, "", LOCK_NAME)
    working = ws.lock.path.read_text(encoding="utf-8") if ws.lock.exists() else None
    if staged is None and working is None:
        return report
    if staged != working:
        report.ok = False
        report.lines.append(
            f"refstore: commit refused: {LOCK_NAME} has changes that are not staged; "
            f"run 'git add {LOCK_NAME}' (or 'git checkout -- {LOCK_NAME}' to drop them)"
        )
    pins = parse(staged if staged is not None else working or "", f"{LOCK_NAME} (staged)")
    statuses = ws.status(pins=pins)
    dirty = [s for s in statuses if s.state == MODIFIED]
    for status in statuses:
        if status.state == UNKNOWN:
            report.lines.append(f"refstore: warning: cannot check {status.pin.display}: {status.detail}")
        elif status.state == MISSING:
            report.lines.append(f"refstore: warning: {status.pin.display} is missing; 'refstore checkout' restores it")
    if dirty:
        report.ok = False
        report.lines.append("refstore: commit refused: tracked data has changes that refstore.lock does not record:")
        for status in dirty:
            report.lines.extend(describe(status))
        paths = " ".join(s.pin.display for s in dirty)
        report.lines += [
            f"Record them:         refstore track {paths} && git add {LOCK_NAME}",
            f"Or restore the pins: refstore checkout --force {paths}",
            f"Bypass this check:   git commit --no-verify   (or {hooks.SKIP_ENV}=1 git commit ...)",
        ]
    return report


# -- post-checkout ---------------------------------------------------------------


def _pins_at(ws: Workspace, revision: str) -> list[Pin] | None:
    text = show_file(ws.root, revision, LOCK_NAME)
    if text is None:
        return None
    try:
        return parse(text, f"{LOCK_NAME} at {revision[:12]}")
    except RefstoreError as exc:
        log.debug("ignoring unreadable lock at %s: %s", revision, exc)
        return None


def post_checkout(ws: Workspace, previous: str, new: str, branch_flag: str = "1") -> HookReport:
    """Materialise the pins that changed with this checkout; problems are warnings only."""
    report = HookReport()
    if skipped():
        return report
    try:
        current = ws.pins()
    except RefstoreError as exc:
        report.lines.append(f"refstore: warning: data not updated: {exc.message}")
        return report
    before = _pins_at(ws, previous)
    old = set(before or [])
    changed = [pin for pin in current if before is None or pin not in old]
    for pin in changed:
        try:
            outcome = ws.checkout_pin(pin)
        except RefstoreError as exc:
            report.lines.append(f"refstore: warning: {pin.display} not updated: {exc.message}")
            continue
        if outcome.action == "updated":
            report.lines.append(f"refstore: {pin.display} -> {pin.label} ({outcome.written} written, {outcome.removed} removed)")
    if any(line.startswith("refstore: warning") for line in report.lines):
        report.lines.append("refstore: the checkout of your code succeeded; fix the data above and run 'refstore checkout'")
    return report


def post_merge(ws: Workspace) -> HookReport:
    """After a merge or ``git pull``: materialise the pins that changed since ``ORIG_HEAD``."""
    return post_checkout(ws, "ORIG_HEAD", "HEAD")


# -- pre-push --------------------------------------------------------------------


def pushed_pins(ws: Workspace, updates: Sequence[str]) -> list[Pin]:
    """Pins named by every commit being pushed (from pre-push's stdin lines) that touches the lock, and each tip."""
    found: set[Pin] = set()
    for line in updates:
        fields = line.split()
        if len(fields) != 4 or fields[1] == NULL_SHA:
            continue
        local_sha, remote_sha = fields[1], fields[3]
        exclude = [f"^{remote_sha}"] if remote_sha != NULL_SHA else ["--not", "--remotes"]
        commits = revisions_touching(ws.root, [local_sha, *exclude], LOCK_NAME)
        for commit in dict.fromkeys([local_sha, *commits]):
            found.update(_pins_at(ws, commit) or [])
    return sorted(found)


def choose_remote(names: Sequence[str], git_remote: str) -> str | None:
    """The refstore remote named like the git remote, else ``origin``, else the only one."""
    for candidate in (git_remote, "origin"):
        if candidate in names:
            return candidate
    return names[0] if len(names) == 1 else None


def pre_push(ws: Workspace, git_remote: str, updates: Sequence[str]) -> HookReport:
    report = HookReport()
    if skipped():
        return report
    push: Callable[..., Any] | None = getattr(ws.store, "push", None)
    names = remote_names(ws.store) if push is not None else []
    if not names:
        log.debug("no refstore remote configured; pinned data stays local")
        return report
    remote = choose_remote(names, git_remote)
    if remote is None:
        report.lines.append(
            f"refstore: warning: pinned data not pushed: several refstore remotes ({', '.join(names)}) and none is "
            f"named {git_remote!r} or 'origin'; push with 'refstore push REMOTE'"
        )
        return report
    specs: list[str] = []
    for pin in pushed_pins(ws, updates):
        try:
            specs.append(push_spec(ws.repo, pin))
        except RefstoreError:
            report.lines.append(f"refstore: warning: {pin.display} pins {pin.label}, which this store does not have; not pushed")
    specs = sorted(set(specs))
    if not specs or push is None:
        return report
    try:
        push(remote, specs)
    except RefstoreError as exc:
        report.ok = False
        report.lines += [
            f"refstore: push refused: could not push the pinned data to refstore remote {remote!r}: {exc.message}",
            f"Retry, or push without it: git push --no-verify   (or {hooks.SKIP_ENV}=1 git push ...)",
        ]
        return report
    report.lines.append(f"refstore: pushed {len(specs)} pinned version(s) to {remote}")
    return report
