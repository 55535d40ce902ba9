"""Format versions: old stores open and migrate (with a backup), newer ones are refused."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import refstore
from refstore.core.db import FORMAT_VERSION, MIGRATIONS
from refstore.errors import FormatError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def restore_fixture(name: str, target: Path) -> Path:
    """Rebuild a store saved as an SQL dump plus its objects."""
    store_dir = target / ".refstore"
    shutil.copytree(FIXTURES / name / "objects", store_dir / "objects")
    (store_dir / "tmp").mkdir()
    db = sqlite3.connect(store_dir / "refstore.db")
    db.executescript((FIXTURES / name / "refstore.sql").read_text())
    db.close()
    return store_dir


def test_format1_store_opens_and_migrates(tmp_path: Path) -> None:
    store_dir = restore_fixture("format1", tmp_path)
    with refstore.open(tmp_path) as store:
        version = store.artifact("greetings:first")
        assert (version.version, version.metadata, version.file_count) == ("v0", {"k": 1}, 2)
        assert store.repo.db.format_version() == FORMAT_VERSION
        applied = [r["name"] for r in store.repo.db.query("SELECT name FROM migrations ORDER BY name")]
        assert applied == [name for name, _ in MIGRATIONS]
        out = version.download(tmp_path / "out")
        assert (out / "hello.txt").read_text() == "hello\n"
        assert store.verify().ok
    backup = store_dir / "refstore.db.v1.bak"
    assert backup.exists() == (FORMAT_VERSION > 1)


def test_newer_format_refused_and_untouched(tmp_path: Path) -> None:
    store_dir = restore_fixture("format1", tmp_path)
    db = sqlite3.connect(store_dir / "refstore.db")
    db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    db.close()
    before = (store_dir / "refstore.db").read_bytes()
    with pytest.raises(FormatError, match="newer than this refstore"):
        refstore.open(tmp_path)
    assert (store_dir / "refstore.db").read_bytes() == before


def test_not_a_database(tmp_path: Path) -> None:
    store_dir = tmp_path / ".refstore"
    store_dir.mkdir()
    (store_dir / "refstore.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FormatError, match="not a refstore database"):
        refstore.open(tmp_path)
