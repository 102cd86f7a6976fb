"""The feeds' Python matcher gives the stores' answers: the HTTP query suite's cases, in memory."""

from __future__ import annotations

import pytest

from bzzlite import Registry
from bzzlite.documents.conversion import as_json, validate
from bzzlite.documents.matcher import matches
from bzzlite.query import Condition, build_query, parse_arguments
from bzzlite.stores.base import Record
from tests.test_queries_http import FILTERS, ROWS, Item

registry = Registry()
SPEC = registry.add_resource(Item)
DOCS = [as_json(SPEC, Record(f"{i:024x}", 1, validate(SPEC, row))) for i, row in enumerate(ROWS, 1)]


def conditions(query: str) -> tuple[Condition, ...]:
    from urllib.parse import parse_qs

    arguments = parse_arguments(SPEC.schema, parse_qs(query, keep_blank_values=True))
    return build_query(SPEC.schema, arguments).conditions


@pytest.mark.parametrize(("query", "expected"), FILTERS, ids=[q for q, _ in FILTERS])
def test_matcher_agrees_with_the_stores(query, expected):
    found = {doc["name"] for doc in DOCS if matches(conditions(query), doc)}
    assert found == expected


def test_ids_compare_as_text():
    assert [d["name"] for d in DOCS if matches(conditions(f"id__gt={3:024x}"), d)] == ["date", "Eggplant", "fig"]
    assert [d["name"] for d in DOCS if matches(conditions(f"id__in={1:024x},{6:024x}"), d)] == ["Apple", "fig"]


def test_no_document_matches_nothing():
    assert matches((), None) is False
    assert matches((), {"id": "x"}) is True


@pytest.mark.parametrize(("value", "condition", "expected"), [
    (1, Condition("n", "eq", 1.0), True),
    (True, Condition("n", "eq", 1), False),  # a boolean is not a number
    ("1", Condition("n", "eq", 1), False),
    ("b", Condition("n", "gt", 1), False),  # values of different kinds never compare
    (None, Condition("n", "lt", 1), False),
    (None, Condition("n", "ne", 1), True),
    (None, Condition("n", "nin", [1]), True),
    (None, Condition("n", "nin", [1, None]), False),
    (None, Condition("n", "in", [None]), True),
    ([1, None], Condition("n", "eq", None, True), True),
    (None, Condition("n", "ne", "x", True), True),
    ({"a": 1}, Condition("n", "eq", 1), False),
])
def test_edge_cases(value, condition, expected):
    assert matches((condition,), {"id": "x", "n": value}) is expected
