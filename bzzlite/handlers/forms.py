"""Form-encoded fields as model data, with bzz's conventions for inner properties.

``child.first_name=Rodrigo`` fills the embedded model ``child`` (at any depth:
``child.address.city=Recife``), ``users[]=<id>`` gives a list (so does repeating a key,
or naming a list field), and plain keys mix with both. Values stay strings: the model
coerces them as it does any form value, so a bad one is a 422 whose ``loc`` is the
dotted field's path (``["child", "age"]``). Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, get_origin

from pydantic import BaseModel

from ..errors import ValidationFailed
from ..models.schema import is_model, unwrap

_LIST_ORIGINS = (list, set, frozenset, tuple)
MAX_DEPTH = 32  # deeper than any sane model; keeps a hostile key from nesting far


@dataclass(frozen=True, slots=True)
class _Field:
    is_list: bool
    nullable: bool
    model: type[BaseModel] | None  # the embedded model a dotted key walks into


@lru_cache(maxsize=512)
def _fields(model: type[BaseModel]) -> dict[str, _Field]:
    fields = {}
    for name, info in model.model_fields.items():
        tp, nullable, _ = unwrap(info.annotation)
        fields[name] = _Field(get_origin(tp) in _LIST_ORIGINS, nullable, tp if is_model(tp) else None)
    return fields


def form_data(fields: dict[str, list[str]], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Decoded form fields (``key -> values``) as data for ``model``.

    - ``a.b.c=v`` sets ``data["a"]["b"]["c"]``; ``key[]=v`` (repeatable) gives a list;
    - a repeated key, or any key naming a list field, gives a list (empty values dropped);
    - an empty value is None for an optional field;
    - without a model, only the key syntax applies.

    Raises:
        ValidationFailed: a malformed key, or one field given both a value and dotted keys.
    """
    data: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, values in fields.items():
        as_list = key.endswith("[]")
        path = (key[:-2] if as_list else key).split(".")
        if not all(path) or len(path) > MAX_DEPTH or any("[" in p or "]" in p for p in path):
            errors.append({"loc": [key], "msg": "Malformed form key: use name, name.inner or name[]",
                           "type": "form_key"})
            continue
        info = _lookup(model, path)
        if as_list or (info is not None and info.is_list):
            value: Any = [v for v in values if v != ""]
        elif len(values) > 1:
            value = list(values)
        elif values[0] == "" and info is not None and info.nullable:
            value = None
        else:
            value = values[0]
        error = _put(data, path, value)
        if error is not None:
            errors.append(error)
    if errors:
        raise ValidationFailed(errors)
    return data


def _lookup(model: type[BaseModel] | None, path: list[str]) -> _Field | None:
    """What the last name of ``path`` is in ``model`` (None: unknown, or past a non-model)."""
    info = None
    for name in path:
        if model is None:
            return None
        info = _fields(model).get(name)
        if info is None:
            return None
        model = info.model
    return info


def _put(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any] | None:
    """Set ``value`` at ``path`` in ``data``; an error entry when the path is taken otherwise."""
    target = data
    for depth, name in enumerate(path[:-1]):
        inner = target.setdefault(name, {})
        if not isinstance(inner, dict):
            return _conflict(path[: depth + 1])
        target = inner
    last = path[-1]
    if last in target:  # only a value set through dotted keys can be here: form keys are unique
        return _conflict(path)
    target[last] = value
    return None


def _conflict(loc: list[str]) -> dict[str, Any]:
    return {"loc": list(loc), "type": "form_key",
            "msg": "Given twice (as name=..., name[]=... or name.inner=...): send it one way"}


__all__ = ["form_data"]
