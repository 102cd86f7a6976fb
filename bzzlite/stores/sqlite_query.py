"""The SQLite store's query compiler: the query language's conditions, sorts and keyset cursors
as SQL over each table's ``doc`` column, with bound parameters. Pure functions, no I/O.

Paths are model field names (checked against the model, never client text) and operators come
from the query language's allowlist: client values only ever travel as bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..query import Condition, Query


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def json_expr(path: str) -> str:
    """The SQL for a field path: its column ``"$.path"`` (paths are model field names, never client text).

    Paths that are unique or indexed are plain columns the store fills on every write, so
    their indexes cover queries (a filtered ``count(*)`` reads the index alone; SQLite 3.40
    never treats an index on an expression or a generated column as covering). Every other
    path is a VIRTUAL generated column over ``json_extract``: no storage, computed where named.
    """
    if path == "id":
        return "id"
    return quote(f"$.{path}")


def _predicate(expr: str, op: str, value: Any) -> tuple[str, list[Any]]:
    """SQL for ``expr op value`` with MongoDB's null semantics (missing == null)."""
    if op == "eq":
        return (f"{expr} IS NULL", []) if value is None else (f"{expr} = ?", [value])
    if op == "ne":
        return (f"{expr} IS NOT NULL", []) if value is None else (f"({expr} IS NULL OR {expr} != ?)", [value])
    if op in ("gt", "gte", "lt", "lte"):
        if value is None:
            return "0", []
        return f"{expr} {_CMP[op]} ?", [value]
    if op == "exists":
        return (f"{expr} IS NOT NULL" if value else f"{expr} IS NULL"), []
    if op in ("in", "nin"):
        present = [v for v in value if v is not None]
        has_null = len(present) < len(value)
        marks = ", ".join("?" * len(present))
        if op == "in":
            parts = ([f"{expr} IN ({marks})"] if present else []) + ([f"{expr} IS NULL"] if has_null else [])
            return ("(" + " OR ".join(parts) + ")") if parts else "0", present
        if has_null:
            return (f"({expr} IS NOT NULL AND {expr} NOT IN ({marks}))" if present else f"{expr} IS NOT NULL"), present
        return (f"({expr} IS NULL OR {expr} NOT IN ({marks}))" if present else "1"), present
    if value is None:
        return "0", []
    if op == "contains":
        return f"instr({expr}, ?) > 0", [value]
    if op == "startswith":
        return f"substr({expr}, 1, ?) = ?", [len(value), value]
    raise ValueError(op)  # unreachable: operators are validated by the query parser


_CMP = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def compile_conditions(conditions: Sequence[Condition]) -> tuple[list[str], list[Any]]:
    """WHERE clauses (ANDed) and their bound parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        if "[]" in cond.path:  # through lists of embedded models (reference integrity)
            sql, args = _through_lists(cond)
            clauses.append(sql)
            params.extend(args)
            continue
        expr = json_expr(cond.path)
        if cond.is_list and cond.op not in ("exists",):
            member_op = {"ne": "eq", "nin": "in"}.get(cond.op, cond.op)
            sql, args = _predicate("value", member_op, cond.value)
            any_member = f"EXISTS (SELECT 1 FROM json_each(doc, '$.{cond.path}') WHERE {sql})"
            clauses.append(f"NOT {any_member}" if cond.op in ("ne", "nin") else any_member)
        else:
            sql, args = _predicate(expr, cond.op, cond.value)
            clauses.append(sql)
        params.extend(args)
    return clauses, params


def _through_lists(cond: Condition) -> tuple[str, list[Any]]:
    """``lines[].product = ?``: some element of ``lines`` has that ``product`` (equality only;
    the path comes from the model's reference fields, never from a client)."""
    if cond.op != "eq":
        raise ValueError(f"{cond.path}: only equality reaches through lists")
    *lists, leaf = cond.path.split("[].")
    source, depth = "doc", 0
    opening = []
    for part in lists:
        opening.append(f"EXISTS (SELECT 1 FROM json_each({source}, '$.{part}') AS j{depth} WHERE ")
        source, depth = f"j{depth}.value", depth + 1
    if cond.is_list:
        test = f"EXISTS (SELECT 1 FROM json_each({source}, '$.{leaf}') AS j{depth} WHERE j{depth}.value = ?)"
    else:
        test = f"json_extract({source}, '$.{leaf}') = ?"
    return "".join(opening) + test + ")" * len(opening), [cond.value]


def pinned_values(conditions: Sequence[Condition]) -> dict[str, Any]:
    """Paths an equality filter pins to one value in every matching row."""
    return {c.path: c.value for c in conditions if c.op == "eq" and not c.is_list}


def order_by(query: Query, constants: dict[str, Any], pinned: frozenset[str]) -> str:
    """ORDER BY without the keys pinned to one value: they add nothing to the order, but
    SQLite would sort for them rather than walk an index."""
    keys = [k for k in query.order if k.path not in constants and k.path not in pinned]
    if not keys:
        return ""
    return " ORDER BY " + ", ".join(json_expr(k.path) + (" DESC" if k.descending else "") for k in keys)


def keyset_parts(query: Query, constants: dict[str, Any]) -> list[tuple[str, list[Any], frozenset[str]]]:
    """WHERE clauses for the rows after the cursor, to run in turn until the page is full,
    each with the paths it pins to a single value (left out of its ORDER BY).

    The exact condition (:func:`_keyset`) is an OR that SQLite cannot walk an index with, so
    each part pairs it with a range on the first key not pinned, which it can: page 10,000
    then costs what page 1 costs. Nulls sort first ascending and last descending, outside
    such a range, so they get parts of their own.
    """
    assert query.after is not None
    exact, exact_params = _keyset(query)
    keys = query.order
    values = (*query.after.values, query.after.id)

    def walk(start: int, hint: list[str], params: list[Any], pinned: frozenset[str]) -> list[Any]:
        for i in range(start, len(keys)):
            key, value = keys[i], values[i]
            expr = json_expr(key.path)
            if key.path in constants:
                if constants[key.path] == value:
                    continue
                break  # a cursor made under another filter: no range to rely on
            if value is None:
                if key.descending:  # only the rest of the null block is left
                    hint, pinned = [*hint, f"{expr} IS NULL"], pinned | {key.path}
                    continue
                # ascending: the rest of the null block, then every non-null value
                rest = walk(i + 1, [*hint, f"{expr} IS NULL"], params, pinned | {key.path})
                # "> -Inf" is "IS NOT NULL" in SQLite's order (numbers, then text), as a range
                return [*rest, ([*hint, f"{expr} > -9e999"], params, pinned, False)]
            parts = [([*hint, f"{expr} {'<=' if key.descending else '>='} ?"], [*params, value], pinned, True)]
            if key.descending and key.path != "id":
                parts.append(([*hint, f"{expr} IS NULL"], params, pinned | {key.path}, False))
            return parts
        return [(hint, params, pinned, True)]

    return [
        (" AND ".join([*hint, exact] if needs_exact else hint), [*params, *(exact_params if needs_exact else ())], pinned)
        for hint, params, pinned, needs_exact in walk(0, [], [], frozenset())
    ]


def _keyset(query: Query) -> tuple[str, list[Any]]:
    """Rows strictly after the cursor in the query's order (NULLs first ascending, last descending)."""
    assert query.after is not None
    keys = query.order
    values = (*query.after.values, query.after.id)
    ors: list[str] = []
    params: list[Any] = []
    for i, key in enumerate(keys):
        parts: list[str] = []
        for j in range(i):
            parts.append(f"+{json_expr(keys[j].path)} IS ?")  # "+": not for the planner to pick an index by
            params.append(values[j])
        expr, value = "+" + json_expr(key.path), values[i]
        if value is None:
            parts.append("0" if key.descending else f"{expr} IS NOT NULL")
        elif key.descending:
            parts.append(f"({expr} < ? OR {expr} IS NULL)")
            params.append(value)
        else:
            parts.append(f"{expr} > ?")
            params.append(value)
        ors.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(ors) + ")", params


__all__ = ["compile_conditions", "json_expr", "keyset_parts", "order_by", "pinned_values", "quote"]
