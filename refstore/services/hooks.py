"""Installing refstore's git hooks next to whatever hooks a repository already has.

Each hook is a small POSIX sh script that runs ``PYTHON -m refstore hooks run
NAME`` with the interpreter that installed it (so hooks work from GUI git
clients and un-activated virtualenvs), falling back to ``refstore`` on PATH
when that interpreter is gone. A hook that was already there is moved to
``NAME.pre-refstore`` and run first, with the same arguments and stdin; its
failure stops the git operation as it did before. Uninstalling puts it back.
``REFSTORE_SKIP_HOOKS=1`` skips refstore's part (the chained hook still runs).
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from refstore.core.objects import named_temp_beside
from refstore.errors import ConflictError
from refstore.services.gitpin import LOCK_NAME
from refstore.services.gitutil import run_git

HOOKS = ("pre-commit", "post-checkout", "post-merge", "pre-push")
NEVER_FAIL = ("post-checkout", "post-merge")  # their exit status becomes the git command's
MARKER = "# refstore-hook 1"
CHAINED_SUFFIX = ".pre-refstore"
SKIP_ENV = "REFSTORE_SKIP_HOOKS"
MERGE_DRIVER = "refstore"

_TEMPLATE = """#!/bin/sh
{marker}: installed by 'refstore hooks install'; run it again rather than editing this file.
# Skip refstore's check: {skip}=1 git ...  (pre-commit and pre-push also honour git's --no-verify).
hook={hook}
python={python}
chained="$(dirname "$0")/$hook{suffix}"
run_refstore() {{
    if [ -x "$python" ]; then
        "$python" -m refstore hooks run "$hook" "$@"
    elif command -v refstore >/dev/null 2>&1; then
        refstore hooks run "$hook" "$@"
    else
        echo "refstore: $hook hook: cannot run refstore ($python is gone, no refstore on PATH);" \\
            "run 'refstore hooks install' again, or set {skip}=1" >&2
        return {missing_status}
    fi
}}
{body}"""

_BODY_PLAIN = """if [ -x "$chained" ]; then
    "$chained" "$@" || exit $?
fi
[ "${{{skip}:-}}" = 1 ] && exit 0
run_refstore "$@"
"""

# post-checkout, post-merge: the hook's exit status becomes git's, so refstore's part never changes it.
_BODY_POST_CHECKOUT = """status=0
if [ -x "$chained" ]; then
    "$chained" "$@" || status=$?
fi
[ "${{{skip}:-}}" = 1 ] || run_refstore "$@" || true
exit $status
"""

# pre-push receives the refs on stdin: keep them for both the chained hook and refstore.
_BODY_STDIN = """input=$(cat)
feed() {{ [ -n "$input" ] && printf '%s\\n' "$input"; }}
if [ -x "$chained" ]; then
    feed | "$chained" "$@" || exit $?
fi
[ "${{{skip}:-}}" = 1 ] && exit 0
feed | run_refstore "$@"
"""


def script(hook: str, python: str) -> str:
    """The text of hook ``hook``; post-checkout and post-merge never fail (code must not fail because of data)."""
    bodies = {"pre-push": _BODY_STDIN, "post-checkout": _BODY_POST_CHECKOUT, "post-merge": _BODY_POST_CHECKOUT}
    body = bodies.get(hook, _BODY_PLAIN).format(skip=SKIP_ENV)
    return _TEMPLATE.format(
        marker=MARKER,
        skip=SKIP_ENV,
        hook=hook,
        python=shlex.quote(python),
        suffix=CHAINED_SUFFIX,
        missing_status=0 if hook in NEVER_FAIL else 1,
        body=body,
    )


def is_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARKER in handle.read(4096)
    except (FileNotFoundError, IsADirectoryError):
        return False


def _write_executable(path: Path, text: str) -> None:
    temp = named_temp_beside(path)
    try:
        temp.write_text(text, encoding="utf-8")
        mode = temp.stat().st_mode
        os.chmod(temp, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def install(hooks_dir: Path, python: str) -> list[tuple[str, str]]:
    """Install every hook; return ``(hook, what happened)`` pairs: installed, updated, chained."""
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:  # check everything before changing anything
        path, chained = hooks_dir / hook, hooks_dir / (hook + CHAINED_SUFFIX)
        if path.exists() and not is_ours(path) and chained.exists():
            raise ConflictError(
                f"{path} exists and so does {chained.name}; refstore would have to overwrite one. "
                f"Merge them by hand (or remove {chained.name}) and run 'refstore hooks install' again"
            )
    done: list[tuple[str, str]] = []
    for hook in HOOKS:
        path, chained = hooks_dir / hook, hooks_dir / (hook + CHAINED_SUFFIX)
        text = script(hook, python)
        if is_ours(path):
            action = "unchanged" if path.read_text(encoding="utf-8") == text else "updated"
        elif path.exists() or path.is_symlink():
            os.replace(path, chained)
            action = f"chained (your hook now runs first from {chained.name})"
        else:
            action = "installed"
        if action != "unchanged":
            _write_executable(path, text)
        done.append((hook, action))
    return done


def uninstall(hooks_dir: Path) -> list[tuple[str, str]]:
    """Remove refstore's hooks and restore the ones they chained to."""
    done: list[tuple[str, str]] = []
    for hook in HOOKS:
        path, chained = hooks_dir / hook, hooks_dir / (hook + CHAINED_SUFFIX)
        if not is_ours(path):
            done.append((hook, "not installed"))
            continue
        if chained.exists() or chained.is_symlink():
            os.replace(chained, path)
            done.append((hook, "removed (previous hook restored)"))
        else:
            path.unlink()
            done.append((hook, "removed"))
    return done


def configure_merge_driver(root: Path, python: str) -> str:
    """Register the lock-file merge driver in the repository's git config; return the driver command."""
    command = f"{shlex.quote(python)} -m refstore lock-merge %O %A %B %P"
    run_git(["config", f"merge.{MERGE_DRIVER}.name", f"refstore: merge {LOCK_NAME} per tracked path"], root)
    run_git(["config", f"merge.{MERGE_DRIVER}.driver", command], root)
    return command


def remove_merge_driver(root: Path) -> None:
    run_git(["config", "--remove-section", f"merge.{MERGE_DRIVER}"], root, check=False)
