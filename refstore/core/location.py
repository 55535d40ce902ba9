"""Finding and creating a store directory.

A store is a ``.refstore/`` directory. Commands find it the way git finds
``.git``: ``REFSTORE_DIR`` if set, else walking up from the working directory.
``REFSTORE_DIR`` may name the ``.refstore`` directory itself or its parent.
"""

from __future__ import annotations

import os
from pathlib import Path

from refstore.errors import StoreNotFoundError, UsageError

STORE_DIRNAME = ".refstore"
DATABASE_NAME = "refstore.db"


def _as_store_dir(path: Path) -> Path | None:
    if (path / DATABASE_NAME).is_file():
        return path
    if (path / STORE_DIRNAME / DATABASE_NAME).is_file():
        return path / STORE_DIRNAME
    return None


def find_store_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The ``.refstore`` directory for ``start`` (default: ``REFSTORE_DIR`` or the cwd)."""
    explicit = os.environ.get("REFSTORE_DIR")
    if start is None and explicit:
        found = _as_store_dir(Path(explicit).expanduser().absolute())
        if found is None:
            raise StoreNotFoundError(f"REFSTORE_DIR={explicit} is not a refstore store; run 'refstore init' there or unset it")
        return found
    here = Path(start if start is not None else os.getcwd()).expanduser().absolute()
    for candidate in (here, *here.parents):
        found = _as_store_dir(candidate)
        if found is not None:
            return found
    main = main_worktree(here)
    found = _as_store_dir(main) if main is not None else None
    if found is not None:
        return found
    raise StoreNotFoundError(f"no refstore store in {here} or any parent; run 'refstore init' to create one")


def new_store_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Where ``refstore init`` would create the store for ``path`` (default cwd)."""
    base = Path(path if path is not None else os.getcwd()).expanduser().absolute()
    if base.name == STORE_DIRNAME:
        base = base.parent
    if base.exists() and not base.is_dir():
        raise UsageError(f"{base} is a file; give a directory to create the store in")
    return base / STORE_DIRNAME


def main_worktree(start: Path) -> Path | None:
    """For a linked git worktree (``.git`` is a file), the main worktree's top directory.

    A store is ignored by git, so ``git worktree add`` does not copy it: a linked
    worktree shares the main worktree's store (and its object cache). Reads
    ``.git`` and ``commondir`` only; no git process.
    """
    for candidate in (start, *start.parents):
        marker = candidate / ".git"
        if marker.is_dir():
            return None
        if not marker.is_file():
            continue
        try:
            text = marker.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            gitdir = Path(text[len("gitdir:") :].strip())
            gitdir = gitdir if gitdir.is_absolute() else candidate / gitdir
            common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
        except OSError:
            return None
        return common.parent if common.name == ".git" else None
    return None
