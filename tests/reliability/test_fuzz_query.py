"""Hostile input to the run-query filter compiler (issue 5): hypothesis builds filter
documents from real field names, operators, hostile keys and SQL-looking strings. Each is
either answered or refused with a UsageError; the store's tables are unchanged; and no
user-given string ever appears in the SQL text (it is always a bound parameter).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refstore
from refstore.errors import UsageError
from refstore.services import query

INJECTION = ["'; DROP TABLE runs; --", "x') OR 1=1 --", '" OR ""="', "a]b", "$where", "\x00", "\ud800", "é", "*"]
FIELDS = [
    "name",
    "job_type",
    "status",
    "project",
    "id",
    "created_at",
    "finished_at",
    "tags",
    "config.lr",
    "summary.acc",
    "config.a.b",
    "summary.x y",
    "config",
    "config.",
    "config..a",
    "nope",
    *INJECTION,
]
OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$not", "$and", "$or", "$nor", "$bad"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(INJECTION))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(OPS), inner, max_size=2), max_leaves=8
)
documents = st.recursive(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=3),
    lambda inner: st.dictionaries(
        st.sampled_from(["$and", "$or", "$nor", "$not"]), st.lists(inner, max_size=3) | inner, max_size=2
    ),
    max_leaves=10,
)


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings_in(k), *strings_in(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


FIXED = set(FIELDS[:8]) | set(OPS) | {"config", "summary"}


@pytest.fixture(scope="module")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> refstore.Store:
    work = tmp_path_factory.mktemp("query")
    store = refstore.init(work)
    for i in range(3):
        with store.run(job_type="train", name=f"r{i}", config={"lr": 0.1 * i, "a": {"b": i}}, tags=["t"]) as run:
            run.summary["acc"] = i / 3
    return store


def counts(store: refstore.Store) -> tuple[int, ...]:
    return tuple(store.repo.db.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("runs", "artifacts", "versions"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_filters_answer_or_refuse_and_never_inline_user_text(run_store: refstore.Store, doc: dict[str, Any]) -> None:
    before = counts(run_store)
    try:
        compiled = query.compile_filter(doc)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    for text in strings_in(doc):
        if text not in FIXED and len(text) >= 3 and not text.startswith(("config.", "summary.")):
            assert text not in compiled.sql, (text, compiled.sql)
    try:
        found = run_store.runs(filter=doc)
    except UsageError:
        return
    assert len(found) <= 3
    assert counts(run_store) == before
