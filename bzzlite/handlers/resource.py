"""CRUD over HTTP for one resource: the collection and item handlers.

Each operation: parse the request, check auth, send the ``pre_*`` signal with an
``arguments`` dict the receivers may change, validate what they left, do one store
call (a conditional write for updates), send the ``post_*`` signal, answer.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from .. import _documents as documents
from .._ids import is_valid_id, new_id
from ..errors import HTTPError, ValidationFailed, VersionConflict
from ..feeds.sse import stream as feed_stream
from ..feeds.sse import wants_event_stream
from ..query import build_query, encode_cursor, parse_arguments, project, sort_values
from ..signals import send, send_after_commit
from .base import BaseHandler

if TYPE_CHECKING:
    from ..registry import ResourceSpec
    from ..runtime import Runtime
    from ..stores.base import Record, Store

_WRITE_ATTEMPTS = 64  # read-modify-write tries when concurrent writers keep winning (no If-Match given)
T = TypeVar("T")


def etag(record: Record) -> str:
    """A strong validator of a stored document's current version."""
    return f'"{record.version}"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


class ResourceHandler(BaseHandler):
    """What the collection and item handlers share."""

    spec: ResourceSpec

    def initialize(self, runtime: Runtime, spec: ResourceSpec, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.spec = spec
        self.model = spec.model

    async def authorize(self, operation: str) -> None:
        """Ask the app's auth policy (if any) whether this request may do ``operation``."""
        if self.runtime.auth is not None:
            await self.runtime.auth.authorize(self, self.spec, operation)

    async def store(self) -> Store:
        return await self.runtime.ready_store()

    def checked_id(self, value: Any) -> str:
        if not is_valid_id(value):
            raise HTTPError(404, "No document with that id (ids are 24 hexadecimal characters).")
        return str(value)

    def write_document(self, record: Record, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.set_header("ETag", etag(record))
        self.write_json(body if body is not None else documents.as_json(self.spec, record), status)

    def location(self, id_: str) -> str:
        return f"{self.runtime.settings.root_path}{self.spec.path}/{id_}"  # root_path: behind a proxy

    def _precondition(self, record: Record) -> bool:
        """Whether ``If-Match`` (if sent) holds for ``record``: strong comparison, ``*`` = any."""
        header = self.request.headers.get("If-Match")
        if header is None:
            return True
        tags = _tags(header)
        return "*" in tags or etag(record) in tags

    def not_modified(self, tag: str) -> bool:
        """Answer 304 (and return True) when ``If-None-Match`` names ``tag`` (weakly) or ``*``."""
        header = self.request.headers.get("If-None-Match")
        if header is None:
            return False
        wanted = {t.removeprefix("W/") for t in _tags(header)}
        if "*" in wanted or tag in wanted:
            self.set_header("ETag", tag)
            self.set_status(304)
            self.finish()
            return True
        return False

    async def conditional_write(self, id_: str, write: Callable[[Store, Record], Awaitable[T]]) -> T:
        """Run ``write(store, current)`` — one write conditioned on ``current.version`` — for
        the document ``id_``, after checking ``If-Match`` against it.

        When another writer wins in between (VersionConflict), a request that sent
        ``If-Match`` gets 412; any other reads again and retries after a short random
        back-off, so concurrent changes are never lost. Too many lost races answer 409.
        """
        store = await self.store()
        conditional = self.request.headers.get("If-Match") is not None
        for attempt in range(_WRITE_ATTEMPTS):
            current = await store.get(self.spec, id_)
            if not self._precondition(current):
                raise HTTPError(412, "The document changed: its current ETag does not match If-Match.")
            try:
                return await write(store, current)
            except VersionConflict:
                if conditional:
                    raise
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise HTTPError(409, "The document is being changed by others; try again.")

    def form_data(self, fields: dict[str, list[str]]) -> dict[str, Any]:
        """Form fields as model data: a repeated key or a list field gives a list;
        an empty value is None for an optional field."""
        schema = self.spec.schema
        data: dict[str, Any] = {}
        for key, values in fields.items():
            if key in schema.list_fields:
                data[key] = [v for v in values if v != ""]
            elif len(values) > 1:
                data[key] = values
            elif values[0] == "" and key in schema.nullable_fields:
                data[key] = None
            else:
                data[key] = values[0]
        return data


class CollectionHandler(ResourceHandler):
    """``GET /name`` (a page of documents) and ``POST /name`` (create one or many)."""

    ALLOWED = ("GET", "POST")
    feed: Any = None  # the change feed this GET streams, when it asked for text/event-stream

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self.feed is not None:
            self.feed.end()

    async def get(self) -> None:
        if self.runtime.feeds is not None and wants_event_stream(self.request):
            await feed_stream(self)  # the list's rules, then its changes as Server-Sent Events
            return
        spec, signals = self.spec, self.runtime.signals
        query_args = self.query_arguments()
        await self.authorize("list")
        arguments = parse_arguments(spec.schema, query_args, per_page=spec.per_page)
        await send(signals.pre_get_list, self.model, arguments=arguments, handler=self)
        query = build_query(spec.schema, arguments, max_per_page=spec.max_per_page)
        page = await (await self.store()).find(spec, query)
        items = [project(documents.as_json(spec, r), query.fields) for r in page.records]
        if signals.post_get_list.receivers:
            instances = [documents.instance(spec, r) for r in page.records]
            await send_after_commit(signals.post_get_list, self.model, items=instances, handler=self)
        links = self._links(query_args, query, page)
        if links:
            self.set_header("Link", ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links))
        self.write_json({
            "items": items,
            "total": page.total,
            "page": None if query.keyset else query.page,
            "per_page": query.per_page,
        })

    def _links(self, query_args: dict[str, list[str]], query: Any, page: Any) -> list[tuple[str, str]]:
        base = {k: v for k, v in query_args.items() if k not in ("page", "after")}

        def url(**extra: Any) -> str:
            params = [(k, v) for k, vs in base.items() for v in vs] + list(extra.items())
            return f"{self.runtime.settings.root_path}{self.request.path}?{urlencode(params)}"

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
        spec, signals = self.spec, self.runtime.signals
        await self.authorize("create")  # 401/403 before anything is said about the body
        data = self.parse_body()
        bulk = isinstance(data, list)
        items = data if bulk else [data]
        if bulk and not items:
            raise ValidationFailed([{"loc": [], "msg": "The array is empty: send at least one object",
                                     "type": "too_short"}])
        all_arguments = [{"data": item} for item in items]
        for arguments in all_arguments:
            await send(signals.pre_create_instance, self.model, arguments=arguments, handler=self)
        docs, errors = [], []
        for index, arguments in enumerate(all_arguments):
            try:
                docs.append(documents.validate(spec, arguments.get("data"), (index,) if bulk else ()))
            except ValidationFailed as exc:
                errors.extend(exc.errors or [])
        if errors:
            raise ValidationFailed(errors)
        records = await (await self.store()).insert(spec, [(new_id(), doc) for doc in docs])
        if signals.post_create_instance.receivers:
            for record in records:
                await send_after_commit(signals.post_create_instance, self.model,
                                        instance=documents.instance(spec, record), handler=self)
        ids = ",".join(r.id for r in records)
        self.set_header("X-Created-Id", ids)
        if bulk:
            self.write_json([documents.as_json(spec, r) for r in records], 201)
        else:
            self.set_header("Location", self.location(records[0].id))
            self.write_document(records[0], 201)

class ItemHandler(ResourceHandler):
    """``GET``, ``PUT``, ``PATCH`` and ``DELETE`` on ``/name/{id}``."""

    ALLOWED = ("GET", "PUT", "PATCH", "DELETE")

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # An id that is not even UTF-8 is a malformed id: 404 like any other, not Tornado's 400.
        return value.decode("utf-8", "replace") if name is None else super().decode_argument(value, name)

    async def get(self, id_: str) -> None:
        spec, signals = self.spec, self.runtime.signals
        await self.authorize("get")
        arguments: dict[str, Any] = {"id": id_}
        await send(signals.pre_get_instance, self.model, arguments=arguments, handler=self)
        record = await (await self.store()).get(spec, self.checked_id(arguments.get("id")))
        if signals.post_get_instance.receivers:
            await send_after_commit(signals.post_get_instance, self.model,
                                    instance=documents.instance(spec, record), handler=self)
        if not self.not_modified(etag(record)):
            self.write_document(record)

    async def put(self, id_: str) -> None:
        await self._update(id_, partial=False)

    async def patch(self, id_: str) -> None:
        await self._update(id_, partial=True)

    async def _update(self, id_: str, *, partial: bool) -> None:
        spec, signals = self.spec, self.runtime.signals
        await self.authorize("update")  # 401/403 before anything is said about the body
        data = self.parse_body()
        arguments: dict[str, Any] = {"id": id_, "data": data, "partial": partial}
        await send(signals.pre_update_instance, self.model, arguments=arguments, handler=self)
        id_ = self.checked_id(arguments.get("id"))
        partial = bool(arguments.get("partial"))
        data = arguments.get("data")
        patch = documents.check_patch(spec, data) if partial else None

        async def replace(store: Store, current: Record) -> tuple[dict[str, Any], dict[str, Any], Record]:
            before = spec.schema.fill_defaults(current.doc)
            doc = documents.validate(spec, documents.merge_patch(before, patch) if partial else data)
            return before, doc, await store.replace(spec, id_, doc, current.version)

        before, doc, record = await self.conditional_write(id_, replace)
        if signals.post_update_instance.receivers:
            await send_after_commit(signals.post_update_instance, self.model,
                                    instance=documents.instance(spec, record),
                                    updated_fields=documents.updated_fields(before, doc), handler=self)
        self.write_document(record)

    async def delete(self, id_: str) -> None:
        spec, signals = self.spec, self.runtime.signals
        await self.authorize("delete")
        arguments: dict[str, Any] = {"id": id_}
        await send(signals.pre_delete_instance, self.model, arguments=arguments, handler=self)
        id_ = self.checked_id(arguments.get("id"))

        async def delete(store: Store, current: Record) -> Record:
            await store.delete(spec, id_, current.version)
            return current

        current = await self.conditional_write(id_, delete)
        if signals.post_delete_instance.receivers:
            await send_after_commit(signals.post_delete_instance, self.model,
                                    instance=documents.instance(spec, current), handler=self)
        self.set_status(204)
        self.finish()
