"""Runs as flat rows: for CSV files and DataFrames.

Nested config and summary keys become dotted column names (``config.opt.lr``);
lists and other non-scalar values are written as JSON text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from refstore.services.runs import RunRecord

BASE_COLUMNS = [
    "id",
    "project",
    "name",
    "job_type",
    "status",
    "created_at",
    "finished_at",
    "tags",
    "git_commit",
    "git_dirty",
    "command",
    "source",
]


def _flatten(prefix: str, value: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, item in value.items():
        name = f"{prefix}.{key}"
        if isinstance(item, Mapping) and item:
            _flatten(name, item, out)
        elif isinstance(item, (list, dict)):
            out[name] = json.dumps(item, sort_keys=True)
        else:
            out[name] = item


def flat_row(run: RunRecord) -> dict[str, Any]:
    row: dict[str, Any] = {c: getattr(run, c) for c in BASE_COLUMNS if c != "tags"}
    row["tags"] = ";".join(run.tags)
    _flatten("config", run.config, row)
    _flatten("summary", run.summary, row)
    return row


def flat_rows(runs: Iterable[RunRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (base columns, then config.*, then summary.*, each sorted) and rows."""
    rows = [flat_row(r) for r in runs]
    extra = sorted({k for row in rows for k in row if k not in BASE_COLUMNS}, key=lambda k: (not k.startswith("config."), k))
    return [*BASE_COLUMNS, *extra], rows


def to_csv(runs: Iterable[RunRecord]) -> str:
    columns, rows = flat_rows(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()
