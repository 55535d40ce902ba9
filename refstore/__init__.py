"""refstore: a local-first, git-like store that versions datasets and models.

    import refstore
    store = refstore.open()                 # or refstore.init(path)
    art = refstore.Artifact("mnist", type="dataset")
    art.add_dir("data/")
    version = store.log_artifact(art, aliases=["best"])

Names are imported lazily so that ``refstore --version`` and scripts that only
need a constant start fast (SQLite, fsspec and backends load on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refstore._version import __version__

if TYPE_CHECKING:
    from refstore.api.artifact import Artifact, ArtifactVersion
    from refstore.api.store import Store, clone, init, open
    from refstore.errors import RefstoreError

_LAZY = {
    "Artifact": "refstore.api.artifact",
    "ArtifactVersion": "refstore.api.artifact",
    "Store": "refstore.api.store",
    "init": "refstore.api.store",
    "clone": "refstore.api.store",
    "open": "refstore.api.store",
    "RefstoreError": "refstore.errors",
}
__all__ = ["Artifact", "ArtifactVersion", "RefstoreError", "Store", "__version__", "clone", "init", "open"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
