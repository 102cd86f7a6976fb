"""Whether a document matches a list query's conditions, evaluated in Python.

A feed decides which changes a subscriber sees by testing the document before and
after each change against the same :class:`~bzzlite.query.Condition` objects the
stores compile. The semantics are the stores' (MongoDB's): a missing field is null;
``__ne`` and ``__nin`` also match null; on a list field a condition holds when some
member satisfies it (``__ne``/``__nin``: when no member is excluded); ordering and
equality compare values of the same kind only (numbers with numbers, text with text).
No I/O here, so it is tested against the stores in microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..query import Condition, get_path


def _kind(value: Any) -> int:
    """The comparison bracket of a JSON value: 0 null, 1 number, 2 text, 3 bool, 4 other."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 3
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, str):
        return 2
    return 4


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return _kind(a) == _kind(b) and a == b


def _scalar(value: Any, op: str, target: Any) -> bool:
    """``value op target`` for one stored value (a list member for list fields)."""
    if op == "eq":
        return _equal(value, target)
    if op == "ne":
        return not _equal(value, target)
    if op == "in":
        return any(_equal(value, t) for t in target)
    if op == "nin":
        return not any(_equal(value, t) for t in target)
    if op == "exists":
        return (value is not None) is bool(target)
    if value is None or target is None:
        return False
    if op in ("gt", "gte", "lt", "lte"):
        kind = _kind(value)
        if kind != _kind(target) or kind == 4:
            return False
        if op == "gt":
            return bool(value > target)
        if op == "gte":
            return bool(value >= target)
        if op == "lt":
            return bool(value < target)
        return bool(value <= target)
    if op == "contains":
        return isinstance(value, str) and target in value
    if op == "startswith":
        return isinstance(value, str) and value.startswith(target)
    raise ValueError(f"unknown operator {op!r}")  # the query parser allows no other


def condition_holds(condition: Condition, doc: Mapping[str, Any]) -> bool:
    """One condition against a JSON-mode document that carries its ``id``."""
    value = get_path(doc, condition.path)
    if condition.is_list and condition.op != "exists":
        members: Iterable[Any] = value if isinstance(value, list) else ()
        if condition.op == "ne":
            return not any(_equal(m, condition.value) for m in members)
        if condition.op == "nin":
            return not any(_equal(m, t) for m in members for t in condition.value)
        return any(_scalar(m, condition.op, condition.value) for m in members)
    return _scalar(value, condition.op, condition.value)


def matches(conditions: Iterable[Condition], doc: Mapping[str, Any] | None) -> bool:
    """Whether every condition holds for ``doc`` (None, a document that is not there: never)."""
    if doc is None:
        return False
    return all(condition_holds(c, doc) for c in conditions)
