"""Nested routes (bzz's "inner properties"): which part of a document a URL path names.

For a field holding an embedded model, a list of embedded models or a reference,
``/{name}/{id}/{field}`` and deeper paths (``/team/{id}/members/{key}/address``) address
that part of the parent document. Through a reference, ``/{field}/{ref_id}`` names the
referenced document itself and what follows it is a path inside that document
(``/team/{id}/users/{uid}/addresses``), served under the referenced resource's own rules.
This module is pure (no Tornado, no store): :func:`inspect_nested` learns once per resource,
when the app is built, which fields can be walked into (a :class:`NestedModel` tree), which
references point where (:func:`referrers_of`) and which nested routes there are (:func:`routes`).
A URL path is checked against the tree and located in a document by :mod:`bzzlite.documents.paths`.

A list's elements are keyed by their own ``id`` field when the element model declares
one, else by their position. A reference is a field declared ``Annotated[str, Ref(...)]``
(or an ODMantic ``Reference()``): it stores the referenced document's id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import CoreSchema, core_schema

from ..errors import ConfigurationError
from . import odmantic
from .ids import is_valid_id
from .schema import is_model, unwrap

if TYPE_CHECKING:
    from .resource import ResourceSpec

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


# -- who refers to whom ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Referrer:
    """A reference field of ``spec`` that points at another resource, at any depth.

    ``path`` is where the reference is, with ``[]`` after each list on the way
    (``lines[].product``: the ``product`` of every element of ``lines``); ``field`` is the
    top-level field that holds it; ``many``: the reference is a list of ids.
    """

    spec: ResourceSpec
    field: str
    many: bool
    on_delete: str
    path: str = ""

    @property
    def label(self) -> str:
        """The path as a person reads it: ``lines.product``."""
        return (self.path or self.field).replace("[]", "")


def references_in(node: NestedModel, prefix: str = "", seen: tuple[type, ...] = ()) -> Iterator[tuple[str, NestedField]]:
    """(path, field) of every reference field of a tree, at any depth (a model nested in itself
    is walked once)."""
    for name, nested in node.fields.items():
        path = f"{prefix}{name}"
        if nested.kind in (REF, REF_LIST):
            yield path, nested
        elif nested.node is not None and nested.model not in seen:
            step = "[]." if nested.kind == LIST else "."
            yield from references_in(nested.node, path + step, (*seen, nested.model))


def referrers_of(target: ResourceSpec, trees: Mapping[str, NestedModel],
                 specs: Iterable[ResourceSpec]) -> list[Referrer]:
    """The reference fields of every resource that point at ``target``, inside embedded models
    and lists too."""
    found = []
    for spec in specs:
        tree = trees[spec.path]
        for path, nested in references_in(tree, seen=(tree.model,)):
            if nested.target is target:
                found.append(Referrer(spec, path.split("[]")[0].split(".")[0], nested.kind == REF_LIST,
                                      nested.on_delete, path))
    return found


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


def served_methods(spec: ResourceSpec, methods: tuple[str, ...]) -> tuple[str, ...]:
    """A nested path's methods that its resource serves: reading needs GET, and every write
    inside a document is a change of it, which needs PATCH (``@resource(methods=...)``)."""
    return tuple(m for m in methods if m in spec.methods if m == "GET" or "PATCH" in spec.methods)


def route_methods(spec: ResourceSpec, route: Route) -> tuple[str, ...]:
    """The methods a nested route serves: its resource's (:func:`served_methods`), GET only
    inside a read-only field."""
    methods = served_methods(spec, route.methods)
    if route.template.split("/", 1)[0] in spec.schema.read_only:
        methods = tuple(m for m in methods if m == "GET")
    return methods


def routes(root: NestedModel, hidden: Collection[str] = ()) -> list[Route]:
    """Every nested route template of a tree; a recursive model is listed once.

    Args:
        hidden: top-level fields whose routes are left out: a resource's write-only fields
            (``spec.schema.write_only``), whose nested paths answer 404 as if absent.
    """
    fields = {name: nested for name, nested in root.fields.items() if name not in hidden} if hidden else root.fields
    return list(_routes(root, "", (), (root.model,), fields))


def _routes(node: NestedModel, prefix: str, params: tuple[tuple[str, str], ...],
            visiting: tuple[type, ...], fields: Mapping[str, NestedField] | None = None) -> Iterator[Route]:
    for name, nested in (node.fields if fields is None else fields).items():
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
    "EMBEDDED", "LIST", "METHODS", "REF", "REF_LIST", "NestedField", "NestedModel", "Ref", "Referrer", "Route",
    "inspect_all", "inspect_nested", "referrers_of", "route_methods", "routes", "served_methods",
]
