"""A store-wide reader/writer lock between writers and garbage collection.

Writers (put, pull, download into the cache) hold it shared, so they run side
by side; SQLite orders their transactions. ``gc`` holds it exclusively, so it
never deletes an object that a writer has staged but not yet committed.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from refstore.errors import LockedError

LOCK_NAME = "lock"


@contextmanager
def store_lock(store_dir: Path, *, exclusive: bool, timeout: float = 600.0) -> Iterator[None]:
    """Hold the store lock (shared or exclusive) for the duration of the block."""
    fd = os.open(store_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockedError(
                        f"store {store_dir} is busy (another refstore process holds its lock); retry when it finishes"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
