"""bzzlite's own query language, parsed once against the model's fields.

A collection's query string becomes the ``arguments`` dict that ``pre_get_list``
receivers see and may change (plain Python values), and then, validated again, a
store-independent :class:`Query` that each store compiles with bound parameters.
Nothing the client sends reaches a database as an operator: operators come from
:data:`OPERATORS` and field names from the model.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from .errors import QueryError
from .models.ids import is_valid_id
from .models.schema import FieldPath, ModelSchema

OPERATORS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "startswith", "exists"})
_ORDERING = frozenset({"gt", "gte", "lt", "lte"})
_TEXT = frozenset({"contains", "startswith"})
_MULTI = frozenset({"in", "nin"})
CONTROL = ("page", "per_page", "sort", "fields", "after")
_MISSING = object()
# A client's query is bounded so that no store hits its own limits (SQLite refuses an expression
# tree deeper than 1,000) and answers "unavailable" to what is a client mistake: see docs/queries.md.
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 1000
_MAX_PAGE = 2**53 - 1  # any page beyond is past the end of every collection; keeps offsets in 64 bits


class All(tuple):  # type: ignore[type-arg]
    """The value of a filter given more than once: every condition must hold."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"All({tuple.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Condition:
    """One filter: ``path op value``, the value in JSON mode (a list for in/nin)."""

    path: str
    op: str
    value: Any
    is_list: bool = False  # the field holds a list: equality matches a member


@dataclass(frozen=True, slots=True)
class SortKey:
    path: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a keyset page starts: the sort values and id of the last item seen."""

    values: tuple[Any, ...]
    id: str


@dataclass(frozen=True, slots=True)
class Query:
    """A validated, store-independent list query."""

    conditions: tuple[Condition, ...] = ()
    sort: tuple[SortKey, ...] = ()
    fields: tuple[str, ...] | None = None
    page: int = 1
    per_page: int = 20
    keyset: bool = False  # ``after`` given: no counting, no skipping
    after: Cursor | None = None

    @property
    def order(self) -> tuple[SortKey, ...]:
        """The sort keys with the ``id`` tie-break that makes the order stable.

        The id goes the way of the last key, so one index on a field serves both ``sort=f``
        and ``sort=-f`` (walked backwards) without sorting the ties.
        """
        if self.sort and self.sort[-1].path == "id":
            return self.sort
        return (*self.sort, SortKey("id", self.sort[-1].descending if self.sort else False))

    @property
    def offset(self) -> int:
        return 0 if self.keyset else (self.page - 1) * self.per_page


ID_PATH = "id"


def _field(schema: ModelSchema, path: str, parameter: str) -> FieldPath | None:
    if path == ID_PATH:
        return None
    found = schema.paths.get(path)
    if found is None or path.partition(".")[0] in schema.write_only:  # a hidden field is no field
        raise QueryError(parameter, f"unknown field {path!r}", "query_unknown_field")
    return found


def _split(parameter: str) -> tuple[str, str]:
    path, sep, op = parameter.rpartition("__")
    if not sep:
        return parameter, "eq"
    if op not in OPERATORS:
        raise QueryError(parameter, f"unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}",
                         "query_unknown_operator")
    return path, op


def _coerce(schema: ModelSchema, parameter: str, value: Any, *, from_string: bool) -> Any:
    """Coerce one filter value (a list for in/nin, a bool for exists) for ``parameter``."""
    path, op = _split(parameter)
    field = _field(schema, path, parameter)
    if op == "exists":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise QueryError(parameter, "__exists takes true or false", "query_value")
    if field is not None:
        if op in _ORDERING and not field.orderable:
            raise QueryError(parameter, f"{path!r} cannot be compared with __{op}", "query_operator")
        if op in _TEXT and not field.is_text:
            raise QueryError(parameter, f"__{op} applies to text fields; {path!r} is not one", "query_operator")
    if op in _MULTI:
        if from_string:
            items: list[Any] = value.split(",") if value != "" else []
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        else:
            raise QueryError(parameter, f"__{op} takes a list of values", "query_value")
        return [_coerce_one(field, parameter, item, from_string) for item in items]
    return _coerce_one(field, parameter, value, from_string)


def _coerce_one(field: FieldPath | None, parameter: str, value: Any, from_string: bool) -> Any:
    if field is None:  # the id
        if not is_valid_id(value):
            raise QueryError(parameter, "an id is 24 hexadecimal characters", "query_value")
        return value
    try:
        coerced = field.coerce(value, from_string=from_string)
        unportable = _unportable(coerced)
        if unportable is None:
            return coerced
        msg = unportable
    except ValidationError as exc:
        msg = exc.errors(include_url=False)[0]["msg"]
    except (ValueError, TypeError) as exc:
        msg = str(exc) or "invalid value"
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
    raise QueryError(parameter, f"{shown!r} is not a valid value for {field.path!r} ({msg})", "query_value")


def _unportable(value: Any) -> str | None:
    """Why no store can hold or compare this number (NaN, infinities, beyond 64 bits), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return "an integer beyond 64 bits"
    return None


def _names(value: str) -> list[str]:
    """``"-price, name"`` → ``["-price", "name"]`` (a ``+`` in a query string is a space)."""
    return [name for name in (part.strip() for part in value.split(",")) if name]


def _single(parameter: str, values: list[str]) -> str:
    if len(values) != 1:
        raise QueryError(parameter, "give this parameter once", "query_repeated")
    return values[0]


def _positive_int(parameter: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QueryError(parameter, f"{str(value)[:40]!r} is not an integer", "query_value") from None
    if isinstance(value, float) or isinstance(value, bool):
        raise QueryError(parameter, "must be an integer", "query_value")
    if number < 1:
        raise QueryError(parameter, "must be 1 or more", "query_value")
    return number if parameter == "per_page" else _at_most(parameter, number)


def _at_most(parameter: str, number: int) -> int:
    if number > _MAX_PAGE:
        raise QueryError(parameter, f"must be at most {_MAX_PAGE}", "query_value")
    return number


def parse_arguments(
    schema: ModelSchema,
    query: Mapping[str, list[str]],
    *,
    per_page: int = 20,
    filterable: frozenset[str] | None = None,
    sortable: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The ``arguments`` of ``pre_get_list`` from a decoded query string.

    ``filterable`` and ``sortable`` are the resource's allowlists (None: every field); they
    bound what the client may ask, not what ``pre_get_list`` receivers add afterwards.

    Returns ``{"filters": {...}, "sort": [...], "fields": [...] | None, "page": int,
    "per_page": int, "after": str | None}``; filter values are already coerced.
    Raises:
        QueryError: unknown field or operator, a field outside an allowlist, a value that
            does not coerce.
    """
    filters: dict[str, Any] = {}
    count = 0
    for parameter, values in query.items():
        if parameter in CONTROL:
            continue
        count += len(values)
        if count > MAX_CONDITIONS:
            raise QueryError(parameter, f"a query holds at most {MAX_CONDITIONS} filter conditions; "
                             "combine equalities on one field with __in", "query_too_many")
        if filterable is not None:
            _allowed(schema, parameter, _split(parameter)[0], filterable, "filtered")
        coerced = [_coerce(schema, parameter, v, from_string=True) for v in values]
        if parameter.endswith(("__in", "__nin")) and sum(map(len, coerced)) > MAX_LIST_VALUES:
            raise QueryError(parameter, f"__in and __nin take at most {MAX_LIST_VALUES} values", "query_too_many")
        if _split(parameter)[1] in _MULTI:  # repeated keys add to the list (what generated clients send)
            filters[parameter] = [item for items in coerced for item in items]
        else:  # a repeated scalar filter: every condition holds
            filters[parameter] = coerced[0] if len(coerced) == 1 else All(coerced)
    sort = query.get("sort")
    fields = query.get("fields")
    after = query.get("after")
    sort_names = _names(",".join(sort)) if sort else []  # sort=a&sort=-b is sort=a,-b
    if sortable is not None:
        for name in sort_names:
            _allowed(schema, "sort", name.lstrip("-+"), sortable, "sorted")
    return {
        "filters": filters,
        "sort": sort_names,
        "fields": _names(",".join(fields)) if fields else None,
        "page": _positive_int("page", _single("page", query["page"])) if "page" in query else 1,
        "per_page": _positive_int("per_page", _single("per_page", query["per_page"])) if "per_page" in query else per_page,
        "after": _single("after", after) if after is not None else None,
    }


def _allowed(schema: ModelSchema, parameter: str, path: str, allowed: frozenset[str], verb: str) -> None:
    """Refuse a field outside a resource's allowlist (the id is always allowed: its index is the key)."""
    if path == ID_PATH or path in allowed:
        return
    _field(schema, path, parameter)  # an unknown field is named as such
    names = ", ".join(sorted({ID_PATH, *allowed}))
    raise QueryError(parameter, f"{path!r} cannot be {verb} on here; the fields that can: {names}",
                     f"query_not_{verb.replace('ed', 'able')}")


def build_query(
    schema: ModelSchema, arguments: Mapping[str, Any], *, max_per_page: int = 100, max_offset: int | None = None
) -> Query:
    """Validate (again) the possibly receiver-edited ``arguments`` into a :class:`Query`.

    ``max_offset`` caps ``page × per_page``: SQLite and MongoDB both walk every skipped
    document, so a deep page costs in proportion to its depth, where a cursor does not.
    """
    filters = arguments.get("filters") or {}
    if not isinstance(filters, Mapping):
        raise QueryError("filters", "filters must be a dict")
    conditions: list[Condition] = []
    for parameter, raw in filters.items():
        if not isinstance(parameter, str):
            raise QueryError(str(parameter), "filter names are strings")
        path, op = _split(parameter)
        field = _field(schema, path, parameter)
        for value in raw if isinstance(raw, All) else (raw,):
            coerced = _coerce(schema, parameter, value, from_string=False)
            conditions.append(Condition(path, op, coerced, bool(field and field.is_list)))

    sort: list[SortKey] = []
    for item in arguments.get("sort") or ():
        name = str(item)
        descending = name.startswith("-")
        path = name.lstrip("-+")
        field = _field(schema, path, "sort")
        if field is not None and not field.orderable:
            raise QueryError("sort", f"{path!r} cannot be sorted on", "query_value")
        if any(k.path == path for k in sort):
            raise QueryError("sort", f"{path!r} is named twice", "query_value")
        sort.append(SortKey(path, descending))

    fields = arguments.get("fields")
    if fields is not None:
        for name in fields:
            known = name in schema.paths or name in schema.top_level
            if name != ID_PATH and (not known or name.partition(".")[0] in schema.write_only):
                raise QueryError("fields", f"unknown field {name!r}", "query_unknown_field")
        fields = tuple(dict.fromkeys(fields))

    page = _positive_int("page", arguments.get("page", 1))
    per_page = min(_positive_int("per_page", arguments.get("per_page", 20)), max_per_page)
    after = arguments.get("after")
    if after is not None and page != 1:
        raise QueryError("after", "use either page or after, not both")
    if max_offset is not None and after is None and page * per_page > max_offset:
        raise QueryError("page", f"page × per_page may be at most {max_offset} here ({page} × {per_page} asked); "
                         "to read further, page with cursors: add after= (empty for the first page) and "
                         "follow each answer's Link rel=\"next\"", "query_page_too_deep")
    query = Query(tuple(conditions), tuple(sort), fields, page, per_page, after is not None, None)
    if after:
        cursor = decode_cursor(str(after), query)
        # Cursors come back from clients: their values must fit the sort fields like any filter.
        keys = query.order[:-1]  # the last is the id, kept apart in the cursor
        values = tuple(_cursor_value(schema, k.path, v) for k, v in zip(keys, cursor.values, strict=True))
        cursor = Cursor(values, cursor.id)
        query = Query(query.conditions, query.sort, fields, 1, per_page, True, cursor)
    return query


def _cursor_value(schema: ModelSchema, path: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, _Stored):
        return value.value
    try:
        return _coerce_one(_field(schema, path, "after"), "after", value, from_string=False)
    except QueryError:
        raise QueryError("after", "not a cursor from this collection's next link") from None


def _storable_scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and "\x00" not in value


class _Stored:
    """A cursor value as a document not migrated yet stores it, which the model's type may not fit
    (docs/changing-models.md): written ``{"stored": value}``, compared by the store as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _signature(query: Query) -> str:
    return ",".join(("-" if k.descending else "") + k.path for k in query.order)


def encode_cursor(query: Query, values: tuple[Any, ...], id_: str) -> str:
    """An opaque cursor pointing after the item with these sort values and id."""
    raw = orjson.dumps([_signature(query), list(values), id_])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, query: Query) -> Cursor:
    """Decode a cursor made by :func:`encode_cursor` for the same sort order."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        signature, values, id_ = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryError("after", "not a cursor from this collection's next link") from None
    if signature != _signature(query):
        raise QueryError("after", "the cursor was made for another sort order")
    if not isinstance(values, list) or len(values) != len(query.order) - 1 or not is_valid_id(id_):
        raise QueryError("after", "not a cursor from this collection's next link")
    values = [_Stored(v["stored"]) if isinstance(v, dict) and v.keys() == {"stored"} and _storable_scalar(v["stored"])
              else v for v in values]
    if any(isinstance(v, (dict, list)) for v in values):
        raise QueryError("after", "not a cursor from this collection's next link")
    return Cursor(tuple(values), id_)


def sort_values(query: Query, doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of a document for the query's sort keys (without the id): as stored, since the
    store compares those. A document fitted to a newer model keeps what was stored (``.stored``);
    a stored value the fitted one differs from is marked as such for :func:`encode_cursor`."""
    stored = getattr(doc, "stored", None)
    if stored is None:
        return tuple(get_path(doc, k.path) for k in query.order[:-1])
    values = []
    for key in query.order[:-1]:
        value, fitted = get_path(stored, key.path), get_path(doc, key.path)
        same = value == fitted and type(value) is type(fitted)
        values.append(value if same or value is None else {"stored": value})
    return tuple(values)


def get_path(doc: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """``doc["address"]["city"]`` for ``"address.city"``; ``default`` when missing."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def project(doc: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """Keep the named (possibly dotted) fields of a document, and always its id."""
    if fields is None:
        return doc
    out: dict[str, Any] = {"id": doc["id"]}
    for path in fields:
        value = get_path(doc, path, _MISSING)
        if value is _MISSING:
            continue
        target = out
        parts = path.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out
