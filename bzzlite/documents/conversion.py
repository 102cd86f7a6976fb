"""Turning request data into stored documents and back; pure functions, no I/O."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..errors import ValidationFailed, error_list
from ..models import odmantic
from ..models.schema import canonical_times, check_object, unknown_keys

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..stores.base import Record


def validate(spec: ResourceSpec, data: Any, prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Validate a full document and return it in JSON mode, ready to store.

    An ``id`` key is ignored (the server owns ids); unknown keys at any depth are errors.
    Raises:
        ValidationFailed: with every problem found, ``loc`` prefixed by ``prefix``.
    """
    data = check_object(data, prefix)
    if "id" in data:
        data = {k: v for k, v in data.items() if k != "id"}
    shape = spec.schema.shape
    if shape.is_model and data.keys() <= shape.keys and shape.children.keys().isdisjoint(data):
        errors: list[dict[str, Any]] = []  # every key declared and none to look into: the usual case
    else:
        errors = list(unknown_keys(shape, data, prefix))
    if spec.is_odmantic:
        data, reference_errors = odmantic.with_reference_stubs(spec.model, data, prefix)
        errors.extend(reference_errors)
    try:
        instance = spec.model.model_validate(data)
    except ValidationError as exc:
        errors.extend(error_list(exc, prefix))
    if errors:
        raise ValidationFailed(errors)
    doc = dump(spec, instance)
    errors = [] if storable(doc) else list(unstorable(doc, prefix))
    if errors:
        raise ValidationFailed(errors)
    return doc


def storable(value: Any) -> bool:
    """Whether :func:`unstorable` finds nothing in ``value``: the same checks, without a
    generator per value (the usual answer, at a third of the cost)."""
    kind = type(value)
    if kind is str:
        return "\x00" not in value
    if kind is dict:
        for key, item in value.items():
            if "\x00" in key or not storable(item):
                return False
        return True
    if kind is list:
        for item in value:
            if not storable(item):
                return False
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        return -(2**63) <= value < 2**63
    if kind is bool or value is None:
        return True
    return next(unstorable(value), None) is None  # subclasses and other types: the walk itself


def unstorable(value: Any, loc: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    """Errors for values no store keeps faithfully, whichever way they came in (JSON, form
    fields coerced by pydantic, a receiver): NaN and infinities, integers beyond 64 bits, and
    NUL characters (SQLite's JSON functions cut strings at NUL; DRF refuses them too)."""
    if isinstance(value, str):
        if "\x00" in value:
            yield {"loc": list(loc), "msg": "Null characters are not allowed", "type": "string_nul"}
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield {"loc": [*loc, key], "msg": "Null characters are not allowed", "type": "string_nul"}
            yield from unstorable(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable(item, (*loc, index))
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield {"loc": list(loc), "msg": "Input should be a finite number", "type": "finite_number"}
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        yield {"loc": list(loc), "msg": "Input should fit in 64 bits", "type": "int_64_bits"}


def dump(spec: ResourceSpec, instance: BaseModel) -> dict[str, Any]:
    """A validated model instance as a JSON-mode document (without the id)."""
    if not spec.is_odmantic:
        return spec.schema.dump(instance)
    doc = odmantic.dump(instance)
    if spec.schema.has_times:
        canonical_times(instance, doc)
    return doc


def check_patch(spec: ResourceSpec, patch: Any) -> dict[str, Any]:
    """A merge patch must be an object naming only known fields."""
    patch = check_object(patch)
    patch = {k: v for k, v in patch.items() if k != "id"}
    errors = list(unknown_keys(spec.schema.shape, patch))
    if errors:
        raise ValidationFailed(errors)
    return patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: ``null`` removes a key, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def updated_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"field": {"from": old, "to": new}}`` for the top-level fields that changed."""
    changes: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before != after or type(before) is not type(after):
            changes[key] = {"from": before, "to": after}
    return changes


def stored_json(spec: ResourceSpec, record: Record) -> dict[str, Any]:
    """A stored document with its id first, every field (write-only ones included)."""
    return {"id": record.id, **spec.schema.fill_defaults(record.doc)}


def as_json(spec: ResourceSpec, record: Record) -> dict[str, Any]:
    """What clients see of a stored document: its id first, its fields but the write-only
    ones, then its computed fields."""
    body = stored_json(spec, record)
    schema = spec.schema
    if schema.write_only:
        body = {k: v for k, v in body.items() if k not in schema.write_only}
    if schema.computed:
        try:
            body.update(instance(spec, record).model_dump(mode="json", include=set(schema.computed)))
        except Exception:  # a computed field that fails must not hide the document
            logging.getLogger("bzzlite").exception("a computed field of %s failed for %s", spec.model.__name__,
                                                   record.id)
    return body


def without_read_only(spec: ResourceSpec, data: Any) -> Any:
    """A client's body without the fields it may not set (read-only and computed ones): ignored,
    as the ``id`` is, so a document read back can be sent as it is."""
    schema = spec.schema
    if not (schema.read_only or schema.computed) or not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if k not in schema.read_only and k not in schema.computed}


def instance(spec: ResourceSpec, record: Record) -> BaseModel:
    """The model instance handed to receivers, carrying ``instance.id``."""
    data = stored_json(spec, record)
    if spec.is_odmantic:
        return odmantic.instance(spec.model, data)
    try:
        return spec.stored_model.model_validate(data)
    except ValidationError:  # stored before an incompatible model change: hand it over as stored
        return spec.stored_model.model_construct(**data)
