"""Examples a person would write, for the OpenAPI document's request and response bodies.

A field's own examples come first (``Field(examples=[...])``, a model's
``json_schema_extra={"examples": [...]}``), then its default, then a plausible value by
its type and name (``email`` -> ``"ada@example.com"``, ``price`` -> ``9.99``). An example
the model does not accept is left out rather than shown wrong.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from pydantic import BaseModel

EXAMPLE_ID = "6650c3e1a2b4c5d6e7f80912"

_BY_NAME: dict[str, Any] = {
    "email": "ada@example.com", "mail": "ada@example.com", "name": "Ada Lovelace", "username": "ada",
    "owner": "ada", "user": "ada", "author": "Ada Lovelace", "title": "Buy milk", "label": "Groceries",
    "city": "Paris", "country": "France", "street": "12 rue de Rivoli", "zip": "75001", "postcode": "75001",
    "phone": "+33 1 23 45 67 89", "url": "https://example.com", "website": "https://example.com",
    "description": "A short description.", "note": "Deliver before noon.", "comment": "Looks good.",
    "body": "Hello!", "text": "Hello!", "sku": "SKU-1001", "code": "A1", "color": "blue", "colour": "blue",
    "tag": "sale", "tags": "sale", "status": "open", "category": "books", "currency": "EUR", "language": "en",
    "slug": "buy-milk", "message": "Hello!", "summary": "A short summary.",
}
_NUMBERS: dict[str, Any] = {
    "price": 9.99, "amount": 25.0, "cost": 4.5, "total": 42.0, "rate": 0.2, "ratio": 0.5, "weight": 1.2,
    "qty": 3, "quantity": 3, "count": 3, "stock": 12, "age": 36, "year": 2024, "rank": 1, "priority": 2,
    "score": 87, "size": 42, "sizes": 42, "lat": 48.8566, "latitude": 48.8566, "lon": 2.3522,
    "lng": 2.3522, "longitude": 2.3522,
}
_FORMATS = {
    "date": "2024-05-01", "date-time": "2024-05-01T09:30:00Z", "time": "09:30:00", "email": "ada@example.com",
    "uri": "https://example.com", "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "duration": "PT1H",
    "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
}


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name.lower()) if w]


def value(schema: dict[str, Any], name: str, defs: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for a field named ``name`` with this JSON schema."""
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if schema.get("default") is not None:
        return schema["default"]
    ref = schema.get("$ref", "")
    if ref:
        target = defs.get(ref.rsplit("/", 1)[-1], {})
        return value(target, name, defs, depth + 1) if depth < 5 else None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, ()) if o.get("type") != "null"]
        if options:
            return value(options[0], name, defs, depth + 1)
    kind = schema.get("type")
    words = _words(name) or [name]
    if kind == "object" or "properties" in schema:
        if "properties" not in schema:
            return {}
        if schema.get("examples"):
            return schema["examples"][0]
        required = set(schema.get("required", ()))
        return {key: value(prop, key, defs, depth + 1) for key, prop in schema["properties"].items()
                if key in required or depth < 3}
    if kind == "array":
        item = value(schema.get("items", {}), name.rstrip("s") or name, defs, depth + 1)
        return [item] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        guess = next((_NUMBERS[w] for w in reversed(words) if w in _NUMBERS), 1 if kind == "integer" else 1.5)
        number = int(guess) if kind == "integer" else float(guess)
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and number < low:
            number = low
        if high is not None and number > high:
            number = high
        return number
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        text = next((_BY_NAME[w] for w in reversed(words) if w in _BY_NAME), None)
        if text is None:
            text = f"{name.replace('_', ' ')} text" if name else "text"
        if "maxLength" in schema:
            text = text[: schema["maxLength"]]
        return text
    return None


def document(model: type[BaseModel], model_schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """An example body for ``model`` (no ``id``), or None when the model would not accept one."""
    given = model_schema.get("examples")
    if isinstance(given, list) and given and isinstance(given[0], dict):
        example = {k: v for k, v in given[0].items() if k != "id"}
    else:
        example = value({**model_schema, "examples": None}, "", defs)
        if not isinstance(example, dict):
            return None
        example.pop("id", None)
    try:
        model.model_validate(example)
    except (ValidationError, TypeError, ValueError):
        return None
    return example


def patch(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """A merge patch changing one field: an optional one where there is one."""
    fields = list(example)
    optional = [k for k in fields if k in model.model_fields and not model.model_fields[k].is_required()]
    key = (optional or fields)[0] if fields else None
    return {} if key is None else {key: example[key]}


def another(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any] | None:
    """A second body for a bulk create, its text fields told apart (unique ones would conflict)."""
    other = {k: (f"{v}{' ' if ' ' in v else '-'}2" if isinstance(v, str) else v) for k, v in example.items()}
    try:
        model.model_validate(other)
    except (ValidationError, TypeError, ValueError):
        return None
    return other
