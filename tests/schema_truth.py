"""Does the served OpenAPI document tell the truth about each field type?

One resource per field type, each with a single required field ``v``. For every type, JSON
values are sent in a body ``{"v": value}``: values from a fixed corpus of tricky inputs, and
values that schemathesis generates from the document's own schema. The
document and the server must agree:

- a value the document allows is accepted (201);
- a value the document forbids is refused with a 4xx, except for the documented leniencies
  below, which the server accepts on purpose (as FastAPI does): they are asserted accepted,
  so the list stays true.

This module is imported by ``tests/test_openapi_truth.py`` and also run on its own, under the
lowest pydantic release that ``pyproject.toml`` admits, by the same test file.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AwareDatetime, BaseModel, Field, NaiveDatetime

from bzzlite import App, Ref, Registry
from bzzlite.openapi.schemas import DECIMAL_TEXT, NAIVE_DATETIME


class Color(str, enum.Enum):
    red = "red"
    green = "green"


class Level(enum.IntEnum):
    low = 1
    high = 2


class Address(BaseModel):
    city: str
    zip: str | None = None


class Target(BaseModel):
    name: str = "x"


#: name -> the annotation of the field ``v``
FIELD_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "decimal": decimal.Decimal,
    "decimal_constrained": Annotated[decimal.Decimal, Field(max_digits=5, decimal_places=2, ge=0)],
    "datetime": datetime.datetime,
    "datetime_aware": AwareDatetime,
    "datetime_naive": NaiveDatetime,
    "date": datetime.date,
    "time": datetime.time,
    "uuid": uuid.UUID,
    "bytes": bytes,
    "enum_str": Color,
    "enum_int": Level,
    "literal": Literal["a", "b", 3],
    "int_bounded": Annotated[int, Field(ge=0, le=100)],
    "float_bounded": Annotated[float, Field(gt=0, lt=1)],
    "str_constrained": Annotated[str, Field(min_length=2, max_length=5, pattern=r"^[a-z]+$")],
    "optional_int": int | None,
    "union_int_str": int | str,
    "list_int": list[int],
    "list_model": list[Address],
    "model": Address,
    "dict_str_int": dict[str, int],
    "ref": Annotated[str, Ref(Target)],
}

_UUID = "6f1c0e9e-3c1b-4b7a-9f0e-2a5d1c3b4e5f"
CORPUS: list[Any] = [
    # strings
    "", " ", "abc", "ab", "0", "1", "-1", "1.5", "+1.5", ".5", "5.", "1e5", "1E-3", "-0", "007", "1.234",
    "123.45", "1234.5", "NaN", "nan", "Infinity", "-Infinity", "inf", "1_000", " 1", "1 ", "0x10", "1,5",
    "\uff11", "\u00b2", "2026-01-01", "2026-13-01", "2026-02-30", "2026-01-01T00:00:00", "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+01:00", "2026-01-01T10:20:30.123456Z", "2026-01-01 00:00:00", "12:00", "12:00:00",
    "12:00:00Z", "12:00:00+01:00", "25:00:00", "P1D", _UUID, _UUID.replace("-", ""), "{" + _UUID + "}",
    "aGVsbG8=", "A" * 300, "ab\u0000c", "red", "green", "blue", "a", "b", "3", "a" * 24, "0" * 24,
    "0123456789abcdef01234567", "g" * 24, "true", "false", "null",
    # numbers
    0, 1, -1, 2, 3, 50, 100, 101, 1.5, 0.5, 0.1, -0.5, 1.0, 5.0, 1e300, -1e300, 2**53, 2**63 - 1, 2**63,
    -(2**63), -(2**63) - 1, 2**64, 1700000000,
    # the rest
    True, False, None, [], [1], [1, 2], ["a"], [True], [1.5], {}, {"x": 1}, {"a": 1, "b": 2}, {"a": "1"},
    {"city": "Paris"}, {"city": "Paris", "zip": None}, {"city": 1}, {"town": "Paris"}, [{"city": "Paris"}],
    [{"city": "Paris", "extra": 1}], [None],
]

#: What the server accepts although the document forbids it, on purpose: pydantic's lax
#: coercions across JSON types (a number as a string, a string as a number, 0/1 as booleans,
#: numbers as Unix times, an integral float as an integer, ...), which generated clients never
#: send. Each entry: type name -> a predicate on the value; every value it matches that the
#: document forbids must be *accepted* (so this list is checked, not trusted).
def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def schema_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a (resolved) schema allows at its top level."""
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(schema_types(s) for s in schema.get("anyOf", schema.get("oneOf", []))))
    if "enum" in schema:
        return {_json_type(v) for v in schema["enum"]}
    if "const" in schema:
        return {_json_type(schema["const"])}
    kind = schema.get("type")
    if kind is None:
        return {"string", "number", "boolean", "null", "array", "object"}
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return {"number" if k == "integer" else k for k in kinds}


#: Strings the server reads in a format's place although the format's RFC forbids them:
#: pydantic's lax parsing of times and ids (Unix times as text, a date for a datetime, no
#: offset, ``T`` or a space, a UUID without dashes). Generated clients write the RFC forms.
_NUMERIC = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)"
_LAX_FORMATS = {
    "date-time": re.compile(rf"{_NUMERIC}|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([Tt ][0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}"
                            r"(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?"),
    "date": re.compile(rf"{_NUMERIC}|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([Tt ]00:00(:00(\.0+)?)?([Zz]|[+-][0-9]{{2}}:?[0-9]{{2}})?)?"),
    "time": re.compile(r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?"),
    "uuid": re.compile(r"\{?[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}\}?"),
}


#: decimals as pydantic also reads them: spaces around, ``_`` between digits, any Unicode digit
_LAX_DECIMAL = re.compile(r"\s*[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?\s*")


def _formats(schema: dict[str, Any]) -> set[str]:
    found = {schema["format"]} if "format" in schema else set()
    for option in schema.get("anyOf", ()):
        found |= _formats(option)
    return found


def lenient(name: str, schema: dict[str, Any], value: Any) -> bool:
    """Whether the server may accept ``value`` although the document forbids it."""
    if _json_type(value) not in schema_types(schema):
        return True  # a cross-type coercion ("5" for 5, 1 for true, a Unix time for a date)
    if isinstance(value, float) and value.is_integer() and "number" in schema_types(schema):
        return True  # 5.0 for an integer: the same number in JSON
    if isinstance(value, str):
        if any(_LAX_FORMATS[f].fullmatch(value) for f in _formats(schema) if f in _LAX_FORMATS):
            return True
        patterns = {o.get("pattern") for o in [schema, *schema.get("anyOf", ())]}
        if NAIVE_DATETIME in patterns:  # a date alone; the one day a year the pattern leaves out
            return bool(_LAX_FORMATS["date-time"].fullmatch(value))
        return DECIMAL_TEXT in patterns and bool(_LAX_DECIMAL.fullmatch(value))
    if isinstance(value, list) and "items" in schema:
        return any(lenient(name, schema["items"], item) for item in value)
    if isinstance(value, dict) and "properties" in schema:
        return any(k in schema["properties"] and lenient(name, schema["properties"][k], v) for k, v in value.items())
    if isinstance(value, dict):
        values = [*schema.get("patternProperties", {}).values(), schema.get("additionalProperties")]
        return any(lenient(name, inner, v) for v in value.values() for inner in values if isinstance(inner, dict))
    return False


def build_app() -> App:
    registry = Registry()
    registry.resource(name="target")(Target)
    for name, annotation in FIELD_TYPES.items():
        model = type(f"T_{name}", (BaseModel,), {"__annotations__": {"v": annotation}, "__module__": __name__})
        registry.resource(name=f"t_{name}")(model)
    return App(registry, db="sqlite:///:memory:", feeds=False)


def _resolve(schema: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """The schema with every ``$ref`` to a component replaced by the component itself."""
    if depth > 20:
        return schema
    if isinstance(schema, dict):
        if "$ref" in schema and len(schema) == 1:
            return _resolve(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
        return {k: _resolve(v, components, depth + 1) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, components, depth + 1) for v in schema]
    return schema


def request_schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The JSON request body schema of POST /t_{name}, every reference resolved."""
    operation = document["paths"][f"/t_{name}"]["post"]
    content = operation["requestBody"]["content"]["application/json"]["schema"]
    schema = _resolve(content, document["components"]["schemas"])
    if "anyOf" in schema or "oneOf" in schema:  # one document or an array of them (bulk)
        schema = next(s for s in schema.get("anyOf", schema.get("oneOf", [])) if s.get("type") == "object")
    return copy.deepcopy(schema)


def generated(document: dict[str, Any], name: str, count: int) -> list[Any]:
    """Values of ``v`` that schemathesis generates from the document for POST /t_{name}."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    operation = schemathesis.openapi.from_dict(document)[f"/t_{name}"]["POST"]
    found: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def collect(case: Any) -> None:
        if case.media_type == "application/json":
            bodies = case.body if isinstance(case.body, list) else [case.body]
            found.extend(body["v"] for body in bodies if isinstance(body, dict) and "v" in body)

    collect()
    return found


def disagreements(post: Callable[[dict[str, Any]], int], document: dict[str, Any], name: str,
                  examples: int = 40) -> Iterator[str]:
    """Every value on which the document and the server disagree, as readable lines."""
    # numbers as Decimals, in the schema and in the values, so that multipleOf 0.01 is exact
    exact = json.loads(json.dumps(document), parse_float=decimal.Decimal)
    body_schema = request_schema(exact, name)
    field_schema = body_schema["properties"]["v"]
    validator = jsonschema.Draft202012Validator(body_schema, format_checker=jsonschema.FormatChecker())
    values = [*CORPUS, *generated(document, name, examples)]
    seen: set[str] = set()
    for value in values:
        key = json.dumps(value, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        allowed = validator.is_valid(json.loads(json.dumps({"v": value}), parse_float=decimal.Decimal))
        status = post({"v": value})
        if status >= 500:
            yield f"{name}: {key} -> {status}"
        elif allowed and status != 201:
            yield f"{name}: the document allows {key} but the server answered {status}"
        elif not allowed and status == 201 and not lenient(name, field_schema, value):
            yield f"{name}: the document forbids {key} but the server accepted it"
        elif not allowed and status not in (201, 400, 422):
            yield f"{name}: {key} refused with {status}, not 422"


def post(client: Any, path: str, body: Any) -> int:
    """POST ``body`` encoded by the standard library (which writes any integer, as a client may).

    A 422 that says only that a referenced document does not exist counts as accepted: the
    value had the form the document describes, and existence is data, not a schema property.
    """
    response = client.post(path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    if response.code == 422 and {e["type"] for e in response.json().get("errors") or [{}]} == {"reference_missing"}:
        return 201
    return int(response.code)


def main() -> int:
    """Check every type against a live server; print disagreements (used under other pydantics)."""
    import pydantic

    from bzzlite.testing import serve

    logging.getLogger("tornado.access").setLevel(logging.ERROR)
    app = build_app()
    with serve(app) as client:
        document = client.get("/openapi.json").json()
        problems: list[str] = []
        for name in FIELD_TYPES:
            problems += disagreements(lambda body, name=name: post(client, f"/t_{name}", body), document, name)
    print(f"pydantic {pydantic.VERSION}: {len(FIELD_TYPES)} field types, {len(problems)} disagreements")
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
