"""refstore: a local-first, git-like store that versions datasets and models.

import refstore
store = refstore.open()                 # or refstore.init(path)
art = refstore.Artifact("mnist", type="dataset")
art.add_dir("data/")
version = store.log_artifact(art, aliases=["best"])
"""

from __future__ import annotations

from refstore.api.artifact import Artifact, ArtifactVersion
from refstore.api.store import Store, init, open
from refstore.errors import RefstoreError

__version__ = "0.1.0"
__all__ = ["Artifact", "ArtifactVersion", "RefstoreError", "Store", "__version__", "init", "open"]
