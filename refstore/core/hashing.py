"""Content digests.

A store has one digest algorithm, fixed when it is created and recorded in its
database (see ``docs/format.md``). The default, xxh3-128, hashes at memory speed
but is not collision resistant against an attacker; ``sha256`` is offered for
stores that pull from remotes other people can write to.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Protocol

import xxhash

from refstore.errors import UsageError

DEFAULT_ALGORITHM = "xxh3-128"
ALGORITHMS = ("xxh3-128", "sha256")
CHUNK = 1 << 20
_HEX_LENGTH = {"xxh3-128": 32, "sha256": 64}


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh incremental hasher for ``algorithm``."""
    if algorithm == "xxh3-128":
        return xxhash.xxh3_128()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise UsageError(f"unknown digest algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def digest_length(algorithm: str) -> int:
    """Hex length of a digest, used to validate digests read from untrusted input."""
    new_hasher(algorithm)  # validates
    return _HEX_LENGTH[algorithm]


def hash_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def hash_stream(stream: BinaryIO, algorithm: str = DEFAULT_ALGORITHM) -> tuple[str, int]:
    """Digest and size of everything left in ``stream``.

    ``read(CHUNK)`` allocates only what it returns, so small files (the common
    case) cost one read and no 1 MiB buffer.
    """
    hasher = new_hasher(algorithm)
    size = 0
    while chunk := stream.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def hash_file(path: str | os.PathLike[str], algorithm: str = DEFAULT_ALGORITHM) -> tuple[str, int]:
    """Digest and size of the file at ``path``."""
    with open(path, "rb", buffering=0) as stream:
        return hash_stream(stream, algorithm)


def copy_and_hash(source: BinaryIO, target: BinaryIO, algorithm: str = DEFAULT_ALGORITHM) -> tuple[str, int]:
    """Copy ``source`` to ``target`` while hashing, so bytes are read once."""
    hasher = new_hasher(algorithm)
    size = 0
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def is_digest(text: str, algorithm: str = DEFAULT_ALGORITHM) -> bool:
    """True when ``text`` is a well-formed lowercase hex digest of ``algorithm``."""
    return len(text) == digest_length(algorithm) and all(c in "0123456789abcdef" for c in text)
