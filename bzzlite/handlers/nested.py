"""Nested routes over HTTP: ``/{name}/{id}/{field}[/{key}[/{field}...]]``.

One Tornado rule per resource routes here; the rest of the URL path is checked against
the resource's nested tree (:mod:`bzzlite.models.nested`, built once with the app). Each request:
check the path (an unknown one is a 404 like an unknown route), auth, the ``pre_*`` signal
with the inner model as sender, then the store.

Every change is a read-modify-write of the parent document ended by ONE conditional
write, ``store.replace(..., expected_version=<the version read>)``, after the whole
parent validated with its model. A concurrent writer makes that write fail; the change
is then redone on the fresh document (or answered 412 when the client sent ``If-Match``),
so no change is lost and no constraint is skipped, on every store alike.

Through a reference (``/team/{id}/users/{uid}/addresses``, ``/student/{id}/person/{pid}``
with GET, PUT or PATCH), the parent is only read, to check that it holds that reference; the
rest of the request is then the referenced resource's own, as if sent to
``/user/{uid}/addresses`` or ``/person/{pid}``: its auth rules, its signals, its ETags.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ValidationError

from ..documents import conversion as documents
from ..documents import references
from ..models.ids import is_valid_id, new_id
from ..documents.operations import Documents
from ..errors import HTTPError, NotFound, QueryError, ValidationFailed
from ..models.nested import (
    REF_LIST,
    NestedField,
    NestedModel,
    NestedPath,
    PathNotFound,
    get_in,
    locate,
    parse_path,
    remove_in,
    routes,
    set_in,
)
from ..query import build_query, parse_arguments
from ..signals import send, send_after_commit
from ..stores.base import Record, Store
from .base import _AnyMethod
from .resource import ItemHandler, ResourceHandler, etag

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..registry import ResourceSpec
    from ..runtime import Runtime

#: Read-modify-write attempts when concurrent writers keep winning (no If-Match sent).
#: Appends to one hot list are the expected case, so this is generous and backs off.
_LIST_PARAMETERS = ("page", "per_page")


def route_rows(spec: ResourceSpec, tree: NestedModel) -> list[tuple[str, str, str]]:
    """(methods, path template, handler) of every nested route, for ``bzzlite routes``."""
    rows = [(",".join(served_methods(spec, r.methods)), f"{spec.path}/{{id}}/{r.template}", NestedHandler.__name__)
            for r in routes(tree)]
    return [row for row in rows if row[0]]


def served_methods(spec: ResourceSpec, methods: tuple[str, ...]) -> tuple[str, ...]:
    """A nested path's methods that its resource serves: reading needs GET, and every write
    inside a document is a change of it, which needs PATCH (``@resource(methods=...)``)."""
    return tuple(m for m in methods if m in spec.methods if m == "GET" or "PATCH" in spec.methods)


def _instance(model: type[BaseModel], value: Any) -> BaseModel:
    """An inner model instance for receivers (as stored when it no longer validates)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return model.model_construct(**value) if isinstance(value, dict) else model.model_construct()


class NestedHandler(ResourceHandler):
    """Embedded models, lists of them and references inside one resource's documents.

    Receivers can read ``handler.parent_id``, ``handler.nested_path`` (the path's segments)
    and ``handler.parent`` (the parent document as a model instance: after the change
    for writes).
    """

    ALLOWED = ("GET", "POST", "PUT", "PATCH", "DELETE")
    # Any method reaches prepare(): an unknown path is a 404 whatever the method, as for
    # unknown routes; a known path answers 405 (with Allow) to the methods it does not take.
    SUPPORTED_METHODS = _AnyMethod()  # type: ignore[assignment]

    def initialize(self, runtime: Runtime, spec: ResourceSpec, tree: NestedModel, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime, spec)
        self.tree = tree
        self.target: NestedPath | None = None
        self.parent_id: str | None = None
        self.nested_path: list[str] | None = None
        self._parent_record: Record | None = None

    @property
    def parent(self) -> BaseModel | None:
        """The parent document as a model instance (None before it was read)."""
        if self._parent_record is None:
            return None
        return documents.instance(self.spec, self._parent_record)

    def allowed_methods(self) -> tuple[str, ...]:
        if self.target is not None:
            return self._allowed(self.target)
        return served_methods(self.spec, self.ALLOWED)

    def _allowed(self, path: NestedPath) -> tuple[str, ...]:
        """The methods of a nested path: the resource's (``methods=``), GET only inside a
        read-only field; a path through a reference answers as the referenced resource."""
        if path.through:
            return path.methods
        methods = served_methods(self.spec, path.methods)
        if path.segments and path.segments[0] in self.spec.schema.read_only:
            methods = tuple(m for m in methods if m == "GET")
        return methods

    # -- the path --------------------------------------------------------------------

    def prepare(self) -> Any:
        self._resolve(self.path_args[1])
        return super().prepare()

    def _resolve(self, rest: str) -> NestedPath:
        """Check the path against the model (404) and the method against the path (405)."""
        segments = rest.removesuffix("/").split("/")
        schema = self.spec.schema
        if segments[0] in schema.write_only:  # hidden from clients: as if it did not exist
            raise HTTPError(404, "No such nested path.")
        try:
            path = parse_path(self.tree, segments)
        except PathNotFound as exc:
            raise HTTPError(404, exc.message) from None
        self.target = path
        allowed = self._allowed(path)
        if (self.request.method if self.request.method != "HEAD" else "GET") not in allowed:
            raise HTTPError(405, f"{self.request.method} is not allowed here; use {', '.join(allowed) or 'nothing'}.")
        return path

    def _path(self) -> NestedPath:
        assert self.target is not None  # resolved in prepare()
        return self.target

    def _arguments(self, arguments: dict[str, Any], path: NestedPath) -> tuple[str, NestedPath]:
        """The id and path after the ``pre_*`` receivers, validated again."""
        id_ = self.checked_id(arguments.get("id"))
        segments = arguments.get("path")
        if segments != path.segments:
            if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
                raise HTTPError(404, "No such nested path.")
            try:
                changed = parse_path(self.tree, segments)
            except PathNotFound as exc:
                raise HTTPError(404, exc.message) from None
            if changed.endpoint != path.endpoint:  # the operation was chosen for the first path
                raise HTTPError(404, "No such nested path.")
            path = self.target = changed
        self.parent_id, self.nested_path = id_, path.segments
        return id_, path

    async def _follow(self, id_: str) -> bool:
        """Serve a path through a reference as the referenced resource serves it.

        Returns False when the path is this document's own to serve. Otherwise the parent is
        read (under its own read rule) only to check that it holds the reference, and the
        request continues as the referenced resource's: ``/team/{id}/users/{uid}/addresses``
        as ``/user/{uid}/addresses``, a GET, PUT or PATCH of ``/student/{id}/person/{pid}`` as
        one of ``/person/{pid}`` (DELETE stays here: it dissociates).
        """
        path, method = self._path(), self.request.method or ""
        names_document = path.endpoint in ("ref_document", "ref_element") and method in ("GET", "PUT", "PATCH")
        referenced = path.referenced
        if not (path.through or names_document) or referenced is None:
            return False
        target, tree, ref_id = referenced
        await self.authorize("get")  # following the parent's reference reads the parent
        record = await self.read(id_)  # the parent's scope applies
        self._locate(path, self.spec.schema.fill_defaults(record.doc))  # 404 unless it holds that reference
        self.spec, self.model, self.tree, self.target = target, target.model, tree, path.inner
        self.docs = Documents(self.runtime, target, self)  # from here on, the referenced resource's rules
        allowed = target.methods if path.inner is None else served_methods(target, path.inner.methods)
        if method not in allowed:
            raise HTTPError(405, f"{method} is not allowed here; use {', '.join(allowed) or 'nothing'}.")
        if path.inner is None and method == "GET":  # the referenced document itself, as at its own URL
            await ItemHandler.get(cast(Any, self), ref_id)
        elif path.inner is None:
            await ItemHandler._update(cast(Any, self), ref_id, partial=method == "PATCH")
        else:  # a path inside it: this handler again, now on the referenced resource
            await getattr(self, method.lower())(ref_id, "")
        return True

    def _locate(self, path: NestedPath, doc: dict[str, Any]) -> tuple[Any, Any]:
        try:
            return locate(path, doc)
        except PathNotFound as exc:
            raise HTTPError(404, exc.message) from None

    def _url(self, id_: str, segments: list[str]) -> str:
        return f"{self.location(id_)}/" + "/".join(quote(s, safe="") for s in segments)

    def form_model(self) -> type[BaseModel] | None:
        """Form fields are data of the inner model the path names."""
        return self.target.model if self.target is not None else self.model

    # -- preconditions and the conditional write -------------------------------------

    async def _write(
        self, id_: str, path: NestedPath, change: Callable[[dict[str, Any], Any, Any], Any]
    ) -> tuple[Record, dict[str, Any], dict[str, Any], Any]:
        """Apply ``change`` to the parent and store it with one conditional write.

        ``change(doc, loc, value)`` gets the parent document (defaults filled), where the path
        is in it and what is there; it returns ``(changed document, location of the result)``,
        or None when there is nothing to write. Returns (record, document before, document
        after, location of the result).
        Raises:
            HTTPError: 404 (the path names nothing in the document), 412 (``If-Match`` does
                not hold), 422 (the parent does not validate after the change).
        """

        async def write(store: Store, current: Record) -> tuple[Record, dict[str, Any], dict[str, Any], Any]:
            before = self.spec.schema.fill_defaults(current.doc)
            loc, value = self._locate(path, before)
            outcome = change(before, loc, value)
            if outcome is None:
                return current, before, before, loc
            changed, result_loc = outcome
            doc = documents.validate(self.spec, changed)
            await self.docs.check_references(doc, before)  # a reference it now holds names a document
            return await store.replace(self.spec, current.id, doc, current.version), before, doc, result_loc

        record, before, doc, loc = await self.conditional_write(id_, write)
        self._parent_record = record
        return record, before, doc, loc

    # -- references ---------------------------------------------------------------------

    async def _authorize_target(self, target: ResourceSpec, operation: str) -> None:
        """Reading a referenced document also needs what its own resource requires."""
        if self.runtime.auth is not None and target is not self.spec:
            await self.runtime.auth.authorize(self, target, operation)

    async def _referenced(self, nested: NestedField, ref_id: Any) -> Record:
        assert nested.target is not None
        await self._authorize_target(nested.target, "get")
        name = nested.target.model.__name__
        if not (isinstance(ref_id, str) and is_valid_id(ref_id)):
            raise HTTPError(404, f"No {name} with that id.")
        try:
            return await Documents(self.runtime, nested.target, self).read(ref_id)  # its own scope
        except NotFound:
            raise HTTPError(404, f"No {name} with id {ref_id}.") from None

    async def _referenced_many(self, target: ResourceSpec, ids: list[Any]) -> list[Record]:
        """The referenced documents in the order of ``ids``; ids of deleted documents are skipped."""
        wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str) and is_valid_id(i)))
        if not wanted:
            return []
        found = await references.existing(await self.store(), target, wanted)
        by_id = {r.id: r for r in Documents(self.runtime, target, self).visible(found)}
        return [by_id[i] for i in ids if i in by_id]

    async def _ref_instance(self, target: ResourceSpec, ref_id: str) -> BaseModel:
        """The referenced document for receivers, or a stub carrying only its id if it is gone."""
        try:
            record = await (await self.store()).get(target, ref_id)
        except NotFound:
            record = Record(ref_id, 0, {})
        return documents.instance(target, record)

    @staticmethod
    def _reference_body(data: Any) -> str:
        """A body naming a document to reference: ``{"id": "<24 hex>"}``."""
        body = documents.check_object(data)
        errors = [{"loc": [k], "msg": "Send only the id of the document to reference; change the document "
                   "itself at its own URL", "type": "extra_forbidden"} for k in body if k != "id"]
        ref_id = body.get("id")
        if not (isinstance(ref_id, str) and is_valid_id(ref_id.lower())):
            errors.append({"loc": ["id"], "msg": "Input should be the id of a document (24 hexadecimal characters)",
                           "type": "reference_id"})
        if errors:
            raise ValidationFailed(errors)
        return str(ref_id).lower()

    # -- GET ----------------------------------------------------------------------------

    async def get(self, id_: str, rest: str) -> None:
        if await self._follow(id_):
            return
        path = self._path()
        await self.authorize("get")
        if path.endpoint in ("list", "ref_list"):
            await self._get_list(id_, path)
            return
        signals = self.runtime.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments}
        await send(signals.pre_get_instance, path.model, arguments=arguments, handler=self)
        id_, path = self._arguments(arguments, path)
        record = await self.read(id_)
        self._parent_record = record
        _, value = self._locate(path, self.spec.schema.fill_defaults(record.doc))
        if value is None:
            raise HTTPError(404, f"{'/'.join(path.segments)!r} is not set.")
        nested = path.last.field
        if nested.target is not None:  # a reference: the referenced document, from its own resource
            target_record = await self._referenced(nested, value)
            body = documents.as_json(nested.target, target_record)
            if signals.post_get_instance.receivers:
                await send_after_commit(signals.post_get_instance, path.model,
                                        instance=documents.instance(nested.target, target_record), handler=self)
            self.write_json(body)
            return
        if signals.post_get_instance.receivers:
            await send_after_commit(signals.post_get_instance, path.model,
                                    instance=_instance(path.model, value), handler=self)
        if self.not_modified(etag(record)):
            return
        self.set_header("ETag", etag(record))
        self.write_json(value)

    async def _get_list(self, id_: str, path: NestedPath) -> None:
        spec, signals = self.spec, self.runtime.signals
        query_args = self.query_arguments()
        for parameter in query_args:
            if parameter not in _LIST_PARAMETERS:
                raise QueryError(parameter, "a nested list takes only page and per_page", "query_unknown_field")
        parsed = parse_arguments(spec.schema, query_args, per_page=spec.per_page)
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "page": parsed["page"],
                                     "per_page": parsed["per_page"]}
        await send(signals.pre_get_list, path.model, arguments=arguments, handler=self)
        id_, path = self._arguments(arguments, path)
        query = build_query(spec.schema, {"page": arguments.get("page", 1),
                                          "per_page": arguments.get("per_page", spec.per_page)},
                            max_per_page=spec.max_per_page)
        record = await self.read(id_)
        self._parent_record = record
        _, value = self._locate(path, spec.schema.fill_defaults(record.doc))
        items = value if isinstance(value, list) else []
        window = items[query.offset: query.offset + query.per_page]
        nested = path.last.field
        if nested.kind == REF_LIST:
            assert nested.target is not None
            await self._authorize_target(nested.target, "list")
            records = await self._referenced_many(nested.target, window)
            body_items: list[Any] = [documents.as_json(nested.target, r) for r in records]
            if signals.post_get_list.receivers:
                instances = [documents.instance(nested.target, r) for r in records]
                await send_after_commit(signals.post_get_list, path.model, items=instances, handler=self)
        else:
            body_items = window
            if signals.post_get_list.receivers:
                instances = [_instance(path.model, v) for v in window]
                await send_after_commit(signals.post_get_list, path.model, items=instances, handler=self)
        self._link_header(query.page, query.per_page, len(items))
        if nested.kind != REF_LIST:  # a page of references also depends on the referenced documents
            if self.not_modified(etag(record)):
                return
            self.set_header("ETag", etag(record))
        self.write_json({"items": body_items, "total": len(items), "page": query.page, "per_page": query.per_page})

    def _link_header(self, page: int, per_page: int, total: int) -> None:
        last = max(1, math.ceil(total / per_page))

        def url(number: int) -> str:
            return f"{self.request.path}?{urlencode({'page': number, 'per_page': per_page})}"

        links = [("first", url(1))]
        if page > 1:
            links.append(("prev", url(min(page - 1, last))))
        if page < last:
            links.append(("next", url(page + 1)))
        links.append(("last", url(last)))
        self.set_header("Link", ", ".join(f'<{u}>; rel="{rel}"' for rel, u in links))

    # -- POST: append to a list ---------------------------------------------------------

    async def post(self, id_: str, rest: str) -> None:
        if await self._follow(id_):
            return
        path = self._path()
        data = self.parse_body()
        await self.authorize("update")
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "data": data}
        await send(self.runtime.signals.pre_create_instance, path.model, arguments=arguments, handler=self)
        id_, path = self._arguments(arguments, path)
        if path.endpoint == "ref_list":
            await self._associate(id_, path, arguments.get("data"))
        else:
            await self._append(id_, path, arguments.get("data"))

    async def _append(self, id_: str, path: NestedPath, data: Any) -> None:
        nested, signals = path.last.field, self.runtime.signals
        element = self._element_body(nested, documents.check_object(data), creating=True)
        key = nested.key

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            items = list(value) if isinstance(value, list) else []
            new_key = element.get(key) if key is not None else None
            if new_key is not None and any(isinstance(i, dict) and str(i.get(key)) == str(new_key) for i in items):
                raise HTTPError(409, f"{nested.name!r} already has an element with id {new_key!r}.",
                                errors=[{"loc": [*loc, len(items), key], "msg": "value already taken",
                                         "type": "unique"}])
            return set_in(doc, loc, [*items, element]), (*loc, len(items))

        record, _, doc, loc = await self._write(id_, path, change)
        value = get_in(doc, loc)
        element_key = str(value[key]) if key is not None and isinstance(value, dict) and value.get(key) is not None \
            else str(loc[-1])
        if signals.post_create_instance.receivers:
            await send_after_commit(signals.post_create_instance, path.model,
                                    instance=_instance(path.model, value), handler=self)
        self.set_header("Location", self._url(id_, [*path.segments, element_key]))
        self.set_header("X-Created-Id", element_key)
        self.set_header("ETag", etag(record))
        self.write_json(value, 201)

    def _element_body(self, nested: NestedField, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """An embedded model's body: its ``id`` is the server's unless the element model keys
        by it and this creates the element (a missing text id is assigned then)."""
        if nested.key is None or not creating:
            return {k: v for k, v in body.items() if k != "id"} if "id" in body else body
        if body.get(nested.key) is None and nested.key_is_text:
            return {**body, nested.key: new_id()}
        return body

    async def _associate(self, id_: str, path: NestedPath, data: Any) -> None:
        nested, signals = path.last.field, self.runtime.signals
        assert nested.target is not None
        ref_id = self._reference_body(data)
        target_record = await self._referenced(nested, ref_id)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            items = list(value) if isinstance(value, list) else []
            if ref_id in items:
                return None  # already associated: nothing to write
            return set_in(doc, loc, [*items, ref_id]), (*loc, len(items))

        _, before, doc, _ = await self._write(id_, path, change)
        created = doc is not before
        if created and signals.post_create_instance.receivers:
            await send_after_commit(signals.post_create_instance, path.model,
                                    instance=documents.instance(nested.target, target_record), handler=self)
        self.set_header("Location", self._url(id_, [*path.segments, ref_id]))
        self.write_json(documents.as_json(nested.target, target_record), 201 if created else 200)

    # -- PUT / PATCH ----------------------------------------------------------------------

    async def put(self, id_: str, rest: str) -> None:
        await self._update(id_, rest, partial=False)

    async def patch(self, id_: str, rest: str) -> None:
        await self._update(id_, rest, partial=True)

    async def _update(self, id_: str, rest: str, *, partial: bool) -> None:
        if await self._follow(id_):
            return
        path = self._path()
        data = self.parse_body()
        await self.authorize("update")
        signals = self.runtime.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments, "data": data, "partial": partial}
        await send(signals.pre_update_instance, path.model, arguments=arguments, handler=self)
        id_, path = self._arguments(arguments, path)
        data, partial = arguments.get("data"), bool(arguments.get("partial"))
        if path.endpoint == "ref":
            if partial:
                raise HTTPError(405, "PATCH is not allowed on a reference; PUT {\"id\": ...} to change it.")
            await self._set_reference(id_, path, data)
            return
        nested = path.last.field
        body = self._element_body(nested, documents.check_object(data), creating=False)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            old = value if isinstance(value, dict) else None
            new = documents.merge_patch(old or {}, body) if partial else dict(body)
            if nested.key is not None and old is not None and nested.key in old:
                new[nested.key] = old[nested.key]  # the key is read-only, like a document's id
            return set_in(doc, loc, new), loc

        record, before, doc, loc = await self._write(id_, path, change)
        old, new = get_in(before, loc), get_in(doc, loc)
        if signals.post_update_instance.receivers:
            changes = documents.updated_fields(old if isinstance(old, dict) else {}, new)
            await send_after_commit(signals.post_update_instance, path.model,
                                    instance=_instance(path.model, new),
                                    updated_fields={f"{path.dotted}.{k}": v for k, v in changes.items()},
                                    handler=self)
        self.set_header("ETag", etag(record))
        self.write_json(new)

    async def _set_reference(self, id_: str, path: NestedPath, data: Any) -> None:
        nested, signals = path.last.field, self.runtime.signals
        assert nested.target is not None
        ref_id = self._reference_body(data)
        target_record = await self._referenced(nested, ref_id)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            return set_in(doc, loc, ref_id), loc

        _, before, doc, loc = await self._write(id_, path, change)
        old, new = get_in(before, loc), get_in(doc, loc)
        if signals.post_update_instance.receivers:
            changes = {path.dotted: {"from": old, "to": new}} if old != new else {}
            await send_after_commit(signals.post_update_instance, path.model,
                                    instance=documents.instance(nested.target, target_record),
                                    updated_fields=changes, handler=self)
        self.write_json(documents.as_json(nested.target, target_record))

    # -- DELETE -----------------------------------------------------------------------------

    async def delete(self, id_: str, rest: str) -> None:
        if await self._follow(id_):
            return
        path = self._path()
        await self.authorize("update")
        signals = self.runtime.signals
        arguments: dict[str, Any] = {"id": id_, "path": path.segments}
        await send(signals.pre_delete_instance, path.model, arguments=arguments, handler=self)
        id_, path = self._arguments(arguments, path)
        nested, endpoint = path.last.field, path.endpoint
        label = "/".join(path.segments)

        def change(doc: dict[str, Any], loc: Any, value: Any) -> Any:
            if endpoint in ("element", "ref_element"):
                return remove_in(doc, loc), loc  # a list element: removed (a reference: dissociated)
            if value is None:
                raise HTTPError(404, f"{label!r} is not set.")
            if not nested.nullable:
                raise ValidationFailed([{
                    "loc": list(loc),
                    "msg": f"{nested.name!r} is required: it cannot be removed, only replaced (PUT)",
                    "type": "missing",
                }])
            return set_in(doc, loc, None), loc

        _, before, _, loc = await self._write(id_, path, change)
        removed = get_in(before, loc)
        if signals.post_delete_instance.receivers:
            if nested.target is not None:
                instance = await self._ref_instance(nested.target, removed)
            else:
                instance = _instance(path.model, removed)
            await send_after_commit(signals.post_delete_instance, path.model, instance=instance, handler=self)
        self.set_status(204)
        self.finish()
