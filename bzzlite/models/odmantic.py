"""ODMantic models as resources: what bzzlite needs to know about them, and no I/O.

An ODMantic ``Model`` is served like a pydantic model, with three differences:

* ``id`` is the model's own ObjectId primary field; in JSON it is the 24-hex string.
* A ``Reference()`` field holds the referenced document's id: request bodies give
  that id (a 24-hex string) and responses return it as one. The referenced document
  is not loaded: receivers get a stub of the referenced model carrying only ``id``.
* MongoDB stores references and ObjectId-typed top-level fields as ObjectIds (the
  layout ODMantic's own engine reads), everything else in JSON mode like any resource.

Nothing here imports ODMantic or bson at module level: this module is reached only
for classes that already are ODMantic models, and bson is imported where needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, GetCoreSchemaHandler, create_model
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema

from ..errors import ConfigurationError
from .schema import Unique, unwrap

_HEX_ID = re.compile(r"[0-9a-fA-F]{24}\Z")



class ReferenceId(str):
    """The type of a reference field in the API: the referenced document's 24-hex id.

    Validates to a plain lowercase ``str``; not a text field for the query language
    (no ``__contains``), since MongoDB stores it as an ObjectId.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            str.lower, core_schema.str_schema(pattern=r"^[0-9a-fA-F]{24}$")
        )


def is_odmantic_model(model: Any) -> bool:
    """True for an ``odmantic.Model`` subclass (not an ``EmbeddedModel``)."""
    return isinstance(model, type) and hasattr(model, "__odm_fields__") and hasattr(model, "__collection__")


def references(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of the model's ``Reference()`` fields."""
    return tuple(getattr(model, "__references__", ()))


def referenced_model(model: type[BaseModel], name: str) -> type[BaseModel]:
    return model.__odm_fields__[name].model  # type: ignore[attr-defined, no-any-return]


def _is_objectid_type(tp: Any) -> bool:
    try:
        import bson
    except ImportError:  # pragma: no cover - ODMantic depends on pymongo
        return False
    return isinstance(tp, type) and issubclass(tp, bson.ObjectId)


def objectid_fields(model: type[BaseModel]) -> frozenset[str]:
    """Top-level fields MongoDB stores as ObjectIds: references, ``ObjectId`` and
    ``list[ObjectId]`` fields (optional or not). Empty for a pydantic model."""
    if not is_odmantic_model(model):
        return frozenset()
    found = set(references(model))
    for name, info in model.model_fields.items():
        if name == "id":
            continue
        tp, _, _ = unwrap(info.annotation)
        args: tuple[Any, ...] = getattr(tp, "__args__", ())
        if _is_objectid_type(tp) or (len(args) == 1 and _is_objectid_type(unwrap(args[0])[0])):
            found.add(name)
    return frozenset(found)


def _check(model: type[BaseModel], owner: str, seen: set[type]) -> None:
    """Refuse what bzzlite cannot serve faithfully: renamed keys, a custom primary key."""
    if model in seen:
        return
    seen.add(model)
    for name, odm_field in getattr(model, "__odm_fields__", {}).items():
        if getattr(odm_field, "primary_field", False) and name != "id":
            raise ConfigurationError(
                f"{owner}.{name} is a custom primary field: bzzlite assigns ObjectId ids itself. "
                "Drop primary_field=True and declare the field Field(unique=True) instead."
            )
        key_name = getattr(odm_field, "key_name", name)
        if name != "id" and key_name != name:
            raise ConfigurationError(
                f"{owner}.{name} is stored under key_name={key_name!r}: bzzlite stores fields under "
                "their own names. Remove key_name (or rename the field to it)."
            )
    for info in model.model_fields.values():
        tp, _, _ = unwrap(info.annotation)
        for candidate in (tp, *getattr(tp, "__args__", ())):
            inner, _, _ = unwrap(candidate)
            if hasattr(inner, "__odm_fields__") and not is_odmantic_model(inner):  # an EmbeddedModel
                _check(inner, f"{owner}.{inner.__name__}", seen)


def schema_model(model: type[BaseModel]) -> type[BaseModel]:
    """A plain pydantic model with the ODMantic model's API shape, for the query schema
    and OpenAPI: no ``id``, references as ``ReferenceId``, ``unique`` fields marked Unique.

    Raises:
        ConfigurationError: a custom primary field or a ``key_name`` anywhere.
    """
    _check(model, model.__name__, set())
    refs = set(references(model))
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == "id":
            continue
        odm_field = model.__odm_fields__[name]  # type: ignore[attr-defined]
        annotation: Any = ReferenceId if name in refs else info.annotation
        if getattr(odm_field, "unique", False):
            annotation = Annotated[annotation, Unique]
        copied = FieldInfo.merge_field_infos(info)
        copied.annotation = annotation
        fields[name] = (annotation, copied)
    return create_model(  # type: ignore[call-overload, no-any-return]
        model.__name__, __module__=model.__module__, __doc__=model.__doc__, **fields
    )


# -- documents ----------------------------------------------------------------------------


def _stub(model: type[BaseModel], id_: Any) -> BaseModel:
    """An instance of a referenced model that carries only its id (nothing is loaded)."""
    from bson import ObjectId

    return model.model_construct(id=ObjectId(str(id_)))


def with_reference_stubs(
    model: type[BaseModel], data: dict[str, Any], prefix: tuple[Any, ...] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Replace each reference id in ``data`` by a stub of the referenced model.

    Accepts a 24-hex string, an ObjectId or an instance of the referenced model.
    Returns the data to validate and the errors for values that are none of those.
    """
    from bson import ObjectId

    out = dict(data)
    errors: list[dict[str, Any]] = []
    for name in references(model):
        if name not in out:
            continue
        value, target = out[name], referenced_model(model, name)
        if isinstance(value, target):
            continue
        if isinstance(value, ObjectId) or (isinstance(value, str) and _HEX_ID.match(value)):
            out[name] = _stub(target, str(value).lower())
            continue
        errors.append({
            "loc": [*prefix, name],
            "msg": f"Input should be the id of a {target.__name__} document (24 hexadecimal characters)",
            "type": "reference_id",
        })
        out[name] = _stub(target, "0" * 24)  # keeps pydantic from reporting the same field again
    return out, errors


def dump(instance: BaseModel) -> dict[str, Any]:
    """A validated ODMantic instance as a JSON-mode document: references as id strings, no id."""
    doc = instance.model_dump(mode="json")
    doc.pop("id", None)
    for name in references(type(instance)):
        ref = getattr(instance, name, None)
        doc[name] = str(ref.id) if ref is not None else None
    return doc


def instance(model: type[BaseModel], data: Mapping[str, Any]) -> BaseModel:
    """An ODMantic instance for receivers from a response body (``id`` and references as
    hex strings); references become stubs carrying only ``id``."""
    values = dict(data)
    for name in references(model):
        value = values.get(name)
        if isinstance(value, str) and _HEX_ID.match(value):
            values[name] = _stub(referenced_model(model, name), value)
    try:
        return model.model_validate(values)
    except ValueError:  # stored before an incompatible model change: hand it over as stored
        from bson import ObjectId

        if isinstance(values.get("id"), str):
            values["id"] = ObjectId(values["id"])
        return model.model_construct(**values)
