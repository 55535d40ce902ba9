"""Unit tests for the core: digests, path safety, names and specs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refstore.core import hashing
from refstore.core.names import VersionSpec, check_alias, parse_spec, split_name
from refstore.core.paths import normalize, safe_join
from refstore.errors import RefstoreError, UnsafePathError, UsageError


def test_xxh3_known_value() -> None:
    # Reference value from the xxHash specification's test vectors (empty input, XXH3_128bits).
    assert hashing.hash_bytes(b"") == "99aa06d3014798d86001c324468d497f"


def test_sha256_store_algorithm() -> None:
    assert hashing.hash_bytes(b"abc", "sha256") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(UsageError):
        hashing.new_hasher("md5")


@given(st.binary(max_size=5000), st.sampled_from(hashing.ALGORITHMS))
def test_stream_file_and_bytes_agree(data: bytes, algorithm: str) -> None:
    digest, size = hashing.hash_stream(io.BytesIO(data), algorithm)
    assert digest == hashing.hash_bytes(data, algorithm) and size == len(data)
    target = io.BytesIO()
    assert hashing.copy_and_hash(io.BytesIO(data), target, algorithm) == (digest, size)
    assert target.getvalue() == data
    assert hashing.is_digest(digest, algorithm)


@pytest.mark.parametrize(
    ("given_path", "expected"),
    [("a.txt", "a.txt"), ("./a/b", "a/b"), ("a//b/./c", "a/b/c"), ("a\\b", "a/b"), ("dir/", "dir")],
)
def test_normalize_accepts(given_path: str, expected: str) -> None:
    assert normalize(given_path) == expected


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "C:/x", "c:\\win", "a\x00b", ".", "./"])
def test_normalize_rejects(bad: str) -> None:
    with pytest.raises(UnsafePathError):
        normalize(bad)


@given(st.text(alphabet=st.sampled_from(list("ab./\\:C\x00")), max_size=12))
def test_normalized_paths_never_escape(text: str) -> None:
    try:
        clean = normalize(text)
    except UnsafePathError:
        return
    parts = clean.split("/")
    assert ".." not in parts and "" not in parts and not clean.startswith("/")
    assert normalize(clean) == clean


def test_safe_join_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePathError):
        safe_join(root, "link/file.txt")
    assert safe_join(root, "ok/file.txt") == root / "ok" / "file.txt"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("mnist", VersionSpec(None, "mnist", alias="latest")),
        ("mnist:latest", VersionSpec(None, "mnist", alias="latest")),
        ("mnist:v3", VersionSpec(None, "mnist", version=3)),
        ("proj/mnist:best", VersionSpec("proj", "mnist", alias="best")),
        ("mnist@0123abcd", VersionSpec(None, "mnist", digest_prefix="0123abcd")),
    ],
)
def test_parse_spec(text: str, spec: VersionSpec) -> None:
    assert parse_spec(text) == spec
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize("bad", ["", "a/b/c", "-x", "x:", "x@123", "x@XYZXYZXYZ", "bad name", "x:al ias", "a/:v1"])
def test_parse_spec_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_spec(bad)


@given(st.text(max_size=40))
def test_spec_parser_only_raises_usage_errors(text: str) -> None:
    try:
        spec = parse_spec(text)
    except RefstoreError as exc:
        assert isinstance(exc, UsageError) and exc.message
        return
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize("bad", ["latest", "v1", "v01", "with space", ""])
def test_reserved_or_invalid_aliases(bad: str) -> None:
    with pytest.raises(UsageError):
        check_alias(bad)


def test_split_name() -> None:
    assert split_name("p/n") == ("p", "n")
    assert split_name("n") == (None, "n")
