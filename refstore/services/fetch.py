"""Getting missing bytes into the cache before a checkout.

A stored entry whose object is not in the local cache (a fresh clone) or a
reference entry (bytes live elsewhere) needs fetching. Sources register here:
the remotes service and the references service each add a fetcher, so the
checkout code does not need to know either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from refstore.core.repo import Repository
from refstore.core.tree import Entry
from refstore.errors import NotFoundError

# A fetcher gets the entries still missing and returns the ones it could not
# provide. Entries it provides have their bytes in the cache under the digest
# it sets on the returned mapping.
Fetcher = Callable[[Repository, Sequence[Entry]], dict[str, str]]
FETCHERS: list[Fetcher] = []


def register(fetcher: Fetcher) -> Fetcher:
    """Add a source of bytes (used as a decorator by the services that have one)."""
    FETCHERS.append(fetcher)
    return fetcher


def _load_sources() -> None:
    """Import the services that register fetchers (only when something is missing: start-up stays lean)."""
    import refstore.services.reffetch
    import refstore.services.remotes  # noqa: F401


def fill_cache(repo: Repository, entries: Sequence[Entry]) -> dict[str, str]:
    """Make sure every entry's bytes are cached; return ``{path: digest}`` for all of them."""
    digests: dict[str, str] = {}
    missing: list[Entry] = []
    # Entries come from parsed manifests, whose digests are validated; listing a
    # shard once replaces a stat per object (the cache is re-read when used).
    absent = repo.cache.missing({entry.digest for entry in entries if entry.digest is not None})
    for entry in entries:
        if entry.digest is not None and entry.digest not in absent:
            digests[entry.path] = entry.digest
        else:
            missing.append(entry)
    if missing:
        _load_sources()
    for fetcher in FETCHERS:
        if not missing:
            break
        provided = fetcher(repo, missing)
        digests.update(provided)
        missing = [entry for entry in missing if entry.path not in provided]
    if missing:
        sample = ", ".join(e.path for e in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        kind = "reference" if missing[0].ref is not None else "object"
        raise NotFoundError(
            f"{len(missing)} {kind}(s) not in the cache and no source to fetch them ({sample}{more}); "
            "add a remote with 'refstore remote add' and pull, or re-add the files"
        )
    return digests
