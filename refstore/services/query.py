"""Run filters: MongoDB-style documents (as W&B's public API takes them) compiled to SQL.

The SQL text comes only from this module's fixed fragments; every value a user
gives — including the JSON path of ``config.*``/``summary.*`` — is a bound
parameter. Key path segments are validated so a path cannot change meaning.
Every compiled predicate yields 0 or 1 (never NULL), so ``$not`` and ``$nor``
behave like MongoDB's: a missing field does not match ``$gt`` but does match
``$ne`` and ``$nin``.

Supported: ``$and $or $nor $not`` (top level, and ``$not`` on a field),
``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex`` on ``name``, ``job_type``,
``status``, ``project``, ``id``, ``created_at``, ``finished_at``, ``tags``,
``config.KEY[.KEY…]`` and ``summary.KEY[.KEY…]``.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from refstore.errors import UsageError

COLUMNS = {
    "id": "r.id",
    "name": "r.name",
    "job_type": "r.job_type",
    "status": "r.status",
    "project": "r.project",
    "created_at": "r.created_at",
    "finished_at": "r.finished_at",
}
JSON_COLUMNS = {"config": "r.config", "summary": "r.summary"}
COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", "$regex", "$not", *COMPARE}
MAX_DEPTH = 32
MAX_REGEX = 1000
MAX_REGEX_SUBJECT = 100_000
MAX_IN = 1000
_SEGMENT = re.compile(r"[^\"\\\x00-\x1f.\[\]$*]{1,256}")


@dataclass
class Compiled:
    """A WHERE clause (without the keyword) and its parameters."""

    sql: str
    params: list[Any] = field(default_factory=list)


def register_functions(conn: sqlite3.Connection) -> None:
    """Add ``REGEXP`` to the connection (SQLite has the operator but no implementation)."""
    conn.create_function("REGEXP", 2, _regexp, deterministic=True)


@functools.lru_cache(maxsize=256)
def _compiled_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: Any, value: Any) -> int:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return 0
    return 1 if _compiled_regex(pattern).search(value[:MAX_REGEX_SUBJECT]) else 0


def check_regex(pattern: Any) -> str:
    """A pattern Python can compile, of bounded length, or a UsageError."""
    if not isinstance(pattern, str):
        raise UsageError(f"$regex needs a string pattern, not {pattern!r}")
    if len(pattern) > MAX_REGEX:
        raise UsageError(f"$regex pattern is longer than {MAX_REGEX} characters; shorten it")
    try:
        _compiled_regex(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"invalid $regex {pattern!r}: {exc}") from exc
    return pattern


def json_path(segments: Sequence[str], original: str) -> str:
    """``$."a"."b"`` for key segments that cannot break out of their quotes."""
    if not segments:
        raise UsageError(f"invalid field {original!r}: name a key, e.g. 'config.lr' or 'summary.acc'")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise UsageError(
                f"invalid key {segment!r} in field {original!r}: keys are 1-256 characters without quotes, "
                "backslashes, brackets, '$', '*' or control characters"
            )
    return "$" + "".join(f'."{s}"' for s in segments)


@dataclass(frozen=True)
class _Field:
    """How to read one field: a plain column, a JSON path in a column, or the tags table."""

    kind: str  # "column" | "json" | "tags"
    expr: str
    path: str | None = None
    name: str = ""


def resolve_field(name: Any) -> _Field:
    if not isinstance(name, str) or not name:
        raise UsageError(f"invalid field {name!r} in filter")
    if name in COLUMNS:
        return _Field("column", COLUMNS[name], name=name)
    if name == "tags":
        return _Field("tags", "", name=name)
    head, dot, rest = name.partition(".")
    if head in JSON_COLUMNS:
        if not dot:
            raise UsageError(f"field {name!r} needs a key: use {name}.KEY (e.g. 'config.lr')")
        return _Field("json", JSON_COLUMNS[head], json_path(rest.split("."), name), name=name)
    known = ", ".join([*COLUMNS, "tags", "config.KEY", "summary.KEY"])
    raise UsageError(f"unknown field {name!r} in filter; use one of {known}")


def _scalar(value: Any, op: str, field: _Field) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > 2**63 - 1:
            raise UsageError(f"{op} value {value} on {field.name} is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{op} value {value} on {field.name} is not a finite number")
        return value
    raise UsageError(f"{op} on {field.name} needs a string, number, boolean or null, not {type(value).__name__}")


# -- leaf predicates (each returns an expression that is 0 or 1) --------------------
def _value_sql(field: _Field, params: list[Any]) -> str:
    """The field's value as SQL (for columns and JSON paths)."""
    if field.kind == "column":
        return field.expr
    params.append(field.path)
    return f"json_extract({field.expr}, ?)"


def _type_sql(field: _Field, params: list[Any]) -> str:
    params.append(field.path)
    return f"json_type({field.expr}, ?)"


def _eq(field: _Field, value: Any, params: list[Any]) -> str:
    value = _scalar(value, "$eq", field)
    if field.kind == "tags":
        if not isinstance(value, str):
            raise UsageError("tags are strings; compare them with strings")
        params.append(value)
        return "EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id AND t.tag = ?)"
    if value is None:
        if field.kind == "column":
            return f"({field.expr} IS NULL)"
        return f"({_value_sql(field, params)} IS NULL)"
    if field.kind == "column" and not isinstance(value, str):
        raise UsageError(f"{field.name} is text; compare it with a string")
    if isinstance(value, bool):
        type_sql = _type_sql(field, params)
        params.append("true" if value else "false")
        return f"COALESCE({type_sql} = ?, 0)"
    if field.kind == "json":
        kinds = "('integer', 'real')" if isinstance(value, (int, float)) else "('text')"
        type_sql = _type_sql(field, params)
        value_sql = _value_sql(field, params)
        params.append(value)
        return f"COALESCE({type_sql} IN {kinds} AND {value_sql} = ?, 0)"
    params.append(value)
    return f"COALESCE({field.expr} = ?, 0)"


def _compare(field: _Field, op: str, value: Any, params: list[Any]) -> str:
    value = _scalar(value, op, field)
    if field.kind == "tags":
        raise UsageError(f"{op} does not apply to tags; use $eq, $ne, $in, $nin, $exists or $regex")
    if value is None or isinstance(value, bool):
        raise UsageError(f"{op} on {field.name} needs a number or a string")
    if field.kind == "column":
        if not isinstance(value, str):
            raise UsageError(f"{field.name} is text; compare it with a string (e.g. an ISO date)")
        params.append(value)
        return f"COALESCE({field.expr} {COMPARE[op]} ?, 0)"
    kinds = "('integer', 'real')" if isinstance(value, (int, float)) else "('text')"
    type_sql = _type_sql(field, params)
    value_sql = _value_sql(field, params)
    params.append(value)
    return f"COALESCE({type_sql} IN {kinds} AND {value_sql} {COMPARE[op]} ?, 0)"


def _in(field: _Field, op: str, values: Any, params: list[Any]) -> str:
    if not isinstance(values, list):
        raise UsageError(f"{op} on {field.name} needs a list of values")
    if len(values) > MAX_IN:
        raise UsageError(f"{op} on {field.name} has more than {MAX_IN} values")
    if not values:
        return "0"
    return "(" + " OR ".join(_eq(field, v, params) for v in values) + ")"


def _exists(field: _Field, value: Any, params: list[Any]) -> str:
    if not isinstance(value, bool):
        raise UsageError(f"$exists on {field.name} needs true or false")
    if field.kind == "tags":
        sql = "EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id)"
    elif field.kind == "column":
        sql = f"({field.expr} IS NOT NULL)"
    else:
        sql = f"({_type_sql(field, params)} IS NOT NULL)"
    return sql if value else f"(NOT {sql})"


def _regex(field: _Field, pattern: Any, params: list[Any]) -> str:
    pattern = check_regex(pattern)
    if field.kind == "tags":
        params.append(pattern)
        return "EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id AND t.tag REGEXP ?)"
    value_sql = _value_sql(field, params)
    params.append(pattern)
    return f"COALESCE({value_sql} REGEXP ?, 0)"


def _field_ops(field: _Field, spec: Mapping[str, Any], params: list[Any], depth: int) -> str:
    if depth > MAX_DEPTH:
        raise UsageError(f"filter nests deeper than {MAX_DEPTH} levels")
    if not spec:
        raise UsageError(f'empty operator document on {field.name}; give e.g. {{"$gt": 1}}')
    parts: list[str] = []
    for op, value in spec.items():
        if op not in FIELD_OPS:
            raise UsageError(f"unknown operator {op!r} on {field.name}; use one of {', '.join(sorted(FIELD_OPS))}")
        if op == "$eq":
            parts.append(_eq(field, value, params))
        elif op == "$ne":
            parts.append(f"(NOT {_eq(field, value, params)})")
        elif op in COMPARE:
            parts.append(_compare(field, op, value, params))
        elif op == "$in":
            parts.append(_in(field, op, value, params))
        elif op == "$nin":
            parts.append(f"(NOT {_in(field, op, value, params)})")
        elif op == "$exists":
            parts.append(_exists(field, value, params))
        elif op == "$regex":
            parts.append(_regex(field, value, params))
        else:  # $not
            if not isinstance(value, Mapping) or not _is_operator_doc(value):
                raise UsageError(f'$not on {field.name} needs an operator document such as {{"$gt": 1}}')
            parts.append(f"(NOT {_field_ops(field, value, params, depth + 1)})")
    return "(" + " AND ".join(parts) + ")"


def _is_operator_doc(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


def _document(doc: Any, params: list[Any], depth: int) -> str:
    if depth > MAX_DEPTH:
        raise UsageError(f"filter nests deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, Mapping):
        raise UsageError(f"a filter must be a JSON object, not {type(doc).__name__}")
    if not doc:
        return "1"
    parts: list[str] = []
    for key, value in doc.items():
        if not isinstance(key, str):
            raise UsageError(f"invalid filter key {key!r}")
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise UsageError(f"{key} needs a non-empty list of filters")
            subs = [_document(sub, params, depth + 1) for sub in value]
            if key == "$and":
                parts.append("(" + " AND ".join(subs) + ")")
            elif key == "$or":
                parts.append("(" + " OR ".join(subs) + ")")
            else:
                parts.append("(NOT (" + " OR ".join(subs) + "))")
        elif key == "$not":
            if not isinstance(value, Mapping) or not value:
                raise UsageError("$not at the top level needs a non-empty filter document")
            parts.append(f"(NOT {_document(value, params, depth + 1)})")
        elif key.startswith("$"):
            raise UsageError(f"unknown operator {key!r} at the top level; use $and, $or, $nor, $not or a field name")
        else:
            field = resolve_field(key)
            if _is_operator_doc(value):
                parts.append(_field_ops(field, value, params, depth + 1))
            elif isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value):
                raise UsageError(f"do not mix operators and plain keys in the document for {key}")
            elif isinstance(value, list) and field.kind == "tags":
                # {"tags": ["a", "b"]}: the run has all of them (as in MongoDB's array equality, but order-free)
                parts.append("(" + " AND ".join(_eq(field, v, params) for v in value) + ")" if value else "1")
            else:
                parts.append(_eq(field, value, params))
    return "(" + " AND ".join(parts) + ")"


def compile_filter(doc: Any) -> Compiled:
    """Compile a filter document into a WHERE clause over ``runs r``; raise UsageError for anything malformed."""
    params: list[Any] = []
    try:
        sql = _document(doc if doc is not None else {}, params, 0)
    except RecursionError as exc:
        raise UsageError("filter is nested too deeply") from exc
    return Compiled(sql, params)


def compile_order(order: str | Sequence[str] | None) -> Compiled:
    """``-created_at``, ``+summary.acc``, ``name`` (or several, comma-separated) → ORDER BY clause."""
    if order is None or order == "":
        items: list[str] = ["-created_at"]
    elif isinstance(order, str):
        items = [part.strip() for part in order.split(",")]
    elif isinstance(order, Sequence) and all(isinstance(part, str) for part in order):
        items = [part.strip() for part in order]
    else:
        raise UsageError("order must be a string such as '-created_at' or a list of them")
    params: list[Any] = []
    terms: list[str] = []
    for item in items:
        if not item:
            raise UsageError("empty order key; use e.g. '-created_at' or '+summary.acc'")
        descending = item.startswith("-")
        name = item[1:] if item[0] in "+-" else item
        field = resolve_field(name)
        if field.kind == "tags":
            raise UsageError("runs cannot be ordered by tags")
        expr = _value_sql(field, params)
        terms.append(f"{expr} {'DESC' if descending else 'ASC'} NULLS LAST")
    terms.append("r.id ASC")
    return Compiled(", ".join(terms), params)


def check_page(limit: int | None, offset: int | None) -> tuple[int, int]:
    for what, value in (("limit", limit), ("offset", offset)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise UsageError(f"{what} must be a non-negative integer, not {value!r}")
    return (-1 if limit is None else limit), (offset or 0)
