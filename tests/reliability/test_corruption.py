"""Corruption: single-byte flips in cache objects, manifest records and the SQLite file.

Objects and records carry their own digest, so every flip must be detected, by
``verify`` and on read, with an error that names the digest. The SQLite file has no
page checksums: a flip is *detected* (open or verify fails), *harmless* (not detected
and every row reads back the same) or *silent* (not detected but a row changed). The
silent fraction over a fixed sample of positions is measured and bounded here, and its
figure is in docs/reliability.md.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import make_tree
from faultkit import flip_byte, restore

import refstore
from refstore.core.tree import walk
from refstore.errors import IntegrityError, RefstoreError

ALGORITHMS = ["xxh3-128", "sha256"]


def small_store(work: Path, algorithm: str) -> refstore.Store:
    make_tree(work / "data", {"small.txt": "a small object of some bytes!\n", "sub/b.txt": "bravo\n"})
    store = refstore.init(work, algorithm=algorithm)
    art = refstore.Artifact("ds", metadata={"epoch": 3})
    art.add_dir(work / "data")
    store.log_artifact(art, aliases=["best"])
    return store


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_byte_flip_in_a_cache_object_is_detected(workdir: Path, tmp_path: Path, algorithm: str) -> None:
    store = small_store(workdir, algorithm)
    entry = next(e for e in store.artifact("ds").files() if e.path == "small.txt")
    assert entry.digest is not None
    path = store.repo.cache.path(entry.digest)
    original = path.read_bytes()
    modes = ["copy", "hardlink", "symlink", "auto"]
    for position in range(len(original)):
        flip_byte(path, position, mask=1 << (position % 8))
        problems = store.verify().problems
        assert any(entry.digest in p and "corrupt" in p for p in problems), (position, problems)
        with pytest.raises(IntegrityError, match=entry.digest):
            store.artifact("ds").download(tmp_path / f"out{position}", link=modes[position % len(modes)])
        assert not (tmp_path / f"out{position}" / "small.txt").exists()
        restore(path, original)
    assert store.verify().ok
    store.close()


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
@pytest.mark.parametrize("change", [b"", b"!", b"0" * 70000])
def test_a_cache_object_of_the_wrong_length_is_refused_by_a_link_checkout(
    workdir: Path, tmp_path: Path, link: str, change: bytes
) -> None:
    """Truncated or grown objects: the one-read check of a link checkout must not trust the length."""
    store = small_store(workdir, "xxh3-128")
    entry = next(e for e in store.artifact("ds").files() if e.path == "small.txt")
    assert entry.digest is not None
    path = store.repo.cache.path(entry.digest)
    original = path.read_bytes()
    restore(path, original[:-1] if not change else original + change)
    with pytest.raises(IntegrityError, match=entry.digest):
        store.artifact("ds").download(tmp_path / "out", link=link)
    assert not (tmp_path / "out" / "small.txt").exists()
    assert not path.exists(), "the corrupt object is removed"
    store.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_byte_flip_in_a_manifest_record_is_detected(workdir: Path, algorithm: str) -> None:
    store = small_store(workdir, algorithm)
    root = store.artifact("ds").digest
    body = bytes(store.repo.db.scalar("SELECT body FROM trees WHERE digest = ?", (root,)))
    for position in range(len(body)):
        changed = bytearray(body)
        changed[position] ^= 1 << (position % 8)
        with store.repo.db.transaction():
            store.repo.db.execute("UPDATE trees SET body = ? WHERE digest = ?", (bytes(changed), root))
        store.repo._record.cache_clear()  # a fresh process would read the row again
        problems = store.verify().problems
        assert any(root in p for p in problems), (position, problems)
        with pytest.raises(IntegrityError, match=root):
            list(walk(store.repo.record, root))
    store.close()


def logical_dump(db_path: Path) -> list[tuple[object, ...]]:
    """Every row of every table, plus the format version, in a stable order."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows: list[tuple[object, ...]] = [("user_version", conn.execute("PRAGMA user_version").fetchone()[0])]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            rows.extend((table, *row) for row in sorted(conn.execute(f'SELECT * FROM "{table}"'), key=repr))
        return rows
    finally:
        conn.close()


def classify_flip(work: Path, pristine: bytes, reference: list[tuple[object, ...]], position: int) -> str:
    db_path = work / ".refstore" / "refstore.db"
    for leftover in (db_path.with_name("refstore.db-wal"), db_path.with_name("refstore.db-shm")):
        leftover.unlink(missing_ok=True)
    changed = bytearray(pristine)
    changed[position] ^= 0xFF
    db_path.write_bytes(bytes(changed))
    try:
        with refstore.open(work) as store:
            if not store.verify().ok:
                return "detected"
    except RefstoreError:
        return "detected"
    except Exception as exc:  # anything else reaches the user as an internal error
        return f"crash: {type(exc).__name__}: {exc}"
    try:
        same = logical_dump(db_path) == reference
    except (sqlite3.DatabaseError, ValueError):  # ValueError: text that no longer decodes as UTF-8
        same = False
    return "harmless" if same else "silent"


SQLITE_SAMPLE = 600


def test_sqlite_byte_flips_are_detected_or_harmless(workdir: Path) -> None:
    """Measure detection over a fixed sample of positions; no flip may crash refstore."""
    make_tree(workdir / "data", {f"d{i % 4}/f{i}.txt": f"file {i}\n" for i in range(40)})
    with refstore.init(workdir) as store:
        for v in range(4):
            (workdir / "data" / f"v{v}.txt").write_text(str(v))
            art = refstore.Artifact("ds", description="a dataset", metadata={"v": v, "note": "x" * 40})
            art.add_dir(workdir / "data")
            store.log_artifact(art, aliases=[f"stage{v}"])
        store.set_alias("ds:v1", "best")
    db_path = workdir / ".refstore" / "refstore.db"
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    pristine = db_path.read_bytes()
    reference = logical_dump(db_path)
    rng = random.Random(8)
    positions = sorted(rng.sample(range(len(pristine)), min(SQLITE_SAMPLE, len(pristine))))
    outcome: dict[str, int] = {}
    silent: list[int] = []
    for position in positions:
        kind = classify_flip(workdir, pristine, reference, position)
        outcome[kind] = outcome.get(kind, 0) + 1
        if kind == "silent":
            silent.append(position)
    shutil.copyfile(db_path, workdir / "last-flip.db")
    print(f"sqlite flips over {len(positions)} of {len(pristine)} bytes: {outcome}; silent at {silent[:20]}")
    crashes = {k: n for k, n in outcome.items() if k.startswith("crash")}
    assert not crashes, crashes
    assert outcome.get("silent", 0) <= 0.01 * len(positions), outcome


def test_an_ascii_flip_in_the_schema_text_is_detected(workdir: Path) -> None:
    """A column renamed by one bit (still valid UTF-8 and valid SQL) is caught by the schema check."""
    make_tree(workdir / "data", {"a.txt": "alpha\n"})
    with refstore.init(workdir) as store:
        art = refstore.Artifact("ds")
        art.add_dir(workdir / "data")
        store.log_artifact(art)
    db_path = workdir / ".refstore" / "refstore.db"
    data = bytearray(db_path.read_bytes())
    position = data.find(b"file_count INTEGER")
    assert position > 0
    data[position] ^= 0x01  # 'f' -> 'g': "gile_count"
    db_path.write_bytes(bytes(data))
    with refstore.open(workdir) as store:
        problems = store.verify().problems
    assert any("differs from format" in p and "versions" in p for p in problems), problems
