"""Manifests as a Merkle tree of directory records.

A version's manifest is the root of a tree. Each directory is one record: the
canonical JSON list of its children sorted by name. A child is a stored file
(``file``: digest, size), a reference (``ref``: size, optional digest, and the
remote metadata under ``ref``), or a subdirectory (``dir``: the digest of its
record, total size and file count). The digest of a record is the store's hash
over its canonical bytes, so equal content gives an equal root digest, and a
change to k files creates only the records on the k paths to the root.

Records can arrive from remotes, so :func:`parse_record` validates everything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from refstore.core import hashing
from refstore.core.paths import normalize
from refstore.errors import IntegrityError, UnsafePathError, UsageError

FILE, REF, DIR = "file", "ref", "dir"
_REF_VALUE_TYPES = (str, int, type(None))


@dataclass(frozen=True, slots=True)  # slots: a million of these must fit in memory
class Entry:
    """One logical path of an artifact: a stored object or a reference."""

    path: str
    size: int
    digest: str | None
    ref: Mapping[str, Any] | None = field(default=None, compare=True)

    @property
    def is_reference(self) -> bool:
        return self.ref is not None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "size": self.size, "digest": self.digest}
        if self.ref is not None:
            data["ref"] = dict(self.ref)
        return data


@dataclass(frozen=True, slots=True)  # slots: a million of these must fit in memory
class Node:
    """One child inside a directory record."""

    name: str
    type: str
    size: int
    digest: str | None
    count: int = 1
    ref: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "size": self.size, "digest": self.digest}
        if self.type == DIR:
            data["count"] = self.count
        if self.ref is not None:
            data["ref"] = dict(self.ref)
        return data


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # a JSON string literal, as _dumps writes it


def encode_record(nodes: Iterable[Node]) -> bytes:
    """Canonical bytes of a directory record (sorted, compact, UTF-8)."""
    ordered = sorted(nodes, key=lambda node: node.name)
    return _dumps([n.to_json() for n in ordered]).encode()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or "/" in name or "\\" in name:
        raise UnsafePathError(f"invalid name {name!r} in manifest record")
    # A single component without these characters is what normalize() returns unchanged;
    # skipping the full check matters when walking a million entries.
    if name not in ("", ".", "..") and ":" not in name and "\x00" not in name and len(name) <= 255 and os.name != "nt":
        return name
    if normalize(name) != name:
        raise UnsafePathError(f"invalid name {name!r} in manifest record")
    return name


def _check_size(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise IntegrityError(f"invalid size {value!r} in manifest record")
    return value


def _check_digest(value: Any, algorithm: str, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not hashing.is_digest(value, algorithm):
        raise IntegrityError(f"invalid digest {value!r} in manifest record")
    return value


def _check_ref(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("uri"), str):
        raise IntegrityError("invalid reference in manifest record: it needs a 'uri'")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, _REF_VALUE_TYPES) or isinstance(item, bool):
            raise IntegrityError(f"invalid reference field {key!r} in manifest record")
    return dict(value)


def parse_record(body: bytes, algorithm: str, expected_digest: str | None = None) -> list[Node]:
    """Decode and validate a directory record; check its digest when given."""
    if expected_digest is not None:
        actual = hashing.hash_bytes(body, algorithm)
        if actual != expected_digest:
            raise IntegrityError(
                f"manifest record {expected_digest} is corrupt (hashes to {actual})", expected=expected_digest, got=actual
            )
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"manifest record {expected_digest or ''} is not valid JSON") from exc
    if not isinstance(raw, list):
        raise IntegrityError("manifest record is not a list")
    nodes: list[Node] = []
    previous = None
    for item in raw:
        if not isinstance(item, dict):
            raise IntegrityError("manifest record holds a non-object child")
        name = _check_name(item.get("name"))
        if previous is not None and name <= previous:
            raise IntegrityError(f"manifest record is not sorted or repeats {name!r}")
        previous = name
        kind = item.get("type")
        size = _check_size(item.get("size"))
        if kind == FILE:
            nodes.append(Node(name, FILE, size, _check_digest(item.get("digest"), algorithm, optional=False)))
        elif kind == REF:
            digest = _check_digest(item.get("digest"), algorithm, optional=True)
            nodes.append(Node(name, REF, size, digest, ref=_check_ref(item.get("ref"))))
        elif kind == DIR:
            digest = _check_digest(item.get("digest"), algorithm, optional=False)
            nodes.append(Node(name, DIR, size, digest, count=_check_size(item.get("count"))))
        else:
            raise IntegrityError(f"unknown entry type {kind!r} in manifest record")
    return nodes


@dataclass
class BuiltTree:
    """The result of building a tree: its root and every record it needs."""

    root: str
    size: int
    count: int
    records: dict[str, bytes]


def build_tree(entries: Iterable[Entry], algorithm: str) -> BuiltTree:
    """Build the Merkle tree for a flat set of entries.

    Raises when two entries share a path or a path is both a file and a directory.
    """
    root: dict[str, Any] = {}
    for entry in entries:
        parts = entry.path.split("/")
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"path {'/'.join(parts[: depth + 1])!r} is both a file and a directory")
            node = child
        leaf = parts[-1]
        if leaf in node:
            kind = "directory" if isinstance(node[leaf], dict) else "file"
            raise UsageError(f"path {entry.path!r} is added twice (already a {kind}); give each entry a unique name")
        node[leaf] = entry
    records: dict[str, bytes] = {}

    def visit(directory: dict[str, Any]) -> tuple[str, int, int]:
        # Writes the exact bytes encode_record would (keys sorted, compact, names
        # escaped by json's own encoder) as text, without a Node or a dict per
        # file: this runs once per entry of datasets with a million files.
        children: list[str] = []
        total = count = 0
        for name in sorted(directory):
            child = directory[name]
            if isinstance(child, dict):
                digest, size, files = visit(child)
                children.append(f'{{"count":{files},"digest":"{digest}","name":{_quote(name)},"size":{size},"type":"dir"}}')
            else:
                size, files = child.size, 1
                if child.ref is None and type(size) is int and type(child.digest) is str and child.digest.isalnum():
                    children.append(f'{{"digest":"{child.digest}","name":{_quote(name)},"size":{size},"type":"file"}}')
                elif child.ref is None:
                    children.append(_dumps({"digest": child.digest, "name": name, "size": size, "type": FILE}))
                else:
                    children.append(_dumps(Node(name, REF, size, child.digest, ref=child.ref).to_json()))
            total += size
            count += files
        body = ("[" + ",".join(children) + "]").encode()
        digest = hashing.hash_bytes(body, algorithm)
        records[digest] = body
        return digest, total, count

    digest, size, count = visit(root)
    return BuiltTree(digest, size, count, records)


RecordLoader = Callable[[str], list[Node]]


def walk(loader: RecordLoader, root: str, prefix: str = "") -> Iterator[Entry]:
    """Every entry under ``root`` in path order."""
    for node in loader(root):
        path = f"{prefix}{node.name}"
        if node.type == DIR:
            assert node.digest is not None
            yield from walk(loader, node.digest, path + "/")
        else:
            yield Entry(path, node.size, node.digest, node.ref)


def walk_records(loader: RecordLoader, root: str) -> Iterator[str]:
    """Digests of every directory record reachable from ``root`` (root first)."""
    yield root
    for node in loader(root):
        if node.type == DIR:
            assert node.digest is not None
            yield from walk_records(loader, node.digest)


@dataclass(frozen=True)
class Change:
    """One difference between two manifests."""

    status: str  # "added" | "removed" | "modified"
    path: str
    old: Entry | None
    new: Entry | None


def diff(loader: RecordLoader, old_root: str | None, new_root: str | None, prefix: str = "") -> Iterator[Change]:
    """Changes from ``old_root`` to ``new_root``, skipping identical subtrees."""
    if old_root == new_root:
        return
    old = {n.name: n for n in loader(old_root)} if old_root else {}
    new = {n.name: n for n in loader(new_root)} if new_root else {}
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        path = prefix + name
        a_dir = a is not None and a.type == DIR
        b_dir = b is not None and b.type == DIR
        if a_dir or b_dir:
            yield from diff(loader, a.digest if a_dir and a else None, b.digest if b_dir and b else None, path + "/")
            if a is not None and not a_dir:
                yield Change("removed", path, _entry(path, a), None)
            if b is not None and not b_dir:
                yield Change("added", path, None, _entry(path, b))
        elif a is None and b is not None:
            yield Change("added", path, None, _entry(path, b))
        elif b is None and a is not None:
            yield Change("removed", path, _entry(path, a), None)
        elif a is not None and b is not None and (a.digest, a.size, a.ref) != (b.digest, b.size, b.ref):
            yield Change("modified", path, _entry(path, a), _entry(path, b))


def _entry(path: str, node: Node) -> Entry:
    return Entry(path, node.size, node.digest, node.ref)
