"""Import bookkeeping: which items of a source are done, with what fingerprint, and which failed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from refstore.core.db import now
from refstore.core.repo import Repository


def fingerprint(value: Any) -> str:
    """A stable digest of any JSON-able value (what an item looked like when imported)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class ImportReport:
    """What one import did."""

    source: str
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class ItemState:
    status: str
    fingerprint: str
    target: str | None


class Tracker:
    """Reads and writes ``import_progress`` rows for one source."""

    def __init__(self, repo: Repository, source: str) -> None:
        self.repo = repo
        self.source = source

    def state(self, item: str) -> ItemState | None:
        row = self.repo.db.one(
            "SELECT status, fingerprint, target FROM import_progress WHERE source = ? AND item = ?", (self.source, item)
        )
        return None if row is None else ItemState(row["status"], row["fingerprint"], row["target"])

    def is_done(self, item: str, print_: str) -> bool:
        found = self.state(item)
        return found is not None and found.status == "done" and found.fingerprint == print_

    def target(self, item: str) -> str | None:
        found = self.state(item)
        return None if found is None else found.target

    def done(self, item: str, print_: str, target: str | None) -> None:
        """Mark ``item`` imported; call inside the transaction that imported it."""
        with self.repo.db.transaction():
            self.repo.db.execute(
                "INSERT INTO import_progress (source, item, status, fingerprint, target, error, updated_at)"
                " VALUES (?, ?, 'done', ?, ?, NULL, ?)"
                " ON CONFLICT (source, item) DO UPDATE SET status = 'done', fingerprint = excluded.fingerprint,"
                " target = excluded.target, error = NULL, updated_at = excluded.updated_at",
                (self.source, item, print_, target, now()),
            )

    def failed(self, item: str, error: str, target: str | None = None) -> None:
        """Record a failure; the item is retried by the next import."""
        with self.repo.db.transaction():
            self.repo.db.execute(
                "INSERT INTO import_progress (source, item, status, fingerprint, target, error, updated_at)"
                " VALUES (?, ?, 'failed', '', ?, ?, ?)"
                " ON CONFLICT (source, item) DO UPDATE SET status = 'failed', fingerprint = '',"
                " target = COALESCE(excluded.target, import_progress.target), error = excluded.error,"
                " updated_at = excluded.updated_at",
                (self.source, item, target, error, now()),
            )

    def items(self) -> list[dict[str, Any]]:
        return self.repo.db.query(
            "SELECT item, status, target, error, updated_at FROM import_progress WHERE source = ? ORDER BY item", (self.source,)
        )
