"""The parameters of resource operations: the ``{id}`` of item URLs, and the paging, sort,
projection and filter parameters of list operations (with their Markdown table of filters)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .schemas import ID, Portable

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..models.schema import FieldPath

_EQUALITY = ("ne", "in", "nin", "exists")
_ORDERING = ("gt", "gte", "lt", "lte")
_TEXT = ("contains", "startswith")


def item_parameter(spec: ResourceSpec) -> dict[str, Any]:
    """The ``{id}`` of item URLs: the id, or the value of the resource's lookup field."""
    if spec.lookup is None:
        return {"name": "id", "in": "path", "required": True, "schema": ID}
    schema = _inline(spec.schema.paths[spec.lookup].adapter.json_schema(schema_generator=Portable))
    return {"name": "id", "in": "path", "required": True, "schema": schema,
            "description": f"The document's `{spec.lookup}` (the resource's lookup field), percent-encoded."}


def list_parameters(spec: ResourceSpec) -> Iterator[dict[str, Any]]:
    """page, per_page, sort, fields, after, then one parameter per field and operator.

    Only the fields of the resource's ``filterable=`` / ``sortable=`` allowlists appear.
    """
    hidden = spec.schema.write_only  # never filtered, sorted or projected on
    paths = {p: f for p, f in spec.schema.paths.items() if p.partition(".")[0] not in hidden}
    sortable = ["id", *[p for p, f in paths.items() if f.orderable and (spec.sortable is None or p in spec.sortable)]]
    projectable = list(dict.fromkeys(["id", *[n for n in spec.schema.top_level if n not in hidden], *paths]))
    page: dict[str, Any] = {"name": "page", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1, "default": 1}}
    if spec.max_offset is not None:
        page["description"] = (f"`page` × `per_page` is at most {spec.max_offset}; "
                               "read further with `after` cursors.")
    yield page
    yield {"name": "per_page", "in": "query", "description": f"Capped at {spec.max_per_page}.",
           "schema": {"type": "integer", "minimum": 1, "default": spec.per_page}}
    yield {"name": "sort", "in": "query",
           "description": "Sort keys, `-` for descending; each field once. Repeat the key "
           "(`?sort=-price&sort=name`) or separate with commas (`?sort=-price,name`).",
           "schema": {"type": "array", "uniqueItems": True,
                      "items": {"enum": [*sortable, *[f"-{p}" for p in sortable]]}}}
    yield {"name": "fields", "in": "query",
           "description": "Only these fields in each item (`id` is always included). Repeat the key "
           "or separate with commas.",
           "schema": {"type": "array", "items": {"enum": projectable}}}
    yield {"name": "after", "in": "query", "schema": {"type": "string"},
           "description": "A cursor from a `next` link: keyset paging, no total (instead of `page`)."}
    yield from _filter_parameters("id", None)
    for path, field in paths.items():
        if spec.filterable is None or path in spec.filterable:
            yield from _filter_parameters(path, field)


def _filter_parameters(path: str, field: FieldPath | None) -> Iterator[dict[str, Any]]:
    value: dict[str, Any]
    ops: tuple[str, ...]
    if field is None:  # the id
        value, ops = ID, (*_EQUALITY[:3], *_ORDERING)
    else:
        value = _inline(field.adapter.json_schema(schema_generator=Portable))
        if field.nullable:
            value = {"anyOf": [value, {"const": "null"}]}
        ops = _EQUALITY + (_ORDERING if field.orderable else ()) + (_TEXT if field.is_text else ())
    member = " (matches any member of the list)" if field is not None and field.is_list else ""
    null = "; `null` matches a missing or null value" if field is not None and field.nullable else ""
    yield {"name": path, "in": "query", "description": f"`{path}` equals{member}{null}.", "schema": value}
    for op in ops:
        parameter: dict[str, Any] = {"name": f"{path}__{op}", "in": "query"}
        if op in ("in", "nin"):
            parameter.update(schema={"type": "array", "items": value},
                             description=f"`{path}` is {'not ' if op == 'nin' else ''}one of these: repeat the key "
                             "or separate with commas.")
        elif op == "exists":
            parameter.update(schema={"type": "boolean"}, description=f"`{path}` is present and not null (or not).")
        elif op in _TEXT:
            parameter.update(schema={"type": "string"}, description=f"`{path}` {op} this text (case-sensitive).")
        else:
            parameter.update(schema=value, description=f"`{path}` {_OP_TEXT[op]} this value.")
        yield parameter


def filter_table(spec: ResourceSpec) -> str:
    """The filters of a list operation as a Markdown table: one row per field, its operators."""
    rows = ["| field | operators |", "|---|---|", "| `id` | `=` " + " ".join(
        f"`__{op}`" for op in (*_EQUALITY[:3], *_ORDERING)) + " |"]
    for path, field in spec.schema.paths.items():
        ops = _EQUALITY + (_ORDERING if field.orderable else ()) + (_TEXT if field.is_text else ())
        rows.append(f"| `{path}` | `=` " + " ".join(f"`__{op}`" for op in ops) + " |")
    return "**Filters** (each also a query parameter below):\n\n" + "\n".join(rows)


_OP_TEXT = {"ne": "is not (also matches missing/null)", "gt": "is greater than", "gte": "is at least",
            "lt": "is less than", "lte": "is at most"}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A scalar's schema with its ``$defs`` (enums) inlined: parameters carry no definitions."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/") and ref[8:] in defs:
                return resolve(copy.deepcopy(defs[ref[8:]]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]
