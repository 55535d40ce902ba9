"""Digests learned by downloading reference entries.

A manifest is content-addressed and immutable, so the digest of a reference's
bytes, learned only when it is first downloaded, cannot be written back into
it. Instead the store remembers ``identity → digest`` in the
``reference_digests`` table, where the identity is a hash over the entry's
size and its full recorded remote metadata (uri, etag, version id, …). Equal
identity means the same remote object version, so a second download finds the
bytes in the cache and fetches nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from refstore.core import hashing
from refstore.core.db import SQL_BATCH, Database


def identity(size: int, ref: Mapping[str, Any], algorithm: str) -> str:
    """The key under which a reference's digest is remembered."""
    body = json.dumps({"size": size, "ref": dict(ref)}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashing.hash_bytes(body.encode(), algorithm)


def lookup(db: Database, keys: Sequence[str]) -> dict[str, str]:
    """``{key: digest}`` for the keys that have a remembered digest."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), SQL_BATCH):
        chunk = list(keys[start : start + SQL_BATCH])
        marks = ",".join("?" * len(chunk))
        for key, digest in db.execute(f"SELECT key, digest FROM reference_digests WHERE key IN ({marks})", chunk):
            found[key] = digest
    return found


def remember(db: Database, rows: Iterable[tuple[str, str]]) -> None:
    """Store ``(key, digest)`` pairs (after their objects are in the cache)."""
    with db.transaction():
        db.conn.executemany("INSERT OR REPLACE INTO reference_digests (key, digest) VALUES (?, ?)", list(rows))


def all_digests(db: Database) -> set[str]:
    return {row[0] for row in db.execute("SELECT DISTINCT digest FROM reference_digests")}
