"""Nested routes over HTTP: ``/{name}/{id}/{field}[/{key}[/{field}...]]``.

One Tornado rule per resource routes here; the rest of the URL path is checked against
the resource's nested tree (an unknown path is a 404 like an unknown route, a method the
path does not take a 405), then the request is handed to the resource's
:class:`~bzzlite.documents.nested.NestedDocuments`, which authorizes, sends the ``pre_*``
signal with the inner model as sender and makes one conditional write of the parent; this
handler parses the body and renders the answer.

Through a reference (``/team/{id}/users/{uid}/addresses``, ``/student/{id}/person/{pid}``
with GET, PUT or PATCH), the parent is only read, to check that it holds that reference; the
rest of the request is then the referenced resource's own, as if sent to
``/user/{uid}/addresses`` or ``/person/{pid}``: its auth rules, its signals, its ETags.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

from ..documents import Documents, NestedDocuments, NestedPath
from ..errors import HTTPError, QueryError
from ..models.nested import REF_LIST, NestedModel, route_methods, routes, served_methods
from ..query import parse_arguments
from .base import _AnyMethod
from .resource import ItemHandler, ResourceHandler, etag

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models.resource import ResourceSpec
    from ..runtime import Runtime
    from ..stores.base import Record

_LIST_PARAMETERS = ("page", "per_page")


def route_rows(spec: ResourceSpec, tree: NestedModel) -> list[tuple[str, str, str]]:
    """(methods, path template, handler) of every nested route, for ``bzzlite routes``; none
    inside a write-only field (they answer 404), GET only inside a read-only one (as served)."""
    rows = [(",".join(route_methods(spec, r)), f"{spec.path}/{{id}}/{r.template}", NestedHandler.__name__)
            for r in routes(tree, spec.schema.write_only)]
    return [row for row in rows if row[0]]


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
        self._nested: NestedDocuments | None = None
        self._kept: tuple[str | None, list[str] | None, Record | None] = (None, None, None)

    @property
    def nested(self) -> NestedDocuments:
        """The resource's documents seen through its nested tree, bound to this request."""
        if self._nested is None:
            self._nested = NestedDocuments(self.docs, self.tree)
        return self._nested

    @property
    def parent_id(self) -> str | None:
        return self._nested.parent_id if self._nested is not None else self._kept[0]

    @property
    def nested_path(self) -> list[str] | None:
        return self._nested.nested_path if self._nested is not None else self._kept[1]

    @property
    def parent(self) -> BaseModel | None:
        """The parent document as a model instance (None before it was read)."""
        record = self._nested.parent_record if self._nested is not None else self._kept[2]
        return None if record is None else Documents(self.runtime, self.spec).instance(record)

    def _let_go(self) -> None:
        """Keep what receivers may still read, and let the operations go (they hold this handler)."""
        if self._nested is not None:
            self._kept = (self._nested.parent_id, self._nested.nested_path, self._nested.parent_record)
            self._nested = None

    def on_finish(self) -> None:
        self._let_go()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._let_go()
        super().on_connection_close()

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
        path = self.nested.parse(rest.removesuffix("/").split("/"))
        self.target = path
        allowed = self._allowed(path)
        if (self.request.method if self.request.method != "HEAD" else "GET") not in allowed:
            raise HTTPError(405, f"{self.request.method} is not allowed here; use {', '.join(allowed) or 'nothing'}.")
        return path

    def _path(self) -> NestedPath:
        assert self.target is not None  # resolved in prepare()
        return self.target

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
        if not (path.through or names_document) or path.referenced is None:
            return False
        target, tree, ref_id = await self.nested.follow(id_, path)
        self.spec, self.model, self.tree, self.target = target, target.model, tree, path.inner
        self.docs = Documents(self.runtime, target, self)  # from here on, the referenced resource's rules
        self._let_go()
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

    def _url(self, id_: str, segments: list[str]) -> str:
        return f"{self.location(id_)}/" + "/".join(quote(s, safe="") for s in segments)

    def form_model(self) -> type[BaseModel] | None:
        """Form fields are data of the inner model the path names."""
        return self.target.model if self.target is not None else self.model

    # -- GET ----------------------------------------------------------------------------

    async def get(self, id_: str, rest: str) -> None:
        if await self._follow(id_):
            return
        path = self._path()
        await self.authorize("get")
        if path.endpoint in ("list", "ref_list"):
            await self._get_list(id_, path)
            return
        found = await self.nested.get(id_, path)
        if found.target is not None and found.target_record is not None:  # a reference: the referenced document
            self.write_json(self.docs.public(found.target_record, found.target))
            return
        if self.not_modified(etag(found.record)):
            return
        self.set_header("ETag", etag(found.record))
        self.write_json(found.value)

    async def _get_list(self, id_: str, path: NestedPath) -> None:
        spec = self.spec
        query_args = self.query_arguments()
        for parameter in query_args:
            if parameter not in _LIST_PARAMETERS:
                raise QueryError(parameter, "a nested list takes only page and per_page", "query_unknown_field")
        parsed = parse_arguments(spec.schema, query_args, per_page=spec.per_page)
        window = await self.nested.list(id_, path, parsed["page"], parsed["per_page"])
        nested = path.last.field
        if nested.kind == REF_LIST:
            assert nested.target is not None
            items: list[Any] = [self.docs.public(r, nested.target) for r in cast("list[Record]", window.items)]
        else:
            items = window.items
        self._link_header(window.page, window.per_page, window.total)
        if nested.kind != REF_LIST:  # a page of references also depends on the referenced documents
            if self.not_modified(etag(window.record)):
                return
            self.set_header("ETag", etag(window.record))
        self.write_json({"items": items, "total": window.total, "page": window.page, "per_page": window.per_page})

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
        written, key, target_record = await self.nested.create(id_, path, data, if_match=self.if_match)
        path = written.path or path
        self.set_header("Location", self._url(written.id, [*path.segments, key]))
        if target_record is not None:  # a reference associated (200 when it already was)
            target = path.last.field.target
            assert target is not None
            self.write_json(self.docs.public(target_record, target), 201 if written.doc is not written.before else 200)
            return
        self.set_header("X-Created-Id", key)
        self.set_header("ETag", etag(written.record))
        self.write_json(written.value, 201)

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
        written, target_record = await self.nested.update(id_, path, data, partial=partial, if_match=self.if_match)
        if target_record is not None:  # a reference changed: the document it now names
            target = (written.path or path).last.field.target
            assert target is not None
            self.write_json(self.docs.public(target_record, target))
            return
        self.set_header("ETag", etag(written.record))
        self.write_json(written.value)

    # -- DELETE -----------------------------------------------------------------------------

    async def delete(self, id_: str, rest: str) -> None:
        if await self._follow(id_):
            return
        await self.nested.delete(id_, self._path(), if_match=self.if_match)
        self.set_status(204)
        self.finish()
