"""Reaching storage backends through fsspec.

Backends are imported lazily, by protocol, only when a URI needs them (so
``refstore --version`` never imports fsspec). An unknown scheme or a missing
backend package becomes a :class:`UsageError` that names the package to install.

Storage options (``endpoint_url``, ``project``, …) come from two places, later
wins: the store's config key ``storage_options.<protocol>`` (a JSON object,
never credentials — those keys are refused there) and the environment variable
``REFSTORE_STORAGE_OPTIONS_<PROTOCOL>`` (a JSON object). Credentials come from
each backend's own chain (environment, config files, instance metadata).
Nothing in this module writes options anywhere, and :func:`describe` strips
query strings and key-like fields from backend error text before it can reach
a user or a log.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from refstore.errors import BackendError, UsageError

# scheme -> (package that implements it, extra to install)
KNOWN_BACKENDS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "refstore[s3]"),
    "s3a": ("s3fs", "refstore[s3]"),
    "gs": ("gcsfs", "refstore[gcs]"),
    "gcs": ("gcsfs", "refstore[gcs]"),
    "az": ("adlfs", "refstore[azure]"),
    "abfs": ("adlfs", "refstore[azure]"),
    "abfss": ("adlfs", "refstore[azure]"),
    "http": ("aiohttp", "refstore[http]"),
    "https": ("aiohttp", "refstore[http]"),
}
SECRET_OPTION = re.compile(r"(key|secret|token|password|credential|connection_string|sas)", re.IGNORECASE)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")
_SECRET_TEXT = re.compile(r"(AccountKey|SharedAccessSignature|sig|X-Amz-Signature|X-Amz-Credential|access_token)=[^;&\s'\"]+")


def split_uri(uri: str) -> tuple[str, str]:
    """``(protocol, uri)`` with ``file`` for plain paths; the uri is returned unchanged."""
    match = _SCHEME.match(uri)
    if match is None:
        if "://" in uri or not uri:
            raise UsageError(f"{uri!r} is not a URI; use a form like s3://bucket/key or file:///abs/path")
        return "file", uri
    return match.group(1).lower(), uri


_SIGNED = re.compile(
    r"[?&](X-Amz-Signature|X-Amz-Credential|X-Goog-Signature|X-Goog-Credential|sig|signature|token|access_token|api_key)=",
    re.IGNORECASE,
)


def check_no_credentials(uri: str) -> None:
    """Refuse a URI that carries a credential (a signed URL, a token, a password), since it would be stored."""
    match = _SCHEME.match(uri)
    authority = uri[match.end() :].split("/", 1)[0] if match else ""
    if "@" in authority and ":" in authority.split("@", 1)[0]:
        raise UsageError("the URI contains a password (user:password@host); remove it and use the backend's credentials")
    if _SIGNED.search(uri):
        raise UsageError(
            "the URI looks signed or carries a token in its query string, which would be stored in the manifest; "
            "reference the plain URI and give credentials through the environment"
        )


def describe(exc: BaseException) -> str:
    """One safe line about a backend error: no query strings, signatures or keys."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _QUERY.sub(r"\1?…", text)
    text = _SECRET_TEXT.sub(r"\1=…", text)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(exc).__name__}: {text}"


def _parse_options(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f'{where} is not valid JSON; give a JSON object such as \'{{"endpoint_url": "…"}}\'') from exc
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object")
    return value


def storage_options(protocol: str, config_value: str | None = None) -> dict[str, Any]:
    """Options for ``protocol``: store config first, then the environment on top."""
    options: dict[str, Any] = {}
    if config_value:
        from_config = _parse_options(config_value, f"store config storage_options.{protocol}")
        secrets = sorted(k for k in from_config if SECRET_OPTION.search(k))
        if secrets:
            raise UsageError(
                f"store config storage_options.{protocol} holds credential option(s) {', '.join(secrets)}; "
                "remove them and use the backend's environment variables or config files instead"
            )
        options.update(from_config)
    env_name = f"REFSTORE_STORAGE_OPTIONS_{protocol.upper()}"
    env_value = os.environ.get(env_name)
    if env_value:
        options.update(_parse_options(env_value, env_name))
    return options


def filesystem(protocol: str, options: dict[str, Any]) -> Any:
    """A fresh fsspec filesystem for ``protocol`` (no instance or listing cache: metadata must be current)."""
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise UsageError("fsspec is not installed; pip install fsspec") from exc
    if protocol not in known_implementations and protocol not in fsspec.available_protocols():
        hint = KNOWN_BACKENDS.get(protocol)
        install = f"pip install {hint[1]}" if hint else "install the fsspec package that implements it"
        raise UsageError(f"unknown storage scheme {protocol!r}; {install}")
    kwargs = dict(options)
    kwargs.setdefault("skip_instance_cache", True)
    if protocol not in ("file", "local", "memory"):
        kwargs.setdefault("use_listings_cache", False)
    try:
        return fsspec.filesystem(protocol, **kwargs)
    except ImportError as exc:
        if protocol in KNOWN_BACKENDS:
            missing = f"pip install {KNOWN_BACKENDS[protocol][1]}"
        else:
            missing = str(known_implementations.get(protocol, {}).get("err") or f"install the package for {protocol}")
        raise UsageError(f"storage scheme {protocol!r} needs a package that is not installed: {missing}") from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid storage options for {protocol}: {describe(exc)}") from exc
    except Exception as exc:
        raise BackendError(f"cannot set up the {protocol} backend: {describe(exc)}") from exc
