"""Remembering digests of files that did not change: (path, inode, size, mtime_ns) → digest.

A file whose stat tuple is unchanged since it was hashed is not read again.
To avoid git's "racy clean" problem a file is only remembered when its mtime
is older than ``RACY_WINDOW_NS`` before hashing began: a later write in the
same timestamp tick could otherwise go unseen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from refstore.core.db import Database

RACY_WINDOW_NS = 1_000_000_000
StatKey = tuple[int, int, int]  # inode, size, mtime_ns


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class StatCache:
    """Digest lookups for files under one directory, loaded with one query."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, prefix: str) -> dict[str, tuple[StatKey, str]]:
        """All remembered files whose absolute path starts with ``prefix``."""
        rows = self.db.execute(
            "SELECT path, inode, size, mtime_ns, digest FROM stat_cache WHERE path >= ? AND path < ?",
            (prefix, prefix + "\U0010ffff"),
        )
        return {path: ((inode, size, mtime), digest) for path, inode, size, mtime, digest in rows}

    def load_rows(self, prefix: str) -> dict[str, tuple[str, int, int, int, str]]:
        """Like :meth:`load`, keyed by path but with the raw rows (path, inode, size, mtime_ns, digest).

        Building no nested tuples makes loading a million rows markedly cheaper.
        """
        rows = self.db.execute(
            "SELECT path, inode, size, mtime_ns, digest FROM stat_cache WHERE path >= ? AND path < ?",
            (prefix, prefix + "\U0010ffff"),
        )
        return {row[0]: row for row in rows}

    @staticmethod
    def is_safe(key: StatKey, hashed_at_ns: int) -> bool:
        return key[2] < hashed_at_ns - RACY_WINDOW_NS

    def record(self, rows: Iterable[tuple[str, StatKey, str]]) -> None:
        """Remember digests; call inside the transaction that commits the version."""
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO stat_cache (path, inode, size, mtime_ns, digest) VALUES (?, ?, ?, ?, ?)",
            ((path, key[0], key[1], key[2], digest) for path, key, digest in rows),
        )
