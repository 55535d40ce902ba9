"""What a reference records on each backend, and how to list, inspect and open it.

One :class:`Backend` wraps one fsspec filesystem. Listing uses the backend's
own bulk listing (``find``), whose pages already carry size, ETag, md5,
generation or version id, so a prefix costs one request per page and none per
object — except HTTP, where a directory index carries no metadata and each
file needs a HEAD. What is recorded (all JSON scalars, nothing that changes
between two listings of an unchanged object):

========  ==========================================================
s3        etag, version_id (versioned buckets)
gcs       generation, md5 (md5Hash), crc32c
azure     etag, content_md5 (when the service has one), version_id, last_modified
http      etag, last_modified
file      mtime_ns (plus the content digest on the entry itself)
other     etag / md5 / checksum / mtime when the listing carries them
========  ==========================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import posixpath
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from refstore.core import fs as corefs
from refstore.core.repo import Repository
from refstore.core.tree import Entry
from refstore.errors import BackendError, NotFoundError, RefstoreError, UsageError

KINDS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "http": "http",
    "https": "http",
    "file": "file",
    "local": "file",
}
Ref = dict[str, str | int | None]
UNCHECKED = "none"  # ref["checksum"] of an entry recorded with checksum=False: the uri alone
# Fields that are descriptive, not identity: not compared when checking for change.
INFORMATIONAL = frozenset({"uri", "last_modified"})


def translate(exc: BaseException, uri: str) -> RefstoreError:
    """A backend exception as one actionable refstore error (never with credentials)."""
    if isinstance(exc, RefstoreError):
        return exc
    text = corefs.describe(exc)
    unreachable = _unreachable(exc)
    if unreachable is not None:
        return BackendError(
            f"cannot reach the server for {uri} ({corefs.describe(unreachable)}); check the endpoint and that it is up"
        )
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"{uri} does not exist ({text}); check the bucket/container and path")
    if isinstance(exc, PermissionError) or name in ("NoCredentialsError", "PartialCredentialsError", "ClientAuthenticationError"):
        return BackendError(
            f"access to {uri} was denied or no credentials were found ({text}); "
            "set the backend's credentials (environment or config file)"
        )
    return BackendError(f"backend request for {uri} failed ({text})")


_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ServiceRequestError",
        "ConnectTimeoutError",
        "ClientOSError",
        "ConnectionRefusedError",
    }
)


def _unreachable(exc: BaseException) -> BaseException | None:
    """The connection failure behind ``exc`` (fsspec's HTTP backend reports one as FileNotFoundError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)) or type(current).__name__ in _UNREACHABLE:
            return current
        current = current.__cause__ or current.__context__
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    return str(value)


def _etag(value: Any) -> str | None:
    text = _text(value)
    return text.strip('"') if text else None


@dataclass
class Backend:
    """One fsspec filesystem and the knowledge of what its listings carry."""

    protocol: str
    kind: str
    fs: Any
    options: dict[str, Any] = field(default_factory=dict)

    def strip(self, uri: str) -> str:
        if self.kind == "http":
            return uri
        return str(self.fs._strip_protocol(uri))

    def uri(self, name: str) -> str:
        """The canonical URI of a listed object."""
        if self.kind == "http":
            return name
        if self.kind == "file":
            return "file://" + name
        return f"{self.protocol}://{name}"

    # -- metadata ------------------------------------------------------------
    def metadata(self, info: Mapping[str, Any]) -> Ref:
        """The identity fields of one object, from a listing or an ``info`` call."""
        ref: Ref = {}
        if self.kind == "s3":
            ref["etag"] = _etag(info.get("ETag"))
            version = info.get("VersionId")
            ref["version_id"] = version if version and version != "null" else None
        elif self.kind == "gcs":
            generation = info.get("generation")
            ref["generation"] = str(generation) if generation not in (None, "") else None
            ref["md5"] = _text(info.get("md5Hash"))
            ref["crc32c"] = _text(info.get("crc32c"))
        elif self.kind == "azure":
            ref["etag"] = _etag(info.get("etag"))
            settings = info.get("content_settings") or {}
            md5 = settings.get("content_md5") if isinstance(settings, Mapping) else getattr(settings, "content_md5", None)
            ref["content_md5"] = _text(md5)
            ref["version_id"] = _text(info.get("version_id"))
            ref["last_modified"] = _text(info.get("last_modified"))
        elif self.kind == "http":
            ref["etag"] = _text(info.get("ETag"))
            ref["last_modified"] = _text(info.get("Last-Modified"))
        elif self.kind == "file":
            pass  # mtime_ns comes from os.stat in the caller
        else:
            for key in ("etag", "ETag", "md5", "checksum", "mtime", "last_modified", "LastModified"):
                value = info.get(key)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    ref[key.lower()] = str(value)
        return {k: v for k, v in ref.items() if v is not None}

    # -- listing -------------------------------------------------------------
    def list(self, uri: str) -> dict[str, dict[str, Any]]:
        """Every object at or under ``uri``: ``{name: info}``; folder placeholders skipped."""
        path = self.strip(uri)
        if self.kind == "http":
            return self._list_http(uri)
        try:
            found = self.fs.find(path, detail=True, withdirs=False)
        except PermissionError:
            if self.kind != "s3" or not self.options.get("version_aware"):
                raise
            # no s3:ListBucketVersions: list current objects only (no version ids recorded)
            self.options = {**self.options, "version_aware": False}
            self.fs = corefs.filesystem(self.protocol, self.options)
            found = self.fs.find(path, detail=True, withdirs=False)
        if isinstance(found, list):  # some backends answer a single object with a list
            found = {item["name"] if isinstance(item, dict) else item: item for item in found}
        out: dict[str, dict[str, Any]] = {}
        for name, info in found.items():
            if not isinstance(info, dict):
                info = self.fs.info(name)
            if info.get("type") == "directory" or (not info.get("size") and _is_placeholder(name, info)):
                continue
            out[name.rstrip("/")] = info
        return out

    def _list_http(self, uri: str) -> dict[str, dict[str, Any]]:
        if not uri.endswith("/"):
            return {uri: self.fs.info(uri)}
        names = self.fs.find(uri, withdirs=False)
        return {name: self.fs.info(name) for name in names if not name.endswith("/")}

    def info(self, name: str, ref: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Current metadata of one object, at the recorded version when there is one."""
        if self.kind == "s3" and ref and ref.get("version_id"):
            return dict(self.fs.info(name, version_id=ref["version_id"]))
        if self.kind == "gcs" and ref and ref.get("generation"):
            return dict(self.fs.info(f"{name}#{ref['generation']}"))
        return dict(self.fs.info(name))

    @contextmanager
    def open(self, name: str, ref: Mapping[str, Any]) -> Iterator[BinaryIO]:
        """A read stream of the exact recorded version when the backend keeps versions."""
        if self.kind == "s3" and ref.get("version_id"):
            handle = self.fs.open(name, "rb", version_id=ref["version_id"])
        elif self.kind == "gcs" and ref.get("generation"):
            handle = self.fs.open(f"{name}#{ref['generation']}", "rb")
        else:
            handle = self.fs.open(name, "rb")
        with handle as stream:
            yield stream

    def exact(self, ref: Mapping[str, Any]) -> bool:
        """True when reads are pinned to the recorded version (no change check needed first)."""
        return bool(self.kind == "s3" and ref.get("version_id")) or bool(self.kind == "gcs" and ref.get("generation"))

    def expected_md5(self, ref: Mapping[str, Any]) -> str | None:
        """The md5 (hex) the bytes must have, when the recorded metadata says it."""
        value = ref.get("md5") or ref.get("content_md5")
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True).hex()
            except ValueError:
                return None
        etag = ref.get("etag")
        if self.kind == "s3" and isinstance(etag, str) and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
            return etag  # single-part upload: the ETag is the md5 (multipart ones contain '-')
        return None


def _is_placeholder(name: str, info: Mapping[str, Any]) -> bool:
    """A zero-byte "folder" object: a name ending in '/', or Azure's folder metadata."""
    if name.endswith("/") or str(info.get("name", "")).endswith("/") or str(info.get("Key", "")).endswith("/"):
        return True
    metadata = info.get("metadata") or {}
    return isinstance(metadata, Mapping) and any(
        str(metadata.get(key, "")).lower() == "true" for key in ("is_directory", "hdi_isfolder")
    )


def open_backend(protocol: str, config_value: str | None) -> Backend:
    """A :class:`Backend` for ``protocol`` with options from store config and environment."""
    kind = KINDS.get(protocol, "other")
    options = corefs.storage_options(protocol, config_value)
    if kind == "s3":
        options.setdefault("version_aware", True)
    if kind == "gcs":
        options.setdefault("version_aware", True)
    return Backend(protocol, kind, corefs.filesystem(protocol, options), options)


def backend_for(repo: Repository, protocol: str) -> Backend:
    """The backend for ``protocol`` with this store's configured (non-secret) options."""
    return open_backend(protocol, repo.db.get_config(f"storage_options.{protocol}"))


def is_unchecked(entry: Entry) -> bool:
    return entry.ref is not None and entry.ref.get("checksum") == UNCHECKED


def relative(root: str, name: str) -> str:
    """``name`` relative to the listed ``root`` (both as the backend spells them)."""
    root = root.rstrip("/")
    if name.startswith(root + "/"):
        return name[len(root) + 1 :]
    return posixpath.basename(name)


def local_path(uri: str) -> str:
    """An absolute local path from ``file://…`` or a plain path."""
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    if not path:
        raise UsageError("empty file:// reference; give an absolute path such as file:///data/set")
    return os.path.abspath(os.path.expanduser(path))
