"""Content digests.

A store has one digest algorithm, fixed when it is created and recorded in its
database (see ``docs/format.md``). The default, xxh3-128, hashes at memory speed
but is not collision resistant against an attacker; ``sha256`` is offered for
stores that pull from remotes other people can write to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO, Protocol

import xxhash

from refstore.errors import UsageError

DEFAULT_ALGORITHM = "xxh3-128"
ALGORITHMS = ("xxh3-128", "sha256")
CHUNK = 1 << 20
COPY_BUFFER = 4 << 20
_HEX_LENGTH = {"xxh3-128": 32, "sha256": 64}
_HEX_DIGITS = "0123456789abcdef"


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh incremental hasher for ``algorithm``."""
    if algorithm == "xxh3-128":
        return xxhash.xxh3_128()
    if algorithm == "sha256":
        import hashlib  # here: loading OpenSSL costs every command ~3 ms, and most stores use xxh3

        return hashlib.sha256()
    raise UsageError(f"unknown digest algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def digest_length(algorithm: str) -> int:
    """Hex length of a digest, used to validate digests read from untrusted input."""
    new_hasher(algorithm)  # validates
    return _HEX_LENGTH[algorithm]


def hash_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    if algorithm == "xxh3-128":
        return xxhash.xxh3_128_hexdigest(data)  # one call, no hasher object
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def hash_stream(stream: BinaryIO, algorithm: str = DEFAULT_ALGORITHM) -> tuple[str, int]:
    """Digest and size of everything left in ``stream``.

    Small streams (the common case) cost two reads and one hash call; large
    ones are hashed through one reused buffer.
    """
    first = stream.read(CHUNK)
    second = stream.read(CHUNK) if first else b""
    if not second:
        return hash_bytes(first, algorithm), len(first)
    hasher = new_hasher(algorithm)
    hasher.update(first)
    hasher.update(second)
    size = len(first) + len(second)
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        return hasher.hexdigest(), size
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    while count := readinto(buffer):
        hasher.update(view[:count])
        size += count
    return hasher.hexdigest(), size


def hash_file(path: str | os.PathLike[str], algorithm: str = DEFAULT_ALGORITHM) -> tuple[str, int]:
    """Digest and size of the file at ``path``."""
    with open(path, "rb", buffering=0) as stream:
        return hash_stream(stream, algorithm)


def copy_and_hash(
    source: BinaryIO, target: BinaryIO, algorithm: str = DEFAULT_ALGORITHM, *, prefix: Sequence[bytes] = ()
) -> tuple[str, int]:
    """Copy ``source`` to ``target`` while hashing, so bytes are read once.

    ``prefix`` is hashed (not written) first: bytes the caller already read and
    wrote. Large copies reuse one buffer (``readinto``) instead of allocating a
    fresh chunk per read.
    """
    hasher = new_hasher(algorithm)
    size = 0
    for part in prefix:
        hasher.update(part)
        size += len(part)
    first = source.read(CHUNK)
    hasher.update(first)
    target.write(first)
    size += len(first)
    readinto = getattr(source, "readinto", None)
    if len(first) < CHUNK or readinto is None:  # small files never allocate the big buffer
        while chunk := source.read(CHUNK):
            hasher.update(chunk)
            target.write(chunk)
            size += len(chunk)
        return hasher.hexdigest(), size
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    while count := readinto(buffer):
        filled = view[:count]
        hasher.update(filled)
        target.write(filled)
        size += count
    return hasher.hexdigest(), size


def is_digest(text: str, algorithm: str = DEFAULT_ALGORITHM) -> bool:
    """True when ``text`` is a well-formed lowercase hex digest of ``algorithm``."""
    length = _HEX_LENGTH.get(algorithm)  # called per entry of every manifest walk: no hasher built to validate
    if length is None:
        digest_length(algorithm)  # raises the unknown-algorithm error
    return len(text) == length and not text.strip(_HEX_DIGITS)
