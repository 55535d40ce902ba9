"""The run filter compiler: MongoDB-style operators, ordering, pagination, and bad input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refstore
from refstore.errors import RefstoreError, UsageError
from refstore.services import query

RUNS = [
    # name, job_type, config, summary, tags
    ("cnn-1", "train", {"lr": 0.01, "opt": {"name": "adam"}, "layers": 3}, {"acc": 0.91, "done": True}, ["baseline"]),
    ("cnn-2", "train", {"lr": 0.1, "opt": {"name": "sgd"}, "layers": 5}, {"acc": 0.85, "done": False}, ["exp", "big"]),
    ("eval-1", "eval", {"lr": "0.01", "split": "test"}, {"acc": 0.95}, []),
    ("prep", "preprocess", {"note": None}, {}, ["exp"]),
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[refstore.Store]:
    root = tmp_path_factory.mktemp("query")
    with refstore.init(root) as store:
        for name, job_type, config, summary, tags in RUNS:
            with store.run(job_type=job_type, name=name, config=config, tags=tags) as run:
                run.summary.update(summary)
        yield store


def names(store: refstore.Store, flt: Any, order: Any = "name", **kw: Any) -> list[str]:
    return [r.name for r in store.runs(filter=flt, order=order, **kw)]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, ["cnn-1", "cnn-2", "eval-1", "prep"]),
        ({"config.lr": 0.01}, ["cnn-1"]),  # the string "0.01" of eval-1 does not equal the number
        ({"config.lr": "0.01"}, ["eval-1"]),
        ({"summary.acc": {"$gt": 0.9}}, ["cnn-1", "eval-1"]),
        ({"summary.acc": {"$gte": 0.85, "$lt": 0.95}}, ["cnn-1", "cnn-2"]),
        ({"summary.acc": {"$lte": 0.85}}, ["cnn-2"]),
        ({"$or": [{"config.lr": 0.01}, {"summary.acc": {"$gt": 0.94}}]}, ["cnn-1", "eval-1"]),
        ({"$and": [{"job_type": "train"}, {"config.layers": {"$gt": 4}}]}, ["cnn-2"]),
        ({"$nor": [{"job_type": "train"}, {"job_type": "eval"}]}, ["prep"]),
        ({"$not": {"job_type": "train"}}, ["eval-1", "prep"]),
        ({"summary.acc": {"$not": {"$gt": 0.9}}}, ["cnn-2", "prep"]),  # missing field is "not > 0.9"
        ({"job_type": {"$ne": "train"}}, ["eval-1", "prep"]),
        ({"summary.acc": {"$ne": 0.91}}, ["cnn-2", "eval-1", "prep"]),
        ({"job_type": {"$in": ["eval", "preprocess"]}}, ["eval-1", "prep"]),
        ({"job_type": {"$nin": ["eval", "preprocess"]}}, ["cnn-1", "cnn-2"]),
        ({"config.opt.name": "adam"}, ["cnn-1"]),
        ({"config.opt": {"$exists": True}}, ["cnn-1", "cnn-2"]),
        ({"config.note": {"$exists": True}}, ["prep"]),  # present with a null value
        ({"config.note": None}, ["cnn-1", "cnn-2", "eval-1", "prep"]),  # null or missing, as in MongoDB
        ({"summary.acc": {"$exists": False}}, ["prep"]),
        ({"summary.done": True}, ["cnn-1"]),
        ({"summary.done": False}, ["cnn-2"]),
        ({"name": {"$regex": "^cnn-[0-9]$"}}, ["cnn-1", "cnn-2"]),
        ({"config.split": {"$regex": "es"}}, ["eval-1"]),
        ({"tags": "exp"}, ["cnn-2", "prep"]),
        ({"tags": {"$in": ["baseline", "big"]}}, ["cnn-1", "cnn-2"]),
        ({"tags": {"$nin": ["exp"]}}, ["cnn-1", "eval-1"]),
        ({"tags": ["exp", "big"]}, ["cnn-2"]),
        ({"tags": {"$exists": False}}, ["eval-1"]),
        ({"tags": {"$regex": "^base"}}, ["cnn-1"]),
        ({"created_at": {"$gt": "2000-01-01"}}, ["cnn-1", "cnn-2", "eval-1", "prep"]),
        ({"created_at": {"$lt": "2000-01-01"}}, []),
        ({"status": "finished", "job_type": "eval"}, ["eval-1"]),
    ],
)
def test_filters(filled: refstore.Store, flt: dict[str, Any], expected: list[str]) -> None:
    assert names(filled, flt) == expected


def test_order_and_pagination(filled: refstore.Store) -> None:
    assert names(filled, {}, order="+summary.acc") == ["cnn-2", "cnn-1", "eval-1", "prep"]  # missing last
    assert names(filled, {}, order="-summary.acc") == ["eval-1", "cnn-1", "cnn-2", "prep"]
    assert names(filled, {}, order="-created_at") == ["prep", "eval-1", "cnn-2", "cnn-1"]
    assert names(filled, {}, order="job_type,-name") == ["eval-1", "prep", "cnn-2", "cnn-1"]
    assert names(filled, {}, order="name", limit=2, offset=1) == ["cnn-2", "eval-1"]
    assert names(filled, {}, order="name", limit=0) == []


@pytest.mark.parametrize(
    "flt",
    [
        {"$where": "1"},
        {"config.lr": {"$gtx": 1}},
        {"config.lr": {"$gt": [1]}},
        {"config.lr": {"$in": 3}},
        {"$or": []},
        {"$or": {"a": 1}},
        {"$and": [1]},
        {"config": 1},
        {"config.": 1},
        {"config.a..b": 1},
        {'config.a"b': 1},
        {"config.a[0]": 1},
        {"summary.$x": 1},
        {"nosuchfield": 1},
        {"name": {"$regex": "(unclosed"}},
        {"name": {"$regex": 5}},
        {"name": {"$exists": "yes"}},
        {"name": 3},
        {"created_at": {"$gt": 5}},
        {"tags": {"$gt": "a"}},
        {"config.lr": {"$gt": None}},
        {"config.lr": {"$gt": 1, "plain": 2}},
        {"config.lr": {"$not": 3}},
        {"config.lr": float("nan")},
        {"$not": []},
        [1, 2],
        "text",
    ],
)
def test_malformed_filters_are_usage_errors(filled: refstore.Store, flt: Any) -> None:
    with pytest.raises(UsageError):
        filled.runs(filter=flt)


@pytest.mark.parametrize("order", ["", "+", "-tags", "-config", "nosuch", 5, ["a", 3]])
def test_bad_order_is_a_usage_error(filled: refstore.Store, order: Any) -> None:
    if order == "":
        assert len(filled.runs(order=order)) == 4  # empty means the default order
        return
    with pytest.raises(UsageError):
        filled.runs(order=order)


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (1, -1), (True, 0), ("3", 0)])
def test_bad_page_is_a_usage_error(filled: refstore.Store, limit: Any, offset: Any) -> None:
    with pytest.raises(UsageError):
        filled.runs(limit=limit, offset=offset)


def test_user_text_only_ever_reaches_sql_as_parameters() -> None:
    evil = "x'); DROP TABLE runs; --"
    compiled = query.compile_filter({"name": evil, "config.k": {"$regex": "DROP.*"}, "tags": evil, "summary.x": {"$in": [evil]}})
    assert evil not in compiled.sql and "DROP" not in compiled.sql
    assert evil in compiled.params


# -- property tests -------------------------------------------------------------------
FIELDS = st.sampled_from(
    [
        "name",
        "job_type",
        "status",
        "created_at",
        "tags",
        "config.lr",
        "config.opt.name",
        "summary.acc",
        "summary",
        "x",
        'config.a"b',
        "$or",
    ]
)
OPS = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$not", "$bogus"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)


def _filters() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.dictionaries(FIELDS, VALUES, max_size=2),
        st.dictionaries(FIELDS, st.dictionaries(OPS, VALUES, min_size=1, max_size=2), max_size=2),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda xs: {"$and": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda xs: {"$or": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda x: {"$not": x}, inner),
            VALUES,
        ),
        max_leaves=8,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=_filters())
def test_compiler_never_crashes_and_sql_always_runs(filled: refstore.Store, flt: Any) -> None:
    """Any JSON value either compiles to SQL that SQLite accepts, or is refused with a RefstoreError."""
    try:
        result = filled.runs(filter=flt)
    except RefstoreError:
        return
    assert all(r.status in ("running", "finished", "failed") for r in result)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bound=st.floats(-1, 2, allow_nan=False), op=st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$eq", "$ne"]))
def test_numeric_comparison_matches_python(filled: refstore.Store, bound: float, op: str) -> None:
    """The SQL agrees with a Python model of the operator on summary.acc (missing counts only for $ne)."""
    check = {
        "$gt": lambda v: v is not None and v > bound,
        "$gte": lambda v: v is not None and v >= bound,
        "$lt": lambda v: v is not None and v < bound,
        "$lte": lambda v: v is not None and v <= bound,
        "$eq": lambda v: v is not None and v == bound,
        "$ne": lambda v: v is None or v != bound,
    }[op]
    expected = sorted(name for name, _, _, summary, _ in RUNS if check(summary.get("acc")))
    assert names(filled, {"summary.acc": {op: bound}}) == expected


def test_regexp_function_is_registered_and_bounded() -> None:
    conn = sqlite3.connect(":memory:")
    query.register_functions(conn)
    assert conn.execute("SELECT 'abc' REGEXP 'b'").fetchone()[0] == 1
    assert conn.execute("SELECT 3 REGEXP 'b'").fetchone()[0] == 0
    with pytest.raises(UsageError):
        query.check_regex("a" * (query.MAX_REGEX + 1))


def test_filter_json_round_trip_from_cli_text(filled: refstore.Store, tmp_path: Path) -> None:
    text = '{"$or": [{"config.lr": 0.01}, {"summary.acc": {"$gt": 0.9}}]}'
    assert names(filled, json.loads(text)) == ["cnn-1", "eval-1"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.one_of(st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3), st.integers(), st.none()))
def test_order_compiler_never_crashes(filled: refstore.Store, order: Any) -> None:
    try:
        result = filled.runs(order=order)
    except RefstoreError:
        return
    assert len(result) == len(RUNS)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_cli_filter_text_is_parsed_or_refused(text: str) -> None:
    from refstore.cli.runs import parse_filter

    try:
        parsed = parse_filter(text)
    except RefstoreError:
        return
    assert isinstance(parsed, dict)
