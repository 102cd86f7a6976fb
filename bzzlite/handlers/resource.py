"""CRUD over HTTP for one resource: the collection and item handlers.

Each operation parses the request, hands it to the resource's
:class:`~bzzlite.documents.Documents` bound to this request (auth and scope, the ``pre_*``
signal, validation, one store call, the ``post_*`` signal) and renders what it returns.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from ..documents import Documents, entity_tags, etag
from ..errors import HTTPError
from ..http.observability import header
from ..models.resource import RESOURCE_METHODS
from ..query import encode_cursor, parse_arguments, project, sort_values
from .base import BaseHandler, link_header
from .sse import since_from, wants_event_stream
from .sse import stream as feed_stream

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models.resource import ResourceSpec
    from ..runtime import Runtime
    from ..stores.base import Record, Store

T = TypeVar("T")


class ResourceHandler(BaseHandler):
    """What the collection and item handlers share: the resource's documents, bound to this
    request (:class:`~bzzlite.documents.Documents` makes every decision; handlers parse and render)."""

    spec: ResourceSpec

    def initialize(self, runtime: Runtime, spec: ResourceSpec, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.spec = spec
        self.model = spec.model
        self._docs: Documents[Any] | None = None

    @property
    def docs(self) -> Documents[Any]:
        """The resource's documents bound to this request (made on first use, let go when the
        request ends: holding the handler, it would otherwise make a cycle per request)."""
        if self._docs is None:
            self._docs = Documents(self.runtime, self.spec, self)
        return self._docs

    @docs.setter
    def docs(self, value: Documents[Any]) -> None:
        self._docs = value

    def on_finish(self) -> None:
        self._docs = None
        super().on_finish()

    def on_connection_close(self) -> None:
        self._docs = None
        super().on_connection_close()

    async def authorize(self, operation: str) -> None:
        """Ask the app's auth policy (if any) whether this request may do ``operation``."""
        await self.docs.authorize(operation)

    def allowed_methods(self) -> tuple[str, ...]:
        """The methods of this route that the resource serves (``@resource(methods=...)``)."""
        return tuple(m for m in self.ALLOWED if m in self.spec.methods)

    def prepare(self) -> Any:
        method = self.request.method
        if method in RESOURCE_METHODS and method not in self.allowed_methods():
            raise HTTPError(405, f"{method} is not served here; use {', '.join(self.allowed_methods()) or 'nothing'}.")
        return super().prepare()

    async def store(self) -> Store:
        return await self.runtime.ready_store()

    def write_document(self, record: Record, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.set_header("ETag", etag(record))
        self.write_json(body if body is not None else self.docs.public(record), status)

    def location(self, id_: str) -> str:
        return f"{self.runtime.settings.root_path}{self.spec.path}/{id_}"  # root_path: behind a proxy

    @property
    def if_match(self) -> str | None:
        return header(self.request, "If-Match")

    def not_modified(self, tag: str) -> bool:
        """Answer 304 (and return True) when ``If-None-Match`` names ``tag`` (weakly) or ``*``."""
        value = header(self.request, "If-None-Match")
        if value is None:
            return False
        wanted = {t.removeprefix("W/") for t in entity_tags(value)}
        if "*" in wanted or tag in wanted:
            self.set_header("ETag", tag)
            self.set_status(304)
            self.finish()
            return True
        return False

    async def read(self, id_: Any) -> Record:
        """The document ``id_`` as this request may reach it (scope-checked), or 404."""
        return await self.docs.read(id_)

    async def conditional_write(self, id_: str, write: Callable[[Store, Record], Awaitable[T]]) -> T:
        """One conditional write of the document ``id_`` (see Documents.conditional_write)."""
        return await self.docs.conditional_write(id_, self.if_match, write)

    def form_model(self) -> type[BaseModel] | None:
        return self.model


class CollectionHandler(ResourceHandler):
    """``GET /name`` (a page of documents) and ``POST /name`` (create one or many)."""

    ALLOWED = ("GET", "POST")
    feed: Any = None  # the change feed this GET streams, when it asked for text/event-stream

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self.feed is not None:
            self.feed.end()

    async def get(self) -> None:
        spec = self.spec
        query_args = self.query_arguments()
        feeds = self.runtime.feeds
        changes = feeds is not None and wants_event_stream(self.request)
        since = since_from(self.request, spec, query_args) if changes else None
        await self.authorize("list")  # 401/403 before anything is said about the query
        arguments = parse_arguments(spec.schema, query_args, per_page=spec.per_page,
                                    filterable=spec.filterable, sortable=spec.sortable)
        if changes:  # the list's rules, then its changes as Server-Sent Events
            query = await self.docs.list_query(arguments)
            await feed_stream(self, feeds, spec, query, since, self.docs.reach_conditions())
            return
        query, page = await self.docs.find_records(arguments)
        public = self.docs.public
        items = [project(public(r), query.fields) for r in page.records]
        link = link_header(self._links(query_args, query, page))
        if link:
            self.set_header("Link", link)
        self.write_json({
            "items": items,
            "total": page.total,
            "page": None if query.keyset else query.page,
            "per_page": query.per_page,
        })

    def _links(self, query_args: dict[str, list[str]], query: Any, page: Any) -> list[tuple[str, str]]:
        # The filters are encoded once for the three or four links (commas stay 1 byte)
        kept = urlencode([(k, v) for k, vs in query_args.items() if k not in ("page", "after") for v in vs], safe=",")
        prefix = f"{self.runtime.settings.root_path}{self.request.path}?{kept}{'&' if kept else ''}"

        def url(**extra: Any) -> str:
            return prefix + urlencode(extra, safe=",")

        if query.keyset:
            links = [("first", url(after=""))]
            if page.has_more and page.records:
                # The values as stored (not filled with defaults): the store compares those.
                last = page.records[-1]
                links.append(("next", url(after=encode_cursor(query, sort_values(query, last.doc), last.id))))
            return links
        last_page = max(1, math.ceil(page.total / query.per_page))
        links = [("first", url(page=1))]
        if query.page > 1:
            links.append(("prev", url(page=min(query.page - 1, last_page))))
        if query.page < last_page:
            links.append(("next", url(page=query.page + 1)))
        links.append(("last", url(page=last_page)))
        return links

    async def post(self) -> None:
        docs = self.docs
        await docs.authorize("create")  # 401/403 before anything is said about the body
        data = self.parse_body()
        bulk = isinstance(data, list)
        items = [docs.from_client(item) for item in (data if bulk else [data])]
        records = await docs.create_records(items, bulk=bulk)
        ids = ",".join(r.id for r in records)
        self.set_header("X-Created-Id", ids)
        if bulk:
            public = docs.public
            self.write_json([public(r) for r in records], 201)
        else:
            key = docs.url_key(records[0])
            # an id (hex) needs no quoting: quote() keeps ASCII letters and digits as they are
            self.set_header("Location", self.location(key if key.isascii() and key.isalnum() else quote(key, safe="")))
            self.write_document(records[0], 201)

class ItemHandler(ResourceHandler):
    """``GET``, ``PUT``, ``PATCH`` and ``DELETE`` on ``/name/{id}``."""

    ALLOWED = ("GET", "PUT", "PATCH", "DELETE")

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # An id that is not even UTF-8 is a malformed id: 404 like any other, not Tornado's 400.
        return value.decode("utf-8", "replace") if name is None else super().decode_argument(value, name)

    async def get(self, id_: str) -> None:
        record = await self.docs.get_record(id_)
        if not self.not_modified(etag(record)):
            self.write_document(record)

    async def put(self, id_: str) -> None:
        await self._update(id_, partial=False)

    async def patch(self, id_: str) -> None:
        await self._update(id_, partial=True)

    async def _update(self, id_: str, *, partial: bool) -> None:
        await self.authorize("update")  # 401/403 before anything is said about the body
        data = self.docs.from_client(self.parse_body())
        self.write_document(await self.docs.update_record(id_, data, partial=partial, if_match=self.if_match,
                                                          preserve=self.spec.schema.read_only))

    async def delete(self, id_: str) -> None:
        await self.docs.delete_record(id_, if_match=self.if_match)
        self.set_status(204)
        self.finish()
