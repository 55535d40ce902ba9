"""``Run``: one job that uses artifact versions and logs new ones (W&B's ``wandb.init`` run).

Use it as a context manager from :meth:`Store.run`: the run is ``running``
from the start, ``finished`` when the block ends, ``failed`` when it raises.
A process that dies inside the block leaves it ``running``, which is how a
crash stays visible.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from refstore.api.artifact import Artifact, ArtifactVersion
from refstore.errors import UsageError
from refstore.services import runs

if TYPE_CHECKING:
    from refstore.api.store import Progress, Store


class Summary(MutableMapping[str, Any]):
    """The run's summary: a dict whose every change is written to the store at once."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _data(self) -> dict[str, Any]:
        return runs.get_run(self._run.store.repo, self._run.id).summary

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        runs.update_summary(self._run.store.repo, self._run.id, {key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._data():
            raise KeyError(key)
        runs.update_summary(self._run.store.repo, self._run.id, {}, remove=[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # one write for many keys
        values = dict(other, **kwargs)
        runs.update_summary(self._run.store.repo, self._run.id, values)

    def __repr__(self) -> str:
        return f"Summary({self._data()!r})"


class Run:
    """A run in a store. Get one from :meth:`Store.run` (new) or :meth:`Store.get_run` (existing)."""

    def __init__(self, store: Store, record: runs.RunRecord) -> None:
        self.store = store
        self._record = record
        self.summary = Summary(self)

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name} {self.status}>"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.refresh().status == "running":
            self.finish("failed" if kind is not None else "finished")

    # -- identity ------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def job_type(self) -> str:
        return self._record.job_type

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._record.config)

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def tags(self) -> list[str]:
        return list(self._record.tags)

    @property
    def record(self) -> runs.RunRecord:
        return self._record

    def refresh(self) -> Run:
        self._record = runs.get_run(self.store.repo, self.id)
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.refresh()._record.as_dict()

    # -- lineage -------------------------------------------------------------
    def use_artifact(self, spec: str | ArtifactVersion) -> ArtifactVersion:
        """Record ``spec`` (``name:v3``, ``name:best``, or a version) as an input; return the version."""
        text = spec.qualified_name if isinstance(spec, ArtifactVersion) else spec
        return ArtifactVersion(self.store, runs.use_version(self.store.repo, self.id, text))

    def log_artifact(
        self, artifact: Artifact, aliases: Sequence[str] = (), *, progress: Progress | None = None
    ) -> ArtifactVersion:
        """Log ``artifact`` as an output of this run.

        Content equal to the artifact's latest version creates no version (and
        so no output edge): that version keeps the run that created it.
        """
        return self.store.log_artifact(artifact, aliases, run_id=self.id, progress=progress)

    def used(self) -> list[ArtifactVersion]:
        """The versions this run used."""
        return [ArtifactVersion(self.store, r) for r in runs.inputs(self.store.repo, self.id)]

    def logged(self) -> list[ArtifactVersion]:
        """The versions this run created."""
        return [ArtifactVersion(self.store, r) for r in runs.outputs(self.store.repo, self.id)]

    # -- metrics -------------------------------------------------------------
    def log(self, values: Mapping[str, Any], step: int | None = None) -> int:
        """Append numeric values to the history (at ``step``, default the next) and set them in the summary."""
        return runs.log_metrics(self.store.repo, self.id, values, step)

    def history(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return runs.history(self.store.repo, self.id, keys)

    def tag(self, *tags: str) -> None:
        runs.set_tags(self.store.repo, self.id, add=tags)
        self.refresh()

    def finish(self, status: str = "finished", summary: Mapping[str, Any] | None = None) -> None:
        """End the run now (``finished`` or ``failed``), merging ``summary`` into its summary."""
        if status not in ("finished", "failed"):
            raise UsageError(f"invalid run status {status!r}; use 'finished' or 'failed'")
        self._record = runs.finish_run(self.store.repo, self.id, status, summary)
