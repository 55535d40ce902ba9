"""Manifests as Merkle trees: canonical digests, incremental records, diff, validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refstore.core import hashing
from refstore.core.tree import Entry, Node, build_tree, diff, encode_record, parse_record, walk
from refstore.errors import IntegrityError, UnsafePathError, UsageError

ALGO = hashing.DEFAULT_ALGORITHM
names = st.sampled_from(["a", "b", "c", "data", "x.txt", "y.bin", "ü"])
paths = st.lists(names, min_size=1, max_size=3).map("/".join)
contents = st.binary(max_size=8)


def _entries(mapping: dict[str, bytes]) -> list[Entry]:
    return [Entry(p, len(c), hashing.hash_bytes(c)) for p, c in mapping.items()]


def _valid(mapping: dict[str, bytes]) -> bool:
    keys = set(mapping)
    return not any(other.startswith(key + "/") for key in keys for other in keys)


manifests = st.dictionaries(paths, contents, min_size=1, max_size=8).filter(_valid)


def _loader(records: dict[str, bytes]):  # type: ignore[no-untyped-def]
    return lambda digest: parse_record(records[digest], ALGO, expected_digest=digest)


@given(manifests, st.randoms())
def test_digest_is_canonical(mapping: dict[str, bytes], rnd) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(mapping)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert build_tree(entries, ALGO).root == build_tree(shuffled, ALGO).root


@given(manifests)
def test_walk_round_trip(mapping: dict[str, bytes]) -> None:
    tree = build_tree(_entries(mapping), ALGO)
    walked = list(walk(_loader(tree.records), tree.root))
    assert sorted(walked, key=lambda e: e.path) == sorted(_entries(mapping), key=lambda e: e.path)
    assert tree.count == len(mapping) and tree.size == sum(len(c) for c in mapping.values())


@given(manifests, manifests)
def test_diff_round_trip(old: dict[str, bytes], new: dict[str, bytes]) -> None:
    a, b = build_tree(_entries(old), ALGO), build_tree(_entries(new), ALGO)
    records = {**a.records, **b.records}
    state = {e.path: e for e in _entries(old)}
    for change in diff(_loader(records), a.root, b.root):
        if change.status == "removed":
            assert change.path in state
            del state[change.path]
        else:
            assert change.new is not None
            assert (change.path in state) == (change.status == "modified")
            state[change.path] = change.new
    assert build_tree(state.values(), ALGO).root == b.root
    assert (a.root == b.root) == (old == new)


def test_one_change_adds_only_records_on_its_path() -> None:
    files = {f"d{i}/e{j}/f{k}.txt": f"{i}{j}{k}".encode() for i in range(10) for j in range(10) for k in range(10)}
    first = build_tree(_entries(files), ALGO)
    files["d3/e4/f5.txt"] = b"changed"
    second = build_tree(_entries(files), ALGO)
    new_records = set(second.records) - set(first.records)
    assert len(first.records) == 1 + 10 + 100
    assert len(new_records) == 3  # root, d3, d3/e4: O(depth), not O(N)


def test_file_and_directory_conflict_and_duplicates() -> None:
    with pytest.raises(UsageError, match="both a file and a directory"):
        build_tree([Entry("a", 1, hashing.hash_bytes(b"x")), Entry("a/b", 1, hashing.hash_bytes(b"y"))], ALGO)
    with pytest.raises(UsageError, match="added twice"):
        build_tree([Entry("a", 1, hashing.hash_bytes(b"x")), Entry("a", 1, hashing.hash_bytes(b"x"))], ALGO)


def _record(children: list[dict[str, object]]) -> bytes:
    return json.dumps(children).encode()


GOOD = hashing.hash_bytes(b"x")


@pytest.mark.parametrize(
    ("children", "error"),
    [
        ([{"name": "..", "type": "file", "size": 1, "digest": GOOD}], UnsafePathError),
        ([{"name": "a/b", "type": "file", "size": 1, "digest": GOOD}], UnsafePathError),
        ([{"name": "/abs", "type": "file", "size": 1, "digest": GOOD}], UnsafePathError),
        ([{"name": "C:", "type": "file", "size": 1, "digest": GOOD}], UnsafePathError),
        ([{"name": "a\x00", "type": "file", "size": 1, "digest": GOOD}], UnsafePathError),
        ([{"name": "a", "type": "file", "size": -1, "digest": GOOD}], IntegrityError),
        ([{"name": "a", "type": "file", "size": 1, "digest": "zz"}], IntegrityError),
        ([{"name": "a", "type": "link", "size": 1, "digest": GOOD}], IntegrityError),
        (
            [{"name": "b", "type": "file", "size": 1, "digest": GOOD}, {"name": "a", "type": "file", "size": 1, "digest": GOOD}],
            IntegrityError,
        ),
        (
            [
                {"name": "a", "type": "file", "size": 1, "digest": GOOD},
                {"name": "a", "type": "dir", "size": 1, "digest": GOOD, "count": 1},
            ],
            IntegrityError,
        ),
        ([{"name": "a", "type": "ref", "size": 1, "digest": None, "ref": {}}], IntegrityError),
    ],
)
def test_parse_record_refuses_hostile_records(children: list[dict[str, object]], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_record(_record(children), ALGO)


def test_parse_record_checks_digest_and_json() -> None:
    body = encode_record([Node("a", "file", 1, GOOD)])
    assert parse_record(body, ALGO, expected_digest=hashing.hash_bytes(body))[0].name == "a"
    with pytest.raises(IntegrityError):
        parse_record(body, ALGO, expected_digest=hashing.hash_bytes(b"other"))
    with pytest.raises(IntegrityError):
        parse_record(b"{not json", ALGO)


def test_build_tree_writes_canonical_record_bytes_for_odd_names() -> None:
    """build_tree writes records as text; they must be the bytes encode_record gives (digests depend on it)."""
    names = ['q"uote', "tab\there", "ctl\x01", "line\u2028sep", "日本語", "emoji😀", "del\x7f", "plain"]
    entries = [Entry(f"d/{name}", i * 1000, f"{i:032x}") for i, name in enumerate(names)]
    entries.append(Entry("top", 2**40, "f" * 32))
    built = build_tree(entries, "xxh3-128")
    for digest, body in built.records.items():
        assert encode_record(parse_record(body, "xxh3-128", digest)) == body
