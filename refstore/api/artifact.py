"""``Artifact`` (a version being built) and ``ArtifactVersion`` (one that was logged).

The shape follows W&B Artifacts: build an ``Artifact`` with ``add_file``,
``add_dir`` and ``new_file``, hand it to ``Store.log_artifact``, and get back
an ``ArtifactVersion`` to download, verify or inspect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from refstore.core.names import check_name, split_name
from refstore.core.paths import normalize
from refstore.core.tree import Entry
from refstore.errors import IntegrityError, UsageError
from refstore.services.ingest import LocalFile, scan_dir, scan_file
from refstore.services.versions import VersionRecord, check_metadata

if TYPE_CHECKING:  # references and tempfile load only when used: `put` starts faster without them
    from tempfile import TemporaryDirectory

    from refstore.api.store import Store
    from refstore.services.references import ReferenceRequest, RefProblem


class Artifact:
    """A set of files (and references) to log as the next version of ``name``."""

    def __init__(
        self,
        name: str,
        type: str = "dataset",
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        split_name(name)
        check_name(type, "artifact type")
        check_metadata(metadata)
        self.name = name
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._files: dict[str, LocalFile] = {}
        self._references: dict[str, Entry] = {}
        self._reference_requests: list[ReferenceRequest] = []
        self._staging: TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, type={self.type!r}, files={len(self._files) + len(self._references)})"

    def _claim(self, path: str) -> None:
        if path in self._files or path in self._references:
            raise UsageError(f"{path!r} is already in artifact {self.name}; give it another name")

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add one file, as ``name`` (default: its base name)."""
        item = scan_file(local_path, name)
        self._claim(item.path)
        self._files[item.path] = item

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add every file under a directory, below the prefix ``name`` (default: the root)."""
        items = scan_dir(local_path, name)
        if not self._files and not self._references:  # one tree walk yields each path once: nothing to claim against
            self._files = {item.path: item for item in items}
            return
        for item in items:
            self._claim(item.path)
        for item in items:
            self._files[item.path] = item

    @contextmanager
    def new_file(self, name: str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
        """Write a new file straight into the artifact."""
        path = normalize(name)
        self._claim(path)
        if "w" not in mode and "x" not in mode:
            raise UsageError(f"new_file opens files for writing; mode {mode!r} is not a write mode")
        if self._staging is None:
            from tempfile import TemporaryDirectory

            self._staging = TemporaryDirectory(prefix="refstore-artifact-")
        source = Path(self._staging.name, f"{len(self._files)}-{os.path.basename(path)}")
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with open(source, mode, **kwargs) as handle:
            yield handle
        self._files[path] = LocalFile(path, str(source))

    def add_entry(self, entry: Entry) -> None:
        """Add a prepared entry (used by references and importers)."""
        path = normalize(entry.path)
        self._claim(path)
        self._references[path] = entry

    def add_reference(self, uri: str, name: str | None = None, checksum: bool = True, max_objects: int | None = None) -> None:
        """Track an object, or every object under a prefix/directory, by metadata only.

        ``uri`` is any fsspec URL (``s3://``, ``gs://``, ``az://``, ``https://``,
        ``file://``…). The listing happens when the artifact is logged, with the
        store's storage options; more than ``max_objects`` objects (default
        10,000) is an error, never a silent truncation. ``checksum=False``
        records the uri alone, without any request (see docs/references.md).
        """
        from refstore.services.references import ReferenceRequest

        self._reference_requests.append(ReferenceRequest(uri, name, checksum, max_objects))

    @property
    def reference_requests(self) -> list[ReferenceRequest]:
        return list(self._reference_requests)

    @property
    def local_files(self) -> list[LocalFile]:
        return list(self._files.values())

    @property
    def prepared_entries(self) -> list[Entry]:
        return list(self._references.values())

    def is_empty(self) -> bool:
        return not self._files and not self._references and not self._reference_requests

    def cleanup(self) -> None:
        if self._staging is not None:
            self._staging.cleanup()
            self._staging = None


class ArtifactVersion:
    """One logged version: inspect it, download it, verify a copy of it."""

    def __init__(self, store: Store, record: VersionRecord) -> None:
        self._store = store
        self._record = record

    def __repr__(self) -> str:
        return f"<ArtifactVersion {self.qualified_name} {self.digest[:12]}>"

    # identity and metadata
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def type(self) -> str:
        return self._record.type

    @property
    def version(self) -> str:
        return f"v{self._record.number}"

    @property
    def qualified_name(self) -> str:
        return self._record.qualified

    @property
    def digest(self) -> str:
        return self._record.digest

    @property
    def size(self) -> int:
        return self._record.size

    @property
    def file_count(self) -> int:
        return self._record.file_count

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._record.metadata)

    @property
    def description(self) -> str:
        return self._record.description

    @property
    def aliases(self) -> list[str]:
        return list(self._record.aliases)

    @property
    def created_at(self) -> str:
        return self._record.created_at

    @property
    def created(self) -> bool:
        """False when logging found this content already as the latest version."""
        return self._record.created

    @property
    def record(self) -> VersionRecord:
        return self._record

    def as_dict(self) -> dict[str, Any]:
        return self._record.as_dict()

    # content
    def files(self) -> list[Entry]:
        """Every entry, in path order."""
        from refstore.services import checkout  # imported on use: put never needs it

        return checkout.entries(self._store.repo, self._record)

    def default_root(self) -> Path:
        return Path.cwd() / "artifacts" / self.name / self.version

    def download(self, root: str | os.PathLike[str] | None = None, link: str = "copy") -> Path:
        """Materialise the files under ``root`` (default ``./artifacts/NAME/vN``), verified."""
        target = Path(root) if root is not None else self.default_root()
        from refstore.services import checkout  # imported on use: put never needs it

        checkout.download(self._store.repo, self._record, target.absolute(), link=link)
        return target

    def check_references(self, download: bool = False) -> list[RefProblem]:
        """Re-check every reference entry against its backend: metadata only, or re-hash bytes with ``download``."""
        from refstore.services import references

        return references.verify(self._store.repo, self.files(), download=download)

    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`IntegrityError` unless ``root`` holds exactly this version's files."""
        target = Path(root) if root is not None else self.default_root()
        from refstore.services import checkout  # imported on use: put never needs it

        problems = checkout.verify_directory(self._store.repo, self._record, target.absolute())
        if problems:
            first = problems[0]
            raise IntegrityError(
                f"{target} does not match {self.qualified_name}: {len(problems)} problem(s), "
                f"first: {first.status} {first.path}; run 'refstore get' to restore it"
            )
