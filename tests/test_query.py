"""The query language, without a server: bzzlite.query parses and validates."""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
from typing import Annotated
from urllib.parse import parse_qs

import orjson
import pytest
from pydantic import BaseModel

from bzzlite import Unique
from bzzlite.errors import QueryError
from bzzlite.models.schema import inspect_model
from bzzlite.query import (
    OPERATORS,
    All,
    Condition,
    Cursor,
    Query,
    SortKey,
    build_query,
    decode_cursor,
    encode_cursor,
    get_path,
    parse_arguments,
    project,
    sort_values,
)

ID = "65a1b2c3d4e5f60718293a4b"
ID2 = "65a1b2c3d4e5f60718293a4c"


class Color(str, enum.Enum):
    red = "red"
    green = "green"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Product(BaseModel):
    name: str
    price: float = 0.0
    stock: int = 0
    active: bool = True
    added: datetime.date | None = None
    seen: datetime.datetime | None = None
    color: Color = Color.red
    sku: Annotated[str, Unique] | None = None
    note: str | None = None
    tags: list[str] = []
    sizes: list[int] = []
    address: Address | None = None


SCHEMA = inspect_model(Product)


def qs(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True)


def args(text: str, **kw):
    return parse_arguments(SCHEMA, qs(text), **kw)


def query(text: str, **kw) -> Query:
    return build_query(SCHEMA, args(text), **kw)


def bad(text: str, parameter: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        query(text)
    error = info.value
    assert error.status == 400
    assert error.parameter == parameter
    assert error.errors[0]["loc"] == ["query", parameter]
    assert parameter in error.message
    return error


# -- parse_arguments: the arguments of pre_get_list ----------------------------------------


def test_empty_query_string():
    assert args("") == {"filters": {}, "sort": [], "fields": None, "page": 1, "per_page": 20, "after": None}


def test_the_default_per_page_comes_from_the_resource():
    assert args("", per_page=7)["per_page"] == 7


def test_arguments_shape_with_everything():
    parsed = args("price__gt=10&color=green&sort=-price,name&fields=name,price&page=2&per_page=5")
    assert parsed == {
        "filters": {"price__gt": 10.0, "color": "green"},
        "sort": ["-price", "name"],
        "fields": ["name", "price"],
        "page": 2,
        "per_page": 5,
        "after": None,
    }


def test_filter_values_are_coerced_in_the_arguments():
    filters = args("stock=3&price=2&active=false&added=2024-01-31&tags=x&sizes__in=1,2&note__exists=true")["filters"]
    assert filters == {
        "stock": 3, "price": 2.0, "active": False, "added": "2024-01-31", "tags": "x", "sizes__in": [1, 2],
        "note__exists": True,
    }
    assert type(filters["price"]) is float


def test_a_repeated_filter_is_all_of_its_values():
    filters = args("stock__gt=1&stock__gt=5&stock__lt=9")["filters"]
    assert filters["stock__gt"] == All([1, 5])
    assert isinstance(filters["stock__gt"], All)
    conditions = query("stock__gt=1&stock__gt=5&stock__lt=9").conditions
    assert conditions == (Condition("stock", "gt", 1), Condition("stock", "gt", 5), Condition("stock", "lt", 9))


def test_repeated_list_parameters_add_to_the_list():
    """What generated clients send for an array parameter (form style, exploded) means the comma form."""
    assert args("sizes__in=1&sizes__in=2")["filters"]["sizes__in"] == [1, 2]
    assert args("sizes__in=1,2&sizes__in=3")["filters"]["sizes__in"] == [1, 2, 3]
    assert args("sizes__nin=1&sizes__nin=2")["filters"] == args("sizes__nin=1,2")["filters"]
    assert args("sort=-price&sort=stock")["sort"] == ["-price", "stock"]
    assert args("fields=price&fields=stock,tags")["fields"] == ["price", "stock", "tags"]
    assert query("sizes__in=1&sizes__in=2").conditions == (Condition("sizes", "in", [1, 2], is_list=True),)


def test_after_is_kept_verbatim():
    assert args("after=")["after"] == ""
    assert args("after=abc")["after"] == "abc"


# -- build_query: conditions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("name=Pen", Condition("name", "eq", "Pen")),
        ("name__eq=Pen", Condition("name", "eq", "Pen")),
        ("name__ne=Pen", Condition("name", "ne", "Pen")),
        ("name__gt=M", Condition("name", "gt", "M")),
        ("name__contains=en", Condition("name", "contains", "en")),
        ("name__startswith=P", Condition("name", "startswith", "P")),
        ("name__in=a,b", Condition("name", "in", ["a", "b"])),
        ("name__nin=a,b", Condition("name", "nin", ["a", "b"])),
        ("price__gte=1.5", Condition("price", "gte", 1.5)),
        ("price__lte=2", Condition("price", "lte", 2.0)),
        ("stock__lt=10", Condition("stock", "lt", 10)),
        ("stock__in=1,2,3", Condition("stock", "in", [1, 2, 3])),
        ("active=true", Condition("active", "eq", True)),
        ("active__ne=1", Condition("active", "ne", True)),
        ("added__gte=2024-01-01", Condition("added", "gte", "2024-01-01")),
        ("seen__lt=2024-01-01T10:00:00Z", Condition("seen", "lt", "2024-01-01T10:00:00.000000Z")),
        ("seen__gte=2024-01-01T12:00:00%2B02:00", Condition("seen", "gte", "2024-01-01T10:00:00.000000Z")),
        ("color=green", Condition("color", "eq", "green")),
        ("color__in=red,green", Condition("color", "in", ["red", "green"])),
        ("note=null", Condition("note", "eq", None)),
        ("note__ne=null", Condition("note", "ne", None)),
        ("note__in=a,null", Condition("note", "in", ["a", None])),
        ("note__exists=false", Condition("note", "exists", False)),
        ("note__exists=1", Condition("note", "exists", True)),
        ("tags=red", Condition("tags", "eq", "red", True)),
        ("tags__in=a,b", Condition("tags", "in", ["a", "b"], True)),
        ("tags__contains=e", Condition("tags", "contains", "e", True)),
        ("sizes=42", Condition("sizes", "eq", 42, True)),
        ("address.city=Paris", Condition("address.city", "eq", "Paris")),
        ("address.zip__exists=false", Condition("address.zip", "exists", False)),
        ("address.city__startswith=Pa", Condition("address.city", "startswith", "Pa")),
        (f"id={ID}", Condition("id", "eq", ID)),
        (f"id__in={ID},{ID2}", Condition("id", "in", [ID, ID2])),
        (f"id__gt={ID}", Condition("id", "gt", ID)),
        ("sku=ABC", Condition("sku", "eq", "ABC")),
    ],
)
def test_each_operator_and_type(text, condition):
    assert query(text).conditions == (condition,)


def test_every_operator_is_covered_above():
    assert OPERATORS == {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "startswith", "exists"}


def test_empty_in_list():
    assert query("stock__in=").conditions == (Condition("stock", "in", []),)


def test_a_text_value_keeps_what_it_looks_like():
    assert query("name=42").conditions == (Condition("name", "eq", "42"),)
    assert query("name=null").conditions == (Condition("name", "eq", "null"),)  # name is not nullable
    assert query("name=").conditions == (Condition("name", "eq", ""),)


def test_conditions_are_in_query_order():
    assert [c.path for c in query("stock=1&name=a&price=2").conditions] == ["stock", "name", "price"]


# -- build_query: sort, projection, pages ----------------------------------------------------


def test_sort_keys_and_the_id_tie_break():
    q = query("sort=-price,name")
    assert q.sort == (SortKey("price", True), SortKey("name", False))
    assert q.order == (SortKey("price", True), SortKey("name", False), SortKey("id"))
    assert query("").order == (SortKey("id"),)
    # the id tie-break goes the way of the last key: one index serves sort=f and sort=-f
    assert query("sort=-price").order == (SortKey("price", True), SortKey("id", True))
    assert query("sort=price,-stock").order[-1] == SortKey("id", True)
    assert query("sort=-id").order == (SortKey("id", True),)
    assert query("sort=address.city").sort == (SortKey("address.city"),)
    assert query("sort=%2Bstock").sort == (SortKey("stock"),)
    # "+" in a query string is a space: ?sort=+stock and ?sort=name, price mean what they say
    assert query("sort=+stock").sort == (SortKey("stock"),)
    assert query("sort=name,%20-price").sort == (SortKey("name"), SortKey("price", True))


def test_projection():
    assert query("fields=name,price").fields == ("name", "price")
    assert query("fields=name,name,id").fields == ("name", "id")
    assert query("fields=address").fields == ("address",)
    assert query("fields=address.city,tags").fields == ("address.city", "tags")
    assert query("").fields is None
    assert query("fields=name,+price").fields == ("name", "price")


def test_pages():
    q = query("page=3&per_page=10")
    assert (q.page, q.per_page, q.offset, q.keyset) == (3, 10, 20, False)
    assert query("").per_page == 20


def test_per_page_is_capped():
    assert query("per_page=1000").per_page == 100
    assert query("per_page=1000", max_per_page=30).per_page == 30
    assert query("per_page=100").per_page == 100
    assert query("per_page=99999999999999999999999999999").per_page == 100


# -- bad queries: a 400 naming the parameter -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parameter"),
    [
        ("nope=1", "nope"),
        ("nope__gt=1", "nope__gt"),
        ("name__like=x", "name__like"),
        ("name__=x", "name__"),
        ("__gt=1", "__gt"),
        ("name__regex=.*", "name__regex"),
        ("name__where=1", "name__where"),
        ("address=Paris", "address"),  # a model, not a scalar
        ("address.planet=Mars", "address.planet"),
        ("address.city.x=1", "address.city.x"),
        ("stock=abc", "stock"),
        ("stock=1.5", "stock"),
        ("stock=", "stock"),
        ("stock=null", "stock"),  # not nullable
        ("stock__in=1,x", "stock__in"),
        ("price=cheap", "price"),
        ("active=maybe", "active"),
        ("added=2024-02-30", "added"),
        ("seen__gt=tomorrow", "seen__gt"),
        ("color=purple", "color"),
        ("sizes=x", "sizes"),
        ("note__exists=perhaps", "note__exists"),
        ("active__contains=t", "active__contains"),
        ("stock__startswith=1", "stock__startswith"),
        ("tags__gt=a", "tags__gt"),  # list fields are member-matched, not ordered
        ("id=123", "id"),
        ("id=" + "g" * 24, "id"),
        (f"id__in={ID},nope", "id__in"),
        ("sort=nope", "sort"),
        ("sort=tags", "sort"),
        ("sort=address", "sort"),
        ("sort=-", "sort"),
        ("sort=price,-price", "sort"),
        ("sort=a&sort=b", "sort"),
        ("fields=nope", "fields"),
        ("fields=address.planet", "fields"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=x", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("page=1&page=2", "page"),
        ("per_page=0", "per_page"),
        ("per_page=-5", "per_page"),
        ("per_page=ten", "per_page"),
        ("after=garbage!", "after"),
        ("page=2&after=", "after"),
    ],
)
def test_bad_queries(text, parameter):
    bad(text, parameter)


@pytest.mark.parametrize(
    ("text", "parameter"),
    [
        ("stock=99999999999999999999", "stock"),  # beyond 64 bits: no store can hold it
        ("stock__in=1,-99999999999999999999", "stock__in"),
        ("price=nan", "price"),
        ("price__gt=inf", "price__gt"),
        ("price__lt=-Infinity", "price__lt"),
        ("price=1e400", "price"),
        ("page=99999999999999999999999", "page"),
    ],
)
def test_numbers_no_store_can_hold_are_bad_queries(text, parameter):
    bad(text, parameter)


def test_a_long_bad_value_is_shortened_in_the_message():
    error = bad("stock=" + "9x" * 500, "stock")
    assert len(error.message) < 300


def test_the_error_lists_the_parameter_as_loc():
    error = bad("nope=1", "nope")
    assert error.errors == [{"loc": ["query", "nope"], "msg": "unknown field 'nope'", "type": "query_unknown_field"}]


# -- arguments changed by a pre_get_list receiver are validated again ----------------------


def test_a_receiver_may_add_a_filter_with_python_values():
    arguments = args("stock__gt=1")
    arguments["filters"]["added"] = datetime.date(2024, 1, 2)
    arguments["filters"]["color"] = Color.green
    arguments["filters"]["sku__in"] = ("a", "b")
    arguments["filters"]["note__exists"] = False
    q = build_query(SCHEMA, arguments)
    assert q.conditions == (
        Condition("stock", "gt", 1), Condition("added", "eq", "2024-01-02"), Condition("color", "eq", "green"),
        Condition("sku", "in", ["a", "b"]), Condition("note", "exists", False),
    )


def test_a_receiver_may_narrow_sort_fields_and_pages():
    arguments = args("")
    arguments.update(sort=["-stock"], fields=["name"], page=2, per_page=3)
    q = build_query(SCHEMA, arguments)
    assert (q.sort, q.fields, q.page, q.per_page) == ((SortKey("stock", True),), ("name",), 2, 3)


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"filters": {"nope": 1}}, "nope"),
        ({"filters": {"stock": "many"}}, "stock"),
        ({"filters": {"stock__in": 3}}, "stock__in"),
        ({"filters": {"stock__bad": 3}}, "stock__bad"),
        ({"filters": ["stock"]}, "filters"),
        ({"filters": {1: 2}}, "1"),
        ({"sort": ["nope"]}, "sort"),
        ({"fields": ["nope"]}, "fields"),
        ({"page": 0}, "page"),
        ({"page": True}, "page"),
        ({"per_page": 2.5}, "per_page"),
        ({"per_page": "lots"}, "per_page"),
    ],
)
def test_what_a_receiver_leaves_is_validated_again(change, parameter):
    arguments = args("")
    arguments.update(change)
    with pytest.raises(QueryError) as info:
        build_query(SCHEMA, arguments)
    assert info.value.parameter == parameter
    assert info.value.status == 400


def test_receiver_values_of_the_wrong_type_do_not_sneak_through():
    arguments = args("")
    arguments["filters"]["name"] = {"$ne": None}  # a would-be database operator
    with pytest.raises(QueryError):
        build_query(SCHEMA, arguments)
    arguments["filters"] = {"stock": [1, 2]}
    with pytest.raises(QueryError):
        build_query(SCHEMA, arguments)


# -- keyset cursors ------------------------------------------------------------------------------


def test_cursor_round_trip():
    q = query("sort=-price,name&after=")
    assert q.keyset and q.after is None and q.offset == 0
    text = encode_cursor(q, (9.5, "Pen"), ID)
    assert "=" not in text and "/" not in text and "+" not in text  # safe in a URL as is
    assert decode_cursor(text, q) == Cursor((9.5, "Pen"), ID)
    q2 = query(f"sort=-price,name&after={text}")
    assert q2.after == Cursor((9.5, "Pen"), ID)
    assert q2.keyset and q2.page == 1


def test_cursor_with_null_sort_values():
    q = query("sort=note&after=")
    text = encode_cursor(q, (None,), ID)
    assert decode_cursor(text, q) == Cursor((None,), ID)


def test_a_cursor_for_another_sort_order_is_refused():
    text = encode_cursor(query("sort=name&after="), ("Pen",), ID)
    for other in ("sort=-name", "sort=price", "", "sort=name,price"):
        with pytest.raises(QueryError) as info:
            query(f"{other}&after={text}")
        assert info.value.parameter == "after"


def _raw_cursor(value) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%%",
        "é",
        "AAAA",
        _raw_cursor("abc"),
        _raw_cursor(["name,id", ["Pen"]]),
        _raw_cursor(["name,id", ["Pen"], "nothex"]),
        _raw_cursor(["name,id", ["Pen", "Ink"], ID]),
        _raw_cursor(["name,id", "Pen", ID]),
        _raw_cursor(["name,id", [{"$gt": ""}], ID]),
        _raw_cursor(["name,id", [["x"]], ID]),
        _raw_cursor(["name,id", [None], 5]),
        _raw_cursor({"a": 1, "b": 2, "c": 3}),
    ],
)
def test_garbage_cursors_are_refused(cursor):
    with pytest.raises(QueryError) as info:
        build_query(SCHEMA, {**args("sort=name"), "after": cursor})
    assert info.value.parameter == "after"


@pytest.mark.parametrize(
    "value",
    [b"1000000000000000000000000000000", b"1e400", b'"not a number"', b'{"$gt": 1}'],
    ids=["huge-int", "infinity", "wrong-type", "operator"],
)
def test_a_forged_cursor_with_a_value_the_field_cannot_hold_is_refused(value):
    raw = b'["stock,id",[' + value + b'],"' + ID.encode() + b'"]'
    text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(QueryError) as info:
        build_query(SCHEMA, {**args("sort=stock"), "after": text})
    assert info.value.parameter == "after"


class Invoice(BaseModel):
    amount: decimal.Decimal
    due: datetime.time | None = None


def test_decimals_are_matched_but_not_ordered():
    """Decimals are stored as text, where "10" < "9.5": ranges and sorts are refused, not wrong."""
    schema = inspect_model(Invoice)
    assert build_query(schema, parse_arguments(schema, qs("amount=10.5"))).conditions == (
        Condition("amount", "eq", "10.5"),)
    for text, parameter in (("amount__gt=9", "amount__gt"), ("sort=amount", "sort"), ("amount__lte=1", "amount__lte")):
        with pytest.raises(QueryError) as info:
            build_query(schema, parse_arguments(schema, qs(text)))
        assert info.value.parameter == parameter


def test_times_are_ordered_in_canonical_form():
    schema = inspect_model(Invoice)
    q = build_query(schema, parse_arguments(schema, qs("due__gt=08:00&sort=due")))
    assert q.conditions == (Condition("due", "gt", "08:00:00.000000"),)


# -- helpers used by the stores and the handlers -----------------------------------------------


def test_get_path():
    doc = {"a": {"b": {"c": 1}}, "x": None}
    assert get_path(doc, "a.b.c") == 1
    assert get_path(doc, "a.b") == {"c": 1}
    assert get_path(doc, "a.z") is None
    assert get_path(doc, "a.b.c.d", "missing") == "missing"
    assert get_path(doc, "x") is None


def test_sort_values_follow_the_order_without_the_id():
    q = query("sort=-price,address.city")
    doc = {"id": ID, "price": 3.0, "address": {"city": "Lyon"}}
    assert sort_values(q, doc) == (3.0, "Lyon")
    assert sort_values(query(""), doc) == ()


def test_project_keeps_the_id_and_nested_paths():
    doc = {"id": ID, "name": "Pen", "price": 1.0, "address": {"city": "Paris", "zip": None}}
    assert project(doc, None) is doc
    assert project(doc, ("name",)) == {"id": ID, "name": "Pen"}
    assert project(doc, ()) == {"id": ID}
    assert project(doc, ("address.city", "price")) == {"id": ID, "address": {"city": "Paris"}, "price": 1.0}
    assert project(doc, ("address.zip",)) == {"id": ID, "address": {"zip": None}}
    assert project({"id": ID}, ("address.city",)) == {"id": ID}
