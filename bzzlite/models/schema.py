"""What bzzlite learns from a model once, at ``@resource`` time.

The queryable field paths and how to coerce query-string values for them, the
unique fields, the shape used to reject unknown keys at every depth, and the
top-level defaults used to fill documents stored before a field was added.
No I/O and no Tornado here, so it is tested in microseconds.
"""

from __future__ import annotations

import datetime
import enum
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from ..errors import ConfigurationError, ValidationFailed


class _UniqueMarker:
    """Marks a top-level scalar field as unique: ``Annotated[str, Unique]``."""

    def __repr__(self) -> str:
        return "Unique"


Unique = _UniqueMarker()


class _RoleMarker:
    """Marks a top-level field's role in the HTTP API (see :data:`ReadOnly`, :data:`WriteOnly`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``Annotated[str, ReadOnly]``: set by the server or a receiver, never by a client. A client's
#: value is ignored on every write (POST, PUT, PATCH, bulk, forms); a PUT keeps the stored one.
#: Also ``Field(json_schema_extra={"readOnly": True})``.
ReadOnly = _RoleMarker("ReadOnly")
#: ``Annotated[str, WriteOnly]``: accepted on writes, never in a response, a list, a projection,
#: a change-feed event or a filter (a password hash). Also ``Field(json_schema_extra=
#: {"writeOnly": True})``, and pydantic's ``Field(exclude=True)`` (stored, never sent).
WriteOnly = _RoleMarker("WriteOnly")

_LIST_ORIGINS = (list, set, frozenset, tuple)
_UNION_ORIGINS = (Union, types.UnionType)
_STRINGISH = (str,)


def unwrap(annotation: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    """Strip ``Annotated`` and ``Optional``: (inner type, nullable, metadata found)."""
    metadata: tuple[Any, ...] = ()
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            args = get_args(annotation)
            annotation, metadata = args[0], metadata + tuple(args[1:])
        elif origin in _UNION_ORIGINS:
            members = [a for a in get_args(annotation) if a is not type(None)]
            nullable = nullable or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, nullable, metadata
            annotation = members[0]
        else:
            return annotation, nullable, metadata


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A field a query can name: ``"price"``, ``"address.city"`` or ``"tags"``."""

    path: str
    adapter: TypeAdapter[Any]  # coerces one value (one member, for a list field)
    nullable: bool
    is_list: bool
    is_text: bool
    orderable: bool

    def coerce(self, value: Any, *, from_string: bool) -> Any:
        """A query value coerced to the field's type and returned in JSON mode."""
        if value is None or (from_string and value == "null" and self.nullable):
            return None
        if from_string:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            try:
                parsed = self.adapter.validate_strings(value)
            except ValidationError as exc:
                # pydantic compares a Literal's members with the text as is: "1" is not 1
                if exc.errors()[0]["type"] != "literal_error":
                    raise
                try:
                    parsed = self.adapter.validate_json(value)
                except ValidationError:
                    raise exc from None
        else:
            parsed = self.adapter.validate_python(value)
        if isinstance(parsed, (datetime.datetime, datetime.time)):
            text = canonical_time(parsed)
            if text is not None:
                return text
        return self.adapter.dump_python(parsed, mode="json")


def canonical_time(value: datetime.datetime | datetime.time) -> str | None:
    """Fixed-width text that sorts in time order, for stored documents and query values alike.

    pydantic writes ``08:00:00Z`` and ``08:00:00.500000Z``, and ``+02:00`` offsets as given, so
    text order (what both stores compare) is not time order. Aware datetimes become UTC with a
    ``Z`` (as MongoDB keeps them), naive ones stay naive; microseconds are always written.
    None when the value cannot be moved to UTC (the first or last day of the calendar).
    """
    if isinstance(value, datetime.datetime) and value.utcoffset() is not None:
        try:
            value = value.astimezone(datetime.timezone.utc)
        except OverflowError:
            return None
        return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    text = value.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def canonical_times(value: Any, dumped: Any) -> Any:
    """Rewrite, in place, the datetimes and times of ``value`` in its JSON-mode ``dumped``
    form as :func:`~bzzlite.models.schema.canonical_time` text, so stores compare them in time order."""
    if isinstance(value, (datetime.datetime, datetime.time)):
        text = canonical_time(value) if isinstance(dumped, str) else None  # keep custom serializers' output
        return dumped if text is None else text
    if isinstance(value, BaseModel):
        if isinstance(dumped, dict):
            for name in type(value).model_fields:
                if name in dumped:
                    dumped[name] = canonical_times(getattr(value, name), dumped[name])
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(dumped, list) and len(items) == len(dumped):
            for index, item in enumerate(items):
                dumped[index] = canonical_times(item, dumped[index])
    elif isinstance(value, dict) and isinstance(dumped, dict):
        for key, item in value.items():
            if isinstance(key, str) and key in dumped:
                dumped[key] = canonical_times(item, dumped[key])
    return dumped


def mentions_time(annotation: Any, _seen: set[type] | None = None) -> bool:
    """Whether a type can hold a datetime or a time anywhere inside (nested models included)."""
    seen = set() if _seen is None else _seen
    if isinstance(annotation, type):
        if issubclass(annotation, (datetime.datetime, datetime.time)):
            return True
        if issubclass(annotation, BaseModel):
            if annotation in seen:
                return False
            seen.add(annotation)
            return any(mentions_time(f.annotation, seen) for f in annotation.model_fields.values())
    return any(mentions_time(arg, seen) for arg in get_args(annotation))


def _is_orderable(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    # Not Decimal: it is stored as text ("10" < "9.5"), so ranges and sorts would be wrong.
    # subclasses too: ODMantic declares its datetimes as a datetime subclass
    return isinstance(tp, type) and issubclass(tp, (int, float, str, datetime.date, datetime.time))


# --- unknown-key checking ---------------------------------------------------------


@dataclass(slots=True)
class Shape:
    """Where a model's data can hold dicts whose keys must be checked."""

    keys: frozenset[str] = frozenset()  # allowed keys when this is a model
    children: dict[str, "Shape"] = field(default_factory=dict)  # key -> nested shape
    items: "Shape | None" = None  # for lists / dict values
    options: tuple["Shape", ...] = ()  # for unions of models
    is_model: bool = False
    is_mapping: bool = False

    @property
    def trivial(self) -> bool:
        return not (self.is_model or self.items or self.options)


_EMPTY = Shape()


def shape_of(annotation: Any, _seen: dict[type, Shape] | None = None) -> Shape:
    """Build the key-checking shape of a type (models, lists, dicts, unions of those)."""
    seen = {} if _seen is None else _seen
    tp, _, _ = unwrap(annotation)
    origin = get_origin(tp)
    if is_model(tp):
        if tp in seen:
            return seen[tp]
        shape = Shape(is_model=True)
        seen[tp] = shape  # recursive models refer back to the same shape
        keys = set()
        for name, info in tp.model_fields.items():
            keys.add(name)
            if info.alias:
                keys.add(info.alias)
            child = shape_of(info.annotation, seen)
            if not child.trivial:
                shape.children[name] = child
                if info.alias:
                    shape.children[info.alias] = child
        shape.keys = frozenset(keys)
        return shape
    if origin in _LIST_ORIGINS:
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = shape_of(args[0], seen) if len(args) == 1 else _EMPTY
        return _EMPTY if inner.trivial else Shape(items=inner)
    if origin is dict or origin is typing.Mapping:
        key_value = get_args(tp)
        inner = shape_of(key_value[1], seen) if len(key_value) == 2 else _EMPTY
        return _EMPTY if inner.trivial else Shape(items=inner, is_mapping=True)
    if origin in _UNION_ORIGINS:
        opts = tuple(s for s in (shape_of(a, seen) for a in get_args(tp)) if not s.trivial)
        return Shape(options=opts) if opts else _EMPTY
    return _EMPTY


def check_object(data: Any, prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The body must be a JSON object; otherwise 422 naming what it was."""
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise ValidationFailed(
            [{"loc": list(prefix), "msg": f"Input should be an object, not {kind}", "type": "model_type"}]
        )
    return data


def unknown_keys(shape: Shape, data: Any, loc: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    """Yield a pydantic-style error for every key the model does not declare."""
    if shape.is_model:
        if not isinstance(data, dict):
            return
        for key, value in data.items():
            if key not in shape.keys:
                yield {"loc": [*loc, key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
            elif key in shape.children:
                yield from unknown_keys(shape.children[key], value, (*loc, key))
    elif shape.items is not None:
        if shape.is_mapping and isinstance(data, dict):
            for key, value in data.items():
                yield from unknown_keys(shape.items, value, (*loc, key))
        elif isinstance(data, list):
            for index, value in enumerate(data):
                yield from unknown_keys(shape.items, value, (*loc, index))
    elif shape.options:
        # A union of models: acceptable if some option accepts the keys.
        found: list[dict[str, Any]] = []
        for option in shape.options:
            errors = list(unknown_keys(option, data, loc))
            if not errors:
                return
            found = found or errors
        yield from found


# --- the whole model ----------------------------------------------------------------


@dataclass(slots=True)
class ModelSchema:
    """Everything bzzlite derives from one model class."""

    model: type[BaseModel]
    paths: dict[str, FieldPath]
    unique: tuple[str, ...]
    shape: Shape
    defaults: dict[str, Any]  # top-level field -> JSON-mode default
    default_factories: dict[str, Callable[[], Any]]
    list_fields: frozenset[str]  # top-level fields holding a list (for form data)
    nullable_fields: frozenset[str]
    top_level: tuple[str, ...]
    has_times: bool = False  # datetimes/times somewhere: stored in canonical_time form
    key_set: frozenset[str] = frozenset()  # the top-level field names, for fill_defaults
    read_only: frozenset[str] = frozenset()  # top-level fields clients cannot set
    write_only: frozenset[str] = frozenset()  # top-level fields never sent to clients
    excluded: dict[str, TypeAdapter[Any]] = field(default_factory=dict)  # Field(exclude=True): dumped apart
    computed: tuple[str, ...] = ()  # @computed_field names: served in responses, never stored

    def __post_init__(self) -> None:
        self.key_set = frozenset(self.top_level)

    def fill_defaults(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Fit a stored document to the model as it is now: fill the top-level fields added
        since it was stored, and leave out those the model no longer declares (they would
        show in responses and make every PATCH of the document a 422)."""
        if doc.keys() == self.key_set:  # stored by this model: the usual case
            return doc
        missing = [name for name in self.top_level if name not in doc]
        filled = {k: v for k, v in doc.items() if k in self.key_set}
        for name in missing:
            if name in self.defaults:
                filled[name] = self.defaults[name]
            elif name in self.default_factories:
                value = self.default_factories[name]()
                text = canonical_time(value) if isinstance(value, (datetime.datetime, datetime.time)) else None
                filled[name] = text if text is not None else TypeAdapter(type(value)).dump_python(value, mode="json")
        return filled

    def dump(self, instance: BaseModel) -> dict[str, Any]:
        """A validated instance of the model as the JSON-mode document the stores keep (no id, no
        computed fields, ``Field(exclude=True)`` fields included, times in canonical form)."""
        doc = instance.model_dump(mode="json", exclude=set(self.computed) or None)
        doc.pop("id", None)
        for name, adapter in self.excluded.items():  # Field(exclude=True): stored, never sent
            doc[name] = adapter.dump_python(getattr(instance, name), mode="json")
        if self.has_times:
            canonical_times(instance, doc)
        return doc


def _json_default(info: Any) -> tuple[bool, Any]:
    if info.default is PydanticUndefined:
        return False, None
    try:
        if isinstance(info.default, (datetime.datetime, datetime.time)):
            text = canonical_time(info.default)
            if text is not None:
                return True, text
        return True, TypeAdapter(Any).dump_python(info.default, mode="json")
    except Exception:  # an exotic default: leave the stored document as it is
        return False, None


def inspect_model(model: type[BaseModel]) -> ModelSchema:
    """Derive the :class:`ModelSchema` of a model; raise ConfigurationError on misuse."""
    paths: dict[str, FieldPath] = {}
    unique: list[str] = []
    defaults: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    list_fields: set[str] = set()
    nullable_fields: set[str] = set()

    def walk(cls: type[BaseModel], prefix: str, depth: int, through_list: bool) -> None:
        for name, info in cls.model_fields.items():
            path = f"{prefix}{name}"
            tp, nullable, metadata = unwrap(info.annotation)
            marked = any(m is Unique for m in (*metadata, *info.metadata)) or _has_unique(info.annotation)
            origin = get_origin(tp)
            if marked:
                if depth or through_list or origin in _LIST_ORIGINS or is_model(tp):
                    raise ConfigurationError(
                        f"{model.__name__}.{path}: Unique applies to top-level scalar fields only; "
                        "remove it or move the field to the top level."
                    )
                unique.append(path)
            if is_model(tp):
                if depth < 8 and not through_list:
                    walk(tp, f"{path}.", depth + 1, through_list)
                continue
            if origin in _LIST_ORIGINS:
                args = [a for a in get_args(tp) if a is not Ellipsis]
                member, _, _ = unwrap(args[0]) if args else (Any, False, ())
                if depth == 0:
                    list_fields.add(name)
                if len(args) == 1 and not is_model(member) and get_origin(member) is None and not through_list:
                    paths[path] = FieldPath(path, TypeAdapter(args[0]), nullable, True, member in _STRINGISH, False)
                continue
            if through_list or origin is not None and origin not in (typing.Literal,):
                continue
            paths[path] = FieldPath(
                path, TypeAdapter(tp), nullable, False, tp in _STRINGISH, _is_orderable(tp)
            )

    walk(model, "", 0, False)
    read_only, write_only, excluded = _roles(model)
    for name, info in model.model_fields.items():
        has, value = _json_default(info)
        if has:
            defaults[name] = value
        elif info.default_factory is not None:
            factories[name] = info.default_factory  # type: ignore[assignment]
        if unwrap(info.annotation)[1]:
            nullable_fields.add(name)
    return ModelSchema(
        model=model,
        paths=paths,
        unique=tuple(unique),
        shape=shape_of(model),
        defaults=defaults,
        default_factories=factories,
        list_fields=frozenset(list_fields),
        nullable_fields=frozenset(nullable_fields),
        top_level=tuple(model.model_fields),
        has_times=mentions_time(model),
        read_only=read_only,
        write_only=write_only,
        excluded=excluded,
        computed=tuple(getattr(model, "model_computed_fields", {}) or ()),
    )


def _role(info: Any, marker: _RoleMarker, keyword: str) -> bool:
    _, _, metadata = unwrap(info.annotation)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return any(m is marker for m in (*metadata, *info.metadata)) or extra.get(keyword) is True


def _roles(model: type[BaseModel]) -> tuple[frozenset[str], frozenset[str], dict[str, TypeAdapter[Any]]]:
    """The read-only, write-only and excluded top-level fields; a role deeper is an error."""
    read_only, write_only, excluded = set(), set(), {}
    for name, info in model.model_fields.items():
        ro, wo = _role(info, ReadOnly, "readOnly"), _role(info, WriteOnly, "writeOnly")
        if ro and wo:
            raise ConfigurationError(f"{model.__name__}.{name}: a field is ReadOnly or WriteOnly, not both")
        if ro:
            read_only.add(name)
        if wo or info.exclude:
            write_only.add(name)
        if info.exclude:
            excluded[name] = TypeAdapter(info.annotation if info.annotation is not None else Any)
        tp, _, _ = unwrap(info.annotation)
        inner = [tp] + [unwrap(a)[0] for a in get_args(tp)]
        for candidate in inner:
            if is_model(candidate):
                for sub, sub_info in candidate.model_fields.items():
                    if _role(sub_info, ReadOnly, "readOnly") or _role(sub_info, WriteOnly, "writeOnly"):
                        raise ConfigurationError(
                            f"{model.__name__}.{name}.{sub}: ReadOnly and WriteOnly apply to top-level fields "
                            "only; mark the top-level field instead")
    return frozenset(read_only), frozenset(write_only), excluded


def _has_unique(annotation: Any) -> bool:
    """Find a Unique marker anywhere in an annotation (``Annotated[str, Unique] | None``)."""
    if get_origin(annotation) is Annotated:
        args = get_args(annotation)
        return any(m is Unique for m in args[1:]) or _has_unique(args[0])
    if get_origin(annotation) in _UNION_ORIGINS:
        return any(_has_unique(a) for a in get_args(annotation))
    return False
