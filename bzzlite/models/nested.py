"""Nested routes (bzz's "inner properties"): which part of a document a URL path names.

For a field holding an embedded model, a list of embedded models or a reference,
``/{name}/{id}/{field}`` and deeper paths (``/team/{id}/members/{key}/address``) address
that part of the parent document. Through a reference, ``/{field}/{ref_id}`` names the
referenced document itself and what follows it is a path inside that document
(``/team/{id}/users/{uid}/addresses``), served under the referenced resource's own rules.
This module is pure (no Tornado, no store):

* :func:`inspect_nested` learns once per resource, when the app is built, which fields
  can be walked into (a :class:`NestedModel` tree);
* :func:`parse_path` checks a URL path against that tree without reading anything, so an
  unknown field or a malformed key is a 404 before any store call;
* :func:`locate` finds the addressed place in one stored document (list keys become
  positions), and :func:`set_in` / :func:`remove_in` build the changed document.

A list's elements are keyed by their own ``id`` field when the element model declares
one, else by their position. A reference is a field declared ``Annotated[str, Ref(...)]``
(or an ODMantic ``Reference()``): it stores the referenced document's id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import CoreSchema, core_schema

from . import odmantic
from .ids import is_valid_id
from ..errors import ConfigurationError
from .schema import is_model, unwrap

if TYPE_CHECKING:
    from ..registry import ResourceSpec

#: What a field holds.
EMBEDDED, LIST, REF, REF_LIST = "embedded", "list", "ref", "ref_list"
ON_DELETE = ("restrict", "set_null", "cascade")

#: What a path ends at, and the methods each answers.
METHODS: dict[str, tuple[str, ...]] = {
    "embedded": ("GET", "PUT", "PATCH", "DELETE"),
    "list": ("GET", "POST"),
    "element": ("GET", "PUT", "PATCH", "DELETE"),
    "ref": ("GET", "PUT", "DELETE"),
    "ref_list": ("GET", "POST"),
    # the referenced document itself, by its id: read, changed as at its own URL, dissociated
    "ref_element": ("GET", "PUT", "PATCH", "DELETE"),
    "ref_document": ("GET", "PUT", "PATCH", "DELETE"),
}

MAX_SEGMENTS = 64  # deeper than any sane model; keeps a hostile URL from walking far
_POSITION = re.compile(r"(?:0|[1-9][0-9]{0,8})\Z")


# -- the reference marker -------------------------------------------------------------


class Ref:
    """Marks a field as holding the id of a document of another resource.

    ``author: Annotated[str, Ref("author")]`` (by resource name or collection path) or
    ``Annotated[str, Ref(Author)]`` (by model); ``list[Annotated[str, Ref(Tag)]]`` for
    a list of references. The value is validated as an id (24 hexadecimal characters,
    stored lowercase) of a document that exists (422 otherwise); nested routes serve the
    referenced document from its own resource.

    ``on_delete`` says what deleting the referenced document does to this one:
    ``"restrict"`` (the default: the delete is refused, 409, while anything refers to it),
    ``"set_null"`` (the reference becomes null, or leaves its list) or ``"cascade"`` (this
    document is deleted too). Applied in one transaction with the delete.
    """

    __slots__ = ("on_delete", "target")

    def __init__(self, target: str | type[BaseModel], on_delete: str = "restrict") -> None:
        if not (isinstance(target, str) and target.strip("/")) and not is_model(target):
            raise ConfigurationError(
                f"Ref({target!r}): name the referenced resource, Ref('author'), or its model, Ref(Author)"
            )
        if on_delete not in ON_DELETE:
            raise ConfigurationError(f"Ref({target!r}, on_delete={on_delete!r}): on_delete is one of "
                                     f"{', '.join(map(repr, ON_DELETE))}")
        self.target = target
        self.on_delete = on_delete

    def __repr__(self) -> str:
        name = self.target if isinstance(self.target, str) else self.target.__name__
        return f"Ref({name!r})" if isinstance(self.target, str) else f"Ref({name})"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_reference_id, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        json_schema = handler(schema)
        target = self.target if isinstance(self.target, str) else self.target.__name__
        if json_schema.get("type") == "string":
            json_schema["pattern"] = "^[0-9a-fA-F]{24}$"
        json_schema.setdefault("description", f"The id of a {target} document.")
        return json_schema


def _reference_id(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and is_valid_id(value.lower()):
        return value.lower()
    raise ValueError("Input should be the id of a document (24 hexadecimal characters)")


# -- what can be walked into, learned once --------------------------------------------


@dataclass(slots=True, eq=False)
class NestedModel:
    """A model's fields that nested routes can walk into."""

    model: type[BaseModel]
    fields: dict[str, NestedField] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class NestedField:
    """One such field: what it holds and what it leads to.

    ``model`` is the model of what the field holds (the embedded model, the list's
    element model, or for references the referenced resource's model): the sender of
    the signals a nested route fires.
    """

    name: str
    kind: str
    model: type[BaseModel]
    nullable: bool
    required: bool
    key: str | None = None  # "id" when list elements are keyed by their own id field
    key_is_text: bool = False  # the element id is a string: POST assigns one when it is missing
    target: ResourceSpec | None = None  # the referenced resource
    node: NestedModel | None = None  # the fields of ``model`` (embedded models and list elements)
    target_tree: NestedModel | None = None  # the referenced resource's own tree (paths through it)
    on_delete: str = "restrict"  # what deleting the referenced document does here (Ref's on_delete)


def inspect_nested(spec: ResourceSpec, specs: Iterable[ResourceSpec]) -> NestedModel:
    """The nested-route tree of a resource; references resolved against ``specs``, and
    linked to the referenced resources' own trees.

    Raises:
        ConfigurationError: a ``Ref`` naming no resource (or several), or on a non-string field.
    """
    return inspect_all(specs)[spec.path]


_last_inspected: tuple[list[ResourceSpec], dict[str, NestedModel]] | None = None


def inspect_all(specs: Iterable[ResourceSpec]) -> dict[str, NestedModel]:
    """Every resource's tree (keyed by collection path), references linked across them.

    The last answer is kept: an app asks once per resource with the same resources.
    """
    global _last_inspected
    specs = list(specs)
    last = _last_inspected
    if last is not None and len(last[0]) == len(specs) and all(a is b for a, b in zip(last[0], specs)):
        return last[1]
    resolver = _Resolver(specs)
    trees = {s.path: _inspect(s.model, {}, resolver, root=True) for s in specs}
    for tree in trees.values():
        for nested in _walk_fields(tree, set()):
            if nested.target is not None:
                nested.target_tree = trees[nested.target.path]
    _last_inspected = (specs, trees)
    return trees


def _walk_fields(node: NestedModel, seen: set[int]) -> Iterator[NestedField]:
    if id(node) in seen:
        return
    seen.add(id(node))
    for nested in node.fields.values():
        yield nested
        if nested.node is not None:
            yield from _walk_fields(nested.node, seen)


def _inspect(model: type[BaseModel], seen: dict[type, NestedModel], resolver: _Resolver, *, root: bool) -> NestedModel:
    if model in seen:
        return seen[model]  # recursive models (a comment with replies) share one node
    node = seen[model] = NestedModel(model)
    refs = set(odmantic.references(model)) if odmantic.is_odmantic_model(model) else set()
    for name, info in model.model_fields.items():
        if root and name == "id":
            continue  # an ODMantic model's own primary key
        tp, nullable, metadata = unwrap(info.annotation)
        required = info.is_required()
        where = f"{model.__name__}.{name}"
        if name in refs:
            target = resolver.by_model(odmantic.referenced_model(model, name))
            if target is not None:  # a reference to a model this app does not serve stays a plain id
                node.fields[name] = NestedField(name, REF, target.model, nullable, required, target=target)
            continue
        ref = _find_ref((*metadata, *info.metadata))
        if ref is not None:
            _check_text(tp, where)
            target = resolver.resolve(ref, where)
            if ref.on_delete == "set_null" and not nullable:
                raise ConfigurationError(f"{where}: Ref(..., on_delete='set_null') needs an optional field "
                                         f"(`{name}: Annotated[str, Ref(...)] | None = None`)")
            node.fields[name] = NestedField(name, REF, target.model, nullable, required, target=target,
                                            on_delete=ref.on_delete)
        elif is_model(tp) and not odmantic.is_odmantic_model(tp):
            child = _inspect(tp, seen, resolver, root=False)
            node.fields[name] = NestedField(name, EMBEDDED, tp, nullable, required, node=child)
        elif get_origin(tp) is list and len(get_args(tp)) == 1:
            member, member_nullable, member_metadata = unwrap(get_args(tp)[0])
            ref = _find_ref(member_metadata)
            if ref is not None:
                _check_text(member, where)
                target = resolver.resolve(ref, where)
                node.fields[name] = NestedField(name, REF_LIST, target.model, nullable, required, target=target,
                                                on_delete=ref.on_delete)
            elif is_model(member) and not member_nullable and not odmantic.is_odmantic_model(member):
                child = _inspect(member, seen, resolver, root=False)
                id_field = member.model_fields.get("id")
                key_is_text = id_field is not None and unwrap(id_field.annotation)[0] is str
                node.fields[name] = NestedField(
                    name, LIST, member, nullable, required, key="id" if id_field is not None else None,
                    key_is_text=key_is_text, node=child,
                )
    return node


def _find_ref(metadata: Iterable[Any]) -> Ref | None:
    return next((m for m in metadata if isinstance(m, Ref)), None)


def _check_text(tp: Any, where: str) -> None:
    if tp is not str:
        raise ConfigurationError(f"{where}: a Ref field holds an id, declare it Annotated[str, Ref(...)]")


class _Resolver:
    """Finds the resource a ``Ref`` names: by model, by name, or by collection path."""

    def __init__(self, specs: list[ResourceSpec]) -> None:
        self.specs = specs

    def by_model(self, model: Any) -> ResourceSpec | None:
        return next((s for s in self.specs if s.model is model), None)

    def resolve(self, ref: Ref, where: str) -> ResourceSpec:
        if not isinstance(ref.target, str):
            found = self.by_model(ref.target)
            if found is None:
                raise ConfigurationError(
                    f"{where}: {ref!r} names {ref.target.__name__}, which is not a resource of this registry; "
                    "declare it with @resource (in the same registry) before building the App."
                )
            return found
        wanted = ref.target.strip("/")
        matches = [s for s in self.specs if s.path.strip("/") == wanted] or [s for s in self.specs if s.name == wanted]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(sorted(s.path for s in self.specs)) or "none"
            raise ConfigurationError(f"{where}: {ref!r} names no resource of this registry (resources: {known})")
        paths = ", ".join(sorted(s.path for s in matches))
        raise ConfigurationError(f"{where}: {ref!r} is ambiguous ({paths}); name it by its path, e.g. Ref({paths.split(', ')[0]!r})")


# -- a URL path, checked against the tree ---------------------------------------------


class PathNotFound(Exception):
    """The path names nothing (unknown field, malformed key, index out of range...)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Step:
    """A field of the path, and the key given after it (lists only; None names the list)."""

    field: NestedField
    key: str | None = None


@dataclass(frozen=True, slots=True)
class NestedPath:
    """A parsed nested path: ``comments/2/author`` → two steps.

    ``inner`` is the rest of a path that goes through a reference (``users/{uid}/addresses``:
    the last step is ``users/{uid}``, ``inner`` is ``addresses`` in the referenced document).
    """

    steps: tuple[Step, ...]
    inner: NestedPath | None = None

    @property
    def own_segments(self) -> list[str]:
        """The segments in this document (up to the referenced document's id)."""
        out: list[str] = []
        for step in self.steps:
            out.append(step.field.name)
            if step.key is not None:
                out.append(step.key)
        return out

    @property
    def segments(self) -> list[str]:
        return self.own_segments + (self.inner.segments if self.inner is not None else [])

    @property
    def through(self) -> bool:
        """Whether the path goes on inside a referenced document."""
        return self.inner is not None

    @property
    def referenced(self) -> tuple[ResourceSpec, NestedModel, str] | None:
        """(resource, its tree, id) of the referenced document the path names or goes through."""
        last = self.last
        if last.field.target is None or last.key is None or last.field.target_tree is None:
            return None
        return last.field.target, last.field.target_tree, last.key

    @property
    def dotted(self) -> str:
        """``comments.2.author``: the key of ``updated_fields`` entries under this path."""
        return ".".join(self.segments)

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def model(self) -> type[BaseModel]:
        """The model of what the path names: the sender of its signals."""
        return self.inner.model if self.inner is not None else self.last.field.model

    @property
    def endpoint(self) -> str:
        """One of the keys of :data:`METHODS`, or ``"through"`` for a path through a reference."""
        if self.inner is not None:
            return "through"
        kind, keyed = self.last.field.kind, self.last.key is not None
        if kind == EMBEDDED:
            return "embedded"
        if kind == LIST:
            return "element" if keyed else "list"
        if kind == REF:
            return "ref_document" if keyed else "ref"
        return "ref_element" if keyed else "ref_list"

    @property
    def methods(self) -> tuple[str, ...]:
        return self.inner.methods if self.inner is not None else METHODS[self.endpoint]


def parse_path(root: NestedModel, segments: Sequence[str]) -> NestedPath:
    """Check ``segments`` (the URL path after the parent's id) against the tree.

    After a reference and the referenced document's id (``author/{id}``, ``tags/{id}``),
    the rest is checked against the referenced resource's own tree.
    Raises:
        PathNotFound: an unknown or non-model field, a malformed key or id, a field after
            a reference without the referenced document's id, or an empty segment.
    """
    if not segments or len(segments) > MAX_SEGMENTS:
        raise PathNotFound("No such nested path.")
    node: NestedModel | None = root
    steps: list[Step] = []
    i = 0
    while i < len(segments):
        name = segments[i]
        if node is None:
            last = steps[-1]
            if last.key is not None and last.field.target_tree is not None:
                inner = parse_path(last.field.target_tree, segments[i:])
                return NestedPath(tuple(steps), inner)
            where = "/".join(segments[:i])
            raise PathNotFound(f"{where!r} holds a reference: name the referenced document's id after it.")
        found = node.fields.get(name)
        if found is None:
            raise PathNotFound(
                f"{node.model.__name__} has no field {name!r} holding an embedded model, "
                "a list of models or a reference."
            )
        i += 1
        key = None
        if found.kind in (LIST, REF_LIST, REF) and i < len(segments):
            key = _checked_key(found, segments[i])
            i += 1
        steps.append(Step(found, key))
        node = found.node if found.kind == EMBEDDED or (found.kind == LIST and key is not None) else None
    return NestedPath(tuple(steps))


def _checked_key(nested: NestedField, key: str) -> str:
    if nested.kind in (REF, REF_LIST):
        if not is_valid_id(key.lower()):
            raise PathNotFound(f"{key!r} is not an id (24 hexadecimal characters).")
        return key.lower()
    if not key:
        raise PathNotFound(f"An empty key after {nested.name!r}.")
    if nested.key is None and not _POSITION.match(key):
        raise PathNotFound(f"{key!r} is not a position in {nested.name!r} (0, 1, 2...).")
    return key


# -- the addressed place in one document ----------------------------------------------


Loc = tuple[str | int, ...]


def locate(path: NestedPath, doc: dict[str, Any]) -> tuple[Loc, Any]:
    """The location (keys and list positions) of what ``path`` names in ``doc``, and its value.

    The value may be None (an unset embedded model or reference); a list that is unset
    counts as empty.
    Raises:
        PathNotFound: a key matches no element, or an embedded model on the way is unset.
    """
    loc: list[str | int] = []
    value: Any = doc
    for step in path.steps:
        if not isinstance(value, dict):
            where = "/".join(path.segments[: len(loc)]) if loc else "the document"
            raise PathNotFound(f"{where!r} is not set.")
        name = step.field.name
        loc.append(name)
        value = value.get(name)
        if step.key is not None and step.field.kind == REF:
            if not (isinstance(value, str) and value.lower() == step.key):
                where = "/".join(path.own_segments[: len(loc)])
                raise PathNotFound(f"{where!r} does not reference {step.key}.")
        elif step.key is not None:
            items = value if isinstance(value, list) else []
            position = find_position(step, items)
            loc.append(position)
            value = items[position]
    return tuple(loc), value


def find_position(step: Step, items: list[Any]) -> int:
    """The position in ``items`` of the element ``step.key`` names."""
    nested, key = step.field, step.key
    assert key is not None
    if nested.kind == REF_LIST:
        for position, item in enumerate(items):
            if isinstance(item, str) and item.lower() == key:
                return position
        raise PathNotFound(f"{key} is not in {nested.name!r}.")
    if nested.key is not None:
        for position, item in enumerate(items):
            if isinstance(item, dict) and item.get(nested.key) is not None and str(item[nested.key]) == key:
                return position
        raise PathNotFound(f"No element of {nested.name!r} has id {key!r}.")
    position = int(key)
    if position >= len(items):
        raise PathNotFound(f"{nested.name!r} has {len(items)} element(s): there is no position {position}.")
    return position


def get_in(doc: Any, loc: Loc) -> Any:
    for part in loc:
        doc = doc[part]
    return doc


def set_in(doc: Any, loc: Loc, value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``loc`` (containers on the way are copied, not changed)."""
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(doc, list):
        copy = list(doc)
        copy[head] = set_in(copy[head], rest, value)  # type: ignore[index]
        return copy
    copy_d = dict(doc) if isinstance(doc, dict) else {}
    copy_d[head] = set_in(copy_d.get(head), rest, value)  # type: ignore[arg-type]
    return copy_d


def remove_in(doc: Any, loc: Loc) -> Any:
    """A copy of ``doc`` without the list element at ``loc`` (whose last part is a position)."""
    container_loc, position = loc[:-1], loc[-1]
    items = list(get_in(doc, container_loc))
    del items[position]  # type: ignore[arg-type]
    return set_in(doc, container_loc, items)


# -- for the route table and OpenAPI ----------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One nested route template: ``comments/{comments_index}/author``."""

    template: str
    endpoint: str
    field: NestedField
    parameters: tuple[tuple[str, str], ...]  # (name, "index" | "id" | "ref_id") of each key

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS[self.endpoint]


def routes(root: NestedModel) -> list[Route]:
    """Every nested route template of a tree; a recursive model is listed once."""
    return list(_routes(root, "", (), (root.model,)))


def _routes(node: NestedModel, prefix: str, params: tuple[tuple[str, str], ...],
            visiting: tuple[type, ...]) -> Iterator[Route]:
    for name, nested in node.fields.items():
        base = f"{prefix}{name}"
        if nested.kind == EMBEDDED:
            yield Route(base, "embedded", nested, params)
            if nested.node is not None and nested.model not in visiting:
                yield from _routes(nested.node, f"{base}/", params, (*visiting, nested.model))
        elif nested.kind == REF:
            yield Route(base, "ref", nested, params)
        else:
            kind = "ref_id" if nested.kind == REF_LIST else ("id" if nested.key else "index")
            param = (_unique(f"{name}_{'id' if kind != 'index' else 'index'}", params), kind)
            keyed = (*params, param)
            yield Route(base, "list" if nested.kind == LIST else "ref_list", nested, params)
            element = f"{base}/{{{param[0]}}}"
            yield Route(element, "element" if nested.kind == LIST else "ref_element", nested, keyed)
            if nested.kind == LIST and nested.node is not None and nested.model not in visiting:
                yield from _routes(nested.node, f"{element}/", keyed, (*visiting, nested.model))


def _unique(name: str, params: tuple[tuple[str, str], ...]) -> str:
    """A parameter name not yet used on the path (``replies_index``, ``replies_index2``...)."""
    taken = {p[0] for p in params}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}{n}", n + 1
    return candidate


__all__ = [
    "EMBEDDED", "LIST", "METHODS", "REF", "REF_LIST", "NestedField", "NestedModel", "NestedPath",
    "PathNotFound", "Ref", "Route", "Step", "find_position", "get_in", "inspect_all", "inspect_nested",
    "locate", "parse_path", "remove_in", "routes", "set_in",
]
