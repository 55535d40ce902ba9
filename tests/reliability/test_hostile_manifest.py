"""Hostile manifests: what a malicious remote could deliver is refused before anything is written.

Records are injected straight into the ``trees`` table with a version row pointing at
them, exactly as a pull would store what a remote delivered. Then a checkout must fail
with a refstore error, the target directory must not receive a single file, nothing
outside it may change, and ``verify`` must report the store. Cases where the manifest is
acceptable but the *target* is hostile (a pre-existing symlink) are at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import refstore
from refstore.core import hashing
from refstore.core.db import now
from refstore.errors import IntegrityError, RefstoreError, UnsafePathError

Node = dict[str, Any]


def raw_record(nodes: list[Node]) -> bytes:
    """Record bytes exactly as given: no sorting, no validation (a remote controls them)."""
    return json.dumps(nodes, separators=(",", ":"), ensure_ascii=False).encode()


def inject(store: refstore.Store, records: list[bytes], *, root_key: str | None = None, size: int = 0, count: int = 0) -> str:
    """Store record bodies (last = root) and a version ``evil:vN`` of the root; return its spec."""
    repo = store.repo
    keys = [hashing.hash_bytes(body, repo.algorithm) for body in records]
    if root_key is not None:
        keys[-1] = root_key
    with repo.db.transaction():
        for key, body in zip(keys, records, strict=True):
            repo.db.execute("INSERT OR REPLACE INTO trees (digest, body) VALUES (?, ?)", (key, body))
        art = repo.db.scalar("SELECT id FROM artifacts WHERE name = 'evil'")
        if art is None:
            art = repo.db.execute(
                "INSERT INTO artifacts (project, name, type, created_at) VALUES ('default', 'evil', 'dataset', ?)", (now(),)
            ).lastrowid
        number = repo.db.scalar("SELECT COALESCE(MAX(number) + 1, 0) FROM versions WHERE artifact_id = ?", (art,))
        repo.db.execute(
            "INSERT INTO versions (artifact_id, number, digest, size, file_count, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (art, number, keys[-1], size, count, now()),
        )
    return f"evil:v{number}"


def file_node(store: refstore.Store, name: str, data: bytes = b"payload\n", size: int | None = None) -> Node:
    digest = store.repo.cache.add_bytes(data)
    return {"name": name, "type": "file", "digest": digest, "size": len(data) if size is None else size}


def dir_node(body: bytes, name: str, size: int, count: int, algorithm: str = "xxh3-128") -> Node:
    return {"name": name, "type": "dir", "digest": hashing.hash_bytes(body, algorithm), "size": size, "count": count}


Case = Callable[[refstore.Store], tuple[list[bytes], dict[str, Any]]]


def single(nodes_of: Callable[[refstore.Store], list[Node]]) -> Case:
    def case(store: refstore.Store) -> tuple[list[bytes], dict[str, Any]]:
        nodes = nodes_of(store)
        return [raw_record(nodes)], {"size": sum(n["size"] for n in nodes), "count": len(nodes)}

    return case


def nested(inner: Callable[[refstore.Store], list[Node]]) -> Case:
    """The hostile name one level down, behind an honest directory."""

    def case(store: refstore.Store) -> tuple[list[bytes], dict[str, Any]]:
        nodes = inner(store)
        body = raw_record(nodes)
        size = sum(n["size"] for n in nodes)
        root = raw_record([dir_node(body, "sub", size, len(nodes))])
        return [body, root], {"size": size, "count": len(nodes)}

    return case


def self_cycle(store: refstore.Store) -> tuple[list[bytes], dict[str, Any]]:
    """A record that names itself as its child: only possible if record keys are not checked."""
    key = "c" * 32
    body = raw_record([{"name": "loop", "type": "dir", "digest": key, "size": 0, "count": 0}])
    return [body], {"root_key": key}


def lying_record(store: refstore.Store) -> tuple[list[bytes], dict[str, Any]]:
    """An honest-looking record stored under a key that is not its digest."""
    node = file_node(store, "a.txt")
    return [raw_record([node])], {"root_key": "d" * 32, "size": node["size"], "count": 1}


def deep(store: refstore.Store) -> tuple[list[bytes], dict[str, Any]]:
    """1,500 nested directories: deeper than Python's recursion limit."""
    node = file_node(store, "x")
    body = raw_record([node])
    records = [body]
    for _ in range(1500):
        body = raw_record([dir_node(body, "a", node["size"], 1)])
        records.append(body)
    return records, {"size": node["size"], "count": 1}


HOSTILE: dict[str, Case] = {
    "dotdot": single(lambda s: [file_node(s, "..")]),
    "dotdot-nested": nested(lambda s: [file_node(s, "..")]),
    "slash-in-name": single(lambda s: [file_node(s, "../../escape.txt")]),
    "absolute": single(lambda s: [file_node(s, "/tmp/refstore-escape.txt")]),
    "drive-letter": single(lambda s: [file_node(s, "C:escape.txt")]),
    "backslash": single(lambda s: [file_node(s, "..\\escape.txt")]),
    "nul-byte": single(lambda s: [file_node(s, "a\x00b.txt")]),
    "empty-name": single(lambda s: [file_node(s, "")]),
    "dot": single(lambda s: [file_node(s, ".")]),
    "too-long": single(lambda s: [file_node(s, "x" * 5000)]),
    "duplicate": single(lambda s: [file_node(s, "a.txt"), file_node(s, "a.txt", b"other")]),
    "file-and-dir": single(
        lambda s: [file_node(s, "a"), dir_node(raw_record([file_node(s, "b")]), "a", 8, 1)],
    ),
    "unsorted": single(lambda s: [file_node(s, "b.txt"), file_node(s, "a.txt", b"other")]),
    "negative-size": single(lambda s: [file_node(s, "a.txt", size=-1)]),
    "bool-size": single(lambda s: [{**file_node(s, "a.txt"), "size": True}]),
    "size-lies": single(lambda s: [file_node(s, "a.txt", b"0123456789" * 10, size=3)]),
    "digest-not-hex": single(lambda s: [{**file_node(s, "a.txt"), "digest": "../../../etc/passwd"}]),
    "digest-absent-object": single(lambda s: [{**file_node(s, "a.txt"), "digest": "e" * 32}]),
    "unknown-type": single(lambda s: [{**file_node(s, "a.txt"), "type": "symlink", "target": "/etc/passwd"}]),
    "not-a-list": lambda s: ([b'{"name": "a"}'], {}),
    "not-json": lambda s: ([b"\xff\xfe garbage"], {}),
    "self-cycle": self_cycle,
    "record-key-lies": lying_record,
    "deep-nesting": deep,
}


@pytest.fixture
def guarded(store: refstore.Store, tmp_path: Path) -> tuple[refstore.Store, Path, Path]:
    """A store, a checkout target (inside ``tmp_path/target``) and a sentinel directory beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    return store, tmp_path / "target", outside


def listing(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"") for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_manifest_is_refused_before_any_write(case: str, guarded: tuple[refstore.Store, Path, Path]) -> None:
    store, target, outside = guarded
    records, extra = HOSTILE[case](store)
    spec = inject(store, records, **extra)
    with pytest.raises(RefstoreError) as info:
        store.artifact(spec).download(target)
    assert isinstance(info.value, (UnsafePathError, IntegrityError, RefstoreError))
    assert "\n" not in str(info.value)
    assert listing(target) == {}, f"{case}: files were written into the target"
    assert listing(outside) == {"keep.txt": b"untouched"}
    assert not (Path("/tmp") / "refstore-escape.txt").exists()
    problems = store.verify().problems
    assert problems, f"{case}: verify did not report the hostile manifest"


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
@pytest.mark.parametrize("lie", [3, 101, 0])
def test_lying_size_is_refused_before_any_link(link: str, lie: int, guarded: tuple[refstore.Store, Path, Path]) -> None:
    """A link checkout checks every object's size (and digest) before the first link, not per file."""
    store, target, _ = guarded
    nodes = [file_node(store, "a.txt"), file_node(store, "b.txt", b"0123456789" * 10, size=lie)]
    spec = inject(store, [raw_record(nodes)], size=sum(n["size"] for n in nodes), count=2)
    with pytest.raises(IntegrityError, match="declares"):
        store.artifact(spec).download(target, link=link)
    assert listing(target) == {}
    assert store.repo.cache.check(nodes[1]["digest"]), "an intact object must not be removed for a lying manifest"


def test_lying_directory_totals_are_reported_by_verify(store: refstore.Store, tmp_path: Path) -> None:
    """A directory node that misstates its size/count writes nothing wrong, but verify names it."""
    inner_node = file_node(store, "x.txt")
    inner = raw_record([inner_node])
    root = raw_record([dir_node(inner, "sub", 999, 7)])
    spec = inject(store, [inner, root], size=inner_node["size"], count=1)
    problems = store.verify().problems
    assert any("declares 999 bytes in 7 files" in p for p in problems), problems
    out = store.artifact(spec).download(tmp_path / "t")
    assert (out / "sub" / "x.txt").read_bytes() == b"payload\n"


def test_lying_version_row_is_refused(store: refstore.Store, tmp_path: Path) -> None:
    node = file_node(store, "x.txt")
    spec = inject(store, [raw_record([node])], size=5, count=3)
    assert any("row says 5 bytes in 3 files" in p for p in store.verify().problems)
    with pytest.raises(IntegrityError):
        store.artifact(spec).download(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_preexisting_symlinked_directory_in_target_is_refused(guarded: tuple[refstore.Store, Path, Path]) -> None:
    store, target, outside = guarded
    body = raw_record([file_node(store, "x.txt")])
    spec = inject(store, [body, raw_record([dir_node(body, "sub", 8, 1)])], size=8, count=1)
    target.mkdir()
    os.symlink(outside, target / "sub")
    with pytest.raises(UnsafePathError, match="outside"):
        store.artifact(spec).download(target)
    assert listing(outside) == {"keep.txt": b"untouched"}


def test_preexisting_file_symlink_in_target_is_replaced_not_followed(guarded: tuple[refstore.Store, Path, Path]) -> None:
    store, target, outside = guarded
    spec = inject(store, [raw_record([file_node(store, "keep.txt")])], size=8, count=1)
    target.mkdir()
    os.symlink(outside / "keep.txt", target / "keep.txt")
    store.artifact(spec).download(target)
    assert not (target / "keep.txt").is_symlink()
    assert (target / "keep.txt").read_bytes() == b"payload\n"
    assert listing(outside) == {"keep.txt": b"untouched"}


def test_symlinked_target_root_is_followed_as_the_users_choice(guarded: tuple[refstore.Store, Path, Path]) -> None:
    """The root itself may be a symlink the user made; only paths *below* it are guarded."""
    store, target, outside = guarded
    spec = inject(store, [raw_record([file_node(store, "new.txt")])], size=8, count=1)
    os.symlink(outside, target)
    store.artifact(spec).download(target)
    assert (outside / "new.txt").read_bytes() == b"payload\n"
