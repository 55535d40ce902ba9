"""One error hierarchy for refstore.

Every error a user can cause or meet is a :class:`RefstoreError` whose message
says what is wrong and what to do. The CLI turns it into one line on stderr and
the subclass's ``exit_code``; the library never prints. Exit codes are
documented in ``docs/cli.md`` and must stay stable because scripts depend on them.
"""

from __future__ import annotations


class RefstoreError(Exception):
    """Base of every error refstore raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RefstoreError):
    """Bad input from the user: a name, a spec, JSON, a path."""

    exit_code = 2


class StoreNotFoundError(RefstoreError):
    """No `.refstore/` where one was expected."""

    exit_code = 3


class FormatError(RefstoreError):
    """The store's on-disk format is newer than this refstore, or unknown."""

    exit_code = 4


class NotFoundError(RefstoreError):
    """An artifact, version, alias, run or object does not exist."""

    exit_code = 5


class IntegrityError(RefstoreError):
    """Bytes or records do not match their digest: corruption or tampering."""

    exit_code = 6

    def __init__(self, message: str, *, expected: str | None = None, got: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class UnsafePathError(UsageError):
    """A manifest path that would escape its root (``..``, absolute, drive letters)."""


class ConflictError(RefstoreError):
    """A concurrent writer got there first (alias moved, version number taken)."""

    exit_code = 7


class LockedError(RefstoreError):
    """The store is busy (another process holds a lock) for longer than we wait."""

    exit_code = 8


class BackendError(RefstoreError):
    """A storage backend (S3, GCS, Azure, HTTP, a remote) failed or is unreachable."""

    exit_code = 9


class ChangedError(IntegrityError):
    """A referenced object changed since it was recorded."""
