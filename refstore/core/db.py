"""The store's SQLite database: connection settings, transactions, migrations.

The format version lives in ``PRAGMA user_version``. Each migration is a named
step applied in one transaction together with its record in ``migrations``;
before migrating an existing store the database file is copied aside, as restic
does. A store whose version is newer than this code knows is refused.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refstore.errors import FormatError, LockedError, RefstoreError

BUSY_TIMEOUT_MS = 60_000
SQL_BATCH = 500  # bound on `IN (…)` parameters per statement


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several statements inside the caller's transaction.

    ``executescript`` would COMMIT first, which breaks the one-transaction-per-
    migration rule, so statements are split and executed one by one.
    """
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            conn.execute(buffer)
            buffer = ""
    if buffer.strip():
        conn.execute(buffer)


def _migration_1(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE trees (digest TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            project TEXT NOT NULL,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (project, name)
        );
        CREATE TABLE versions (
            id INTEGER PRIMARY KEY,
            artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
            number INTEGER NOT NULL,
            digest TEXT NOT NULL REFERENCES trees(digest),
            size INTEGER NOT NULL,
            file_count INTEGER NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            run_id TEXT,
            UNIQUE (artifact_id, number)
        );
        CREATE INDEX versions_digest ON versions (digest);
        CREATE TABLE aliases (
            artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
            alias TEXT NOT NULL,
            version_id INTEGER NOT NULL REFERENCES versions(id),
            PRIMARY KEY (artifact_id, alias)
        );
        CREATE TABLE stat_cache (
            path TEXT PRIMARY KEY,
            inode INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            digest TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    )


def _migration_2(conn: sqlite3.Connection) -> None:
    """Digests of downloaded reference entries, keyed by their recorded remote identity."""
    run_script(conn, "CREATE TABLE reference_digests (key TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID;")


def _migration_3(conn: sqlite3.Connection) -> None:
    """Runs, their inputs, metrics history and tags, and importer progress (lineage, queries, imports)."""
    run_script(
        conn,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            name TEXT NOT NULL,
            job_type TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
            config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
            summary TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(summary)),
            created_at TEXT NOT NULL,
            finished_at TEXT,
            git_commit TEXT,
            git_dirty INTEGER,
            command TEXT,
            host TEXT,
            pid INTEGER,
            source TEXT
        );
        CREATE INDEX runs_created ON runs (created_at);
        CREATE INDEX runs_project ON runs (project, created_at);
        CREATE TABLE run_inputs (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, version_id)
        ) WITHOUT ROWID;
        CREATE INDEX run_inputs_version ON run_inputs (version_id, run_id);
        CREATE INDEX versions_run ON versions (run_id);
        CREATE TABLE run_metrics (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            logged_at TEXT NOT NULL
        );
        CREATE INDEX run_metrics_run ON run_metrics (run_id, key, step);
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX run_tags_tag ON run_tags (tag, run_id);
        CREATE TABLE import_progress (
            source TEXT NOT NULL,
            item TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            fingerprint TEXT NOT NULL DEFAULT '',
            target TEXT,
            error TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (source, item)
        ) WITHOUT ROWID;
        """,
    )


def _migration_4(conn: sqlite3.Connection) -> None:
    """Remotes: their URL and non-secret options, and what we last saw on each.

    ``remote_versions`` says which local versions a remote holds (so verify
    accepts their objects being absent locally, and push skips them);
    ``remote_aliases`` is the alias target last seen on a remote, which is how
    push and pull tell "I moved it" from "someone else moved it".
    """
    run_script(
        conn,
        """
        CREATE TABLE remotes (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE TABLE remote_versions (
            remote TEXT NOT NULL REFERENCES remotes(name) ON DELETE CASCADE,
            version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            PRIMARY KEY (remote, version_id)
        ) WITHOUT ROWID;
        CREATE TABLE remote_aliases (
            remote TEXT NOT NULL REFERENCES remotes(name) ON DELETE CASCADE,
            project TEXT NOT NULL,
            name TEXT NOT NULL,
            alias TEXT NOT NULL,
            record TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (remote, project, name, alias)
        ) WITHOUT ROWID;
        """,
    )


# Timestamps written by triggers, in the same shape as :func:`now` (microseconds, so text order is time order).
_SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'"


def _migration_5(conn: sqlite3.Connection) -> None:
    """Runs on remotes: how often and when each run last changed, and inputs known only by identity.

    Triggers on every change to a run, its tags, history or new inputs add one to
    ``runs.revision`` and move ``runs.updated_at`` to now (never backwards), so
    push can tell which of two snapshots of a run is newer (docs/format.md "Run
    records"). ``run_pending_edges`` holds a run's input and output edges to
    versions this store does not have (not pulled yet, or deleted here): kept by
    the version's identity, so the run's record stays whole, and an input becomes
    a ``run_inputs`` row again when the version arrives.
    """
    touch = f"UPDATE runs SET revision = revision + 1, updated_at = MAX({_SQL_NOW}, COALESCE(updated_at, '')) WHERE id = {{ref}};"
    run_script(
        conn,
        f"""
        ALTER TABLE runs ADD COLUMN updated_at TEXT;
        ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        CREATE TRIGGER runs_touch_insert AFTER INSERT ON runs WHEN NEW.updated_at IS NULL
        BEGIN UPDATE runs SET updated_at = NEW.created_at WHERE id = NEW.id; END;
        CREATE TRIGGER runs_touch_update AFTER UPDATE OF project, name, job_type, status, config, summary, created_at,
            finished_at, git_commit, git_dirty, command, host, pid, source ON runs
        BEGIN {touch.format(ref="NEW.id")} END;
        CREATE TRIGGER run_tags_touch_insert AFTER INSERT ON run_tags BEGIN {touch.format(ref="NEW.run_id")} END;
        CREATE TRIGGER run_tags_touch_delete AFTER DELETE ON run_tags BEGIN {touch.format(ref="OLD.run_id")} END;
        CREATE TRIGGER run_metrics_touch_insert AFTER INSERT ON run_metrics BEGIN {touch.format(ref="NEW.run_id")} END;
        CREATE TRIGGER run_inputs_touch_insert AFTER INSERT ON run_inputs BEGIN {touch.format(ref="NEW.run_id")} END;
        UPDATE runs SET updated_at = COALESCE(finished_at, created_at);
        CREATE TABLE run_pending_edges (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
            project TEXT NOT NULL,
            name TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (run_id, kind, project, name, record)
        ) WITHOUT ROWID;
        CREATE INDEX run_pending_edges_record ON run_pending_edges (record);
        """,
    )


Migration = tuple[str, Callable[[sqlite3.Connection], None]]

# Append only. Position i (1-based) produces format version i.
MIGRATIONS: list[Migration] = [
    ("0001_initial", _migration_1),
    ("0002_reference_digests", _migration_2),
    ("0003_runs", _migration_3),
    ("0004_remotes", _migration_4),
    ("0005_run_sync", _migration_5),
]
FORMAT_VERSION = len(MIGRATIONS)


def now() -> str:
    """UTC timestamp with microseconds, sortable as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"


def _writable(path: Path) -> bool:
    """Whether this process may write the database and its directory (WAL needs both)."""
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return False
    try:
        return not os.statvfs(path.parent).f_flag & os.ST_RDONLY
    except OSError:
        return True


class Database:
    """A connection to ``refstore.db`` with explicit transactions.

    The connection runs in autocommit mode; every write goes through
    :meth:`transaction`, which uses ``BEGIN IMMEDIATE`` so that concurrent
    writers queue on SQLite's lock instead of failing half way.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not create and not path.exists():
            raise FormatError(f"database {path} is missing; the store is damaged or not initialised")
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._refuse_newer()  # before any pragma that would rewrite the file header
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a damaged schema can yield undecodable messages
            if not _writable(path):
                raise RefstoreError(
                    f"store {path.parent} is read-only ({exc}); refstore needs write access to it, even to read "
                    "(SQLite WAL) - copy the store somewhere writable or fix its permissions"
                ) from exc
            raise FormatError(f"{path} is not a refstore database ({exc}); restore it from a backup") from exc
        self._depth = 0
        self._migrate(fresh=create)

    @property
    def utils(self) -> Any:
        """A sqlite-utils view of the same connection, for introspection (imported lazily:
        sqlite-utils pulls in ~130 ms of imports that most commands do not need)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    # -- transactions -------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block atomically; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):
                raise self._read_only(exc) from exc
            raise LockedError(f"the store database is locked by another process ({exc}); retry later") from exc
        self._depth = 1
        try:
            yield self.conn
        except BaseException as exc:
            self._depth = 0
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
                raise self._read_only(exc) from exc
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def _read_only(self, exc: Exception) -> RefstoreError:
        return RefstoreError(f"store {self.path.parent} is read-only ({exc}); copy it somewhere writable or fix its permissions")

    # -- queries ------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def existing(self, table: str, column: str, values: Sequence[str]) -> set[str]:
        """Which of ``values`` are present in ``table.column`` (batched ``IN``)."""
        found: set[str] = set()
        assert table.isidentifier() and column.isidentifier()
        for start in range(0, len(values), SQL_BATCH):
            chunk = list(values[start : start + SQL_BATCH])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    # -- config -------------------------------------------------------------
    def get_config(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM config WHERE key = ?", (key,))
        return default if value is None else str(value)

    def set_config(self, key: str, value: str) -> None:
        with self.transaction():
            self.execute("INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)", (key, value))

    # -- schema -------------------------------------------------------------
    def format_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    def _refuse_newer(self) -> None:
        current = self.format_version()
        if current > FORMAT_VERSION:
            self.conn.close()
            raise FormatError(
                f"this store has format version {current}, newer than this refstore understands "
                f"({FORMAT_VERSION}); upgrade refstore (pip install -U refstore)"
            )

    def _migrate(self, *, fresh: bool) -> None:
        current = self.format_version()
        if current == FORMAT_VERSION:
            return
        if current > 0 and not fresh:
            backup = self.path.with_name(f"{self.path.name}.v{current}.bak")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copy2(self.path, backup)
        self.conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for number, (name, apply) in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                apply(self.conn)
                self.conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, now()))
                self.conn.execute(f"PRAGMA user_version = {number}")
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise RefstoreError(f"migration {name} failed ({exc}); the store was left at version {number - 1}") from exc

    def close(self) -> None:
        self.conn.close()
