"""``/{name}/_changes``: one WebSocket, several subscriptions to a collection's changes.

Client messages (JSON text)::

    {"type": "subscribe", "id": "open", "query": "done=false&fields=title", "since": 41}
    {"type": "unsubscribe", "id": "open"}

Server messages carry the subscription's ``id`` as ``sub``: ``ready``, ``reset``,
``created``/``updated``/``deleted`` (the same bodies as the SSE events), ``unsubscribed``
and ``error``; ``ping`` and ``overflow`` concern the whole socket. Auth for ``list``
is checked at the upgrade, ``pre_get_list`` receivers run for every subscription.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson
import tornado.websocket
from tornado.iostream import StreamBufferFullError, StreamClosedError

from ..documents import Documents
from ..errors import HTTPError, QueryError
from ..feeds.events import Event
from ..feeds.hub import Subscription
from ..http import jsoncodec as _json
from ..http.observability import HEADER, current_request_id, request_id
from ..query import parse_arguments
from .base import PROBLEM_JSON, as_http_error, cors_headers, problem

if TYPE_CHECKING:
    from ..feeds.hub import Feeds
    from ..models.resource import ResourceSpec
    from ..query import Condition
    from ..runtime import Runtime

log = logging.getLogger("bzzlite.feeds")

MAX_SUBSCRIPTIONS = 100  # per socket
OVERFLOW_CODE = 4008  # close code: the client fell too far behind
UNAUTHORIZED_CODE = 4001  # close code: the user's session ended


class ChangesHandler(tornado.websocket.WebSocketHandler):
    """The WebSocket endpoint of one collection's change feed."""

    ALLOWED = ("GET",)

    def initialize(self, runtime: Runtime, spec: ResourceSpec, **kwargs: Any) -> None:
        self.runtime = runtime
        current_request_id.set(request_id(self.request))  # in the log lines of this socket
        self.spec = spec
        self.model = spec.model
        self.feeds: Feeds = runtime.feeds
        self.subs: dict[str, SocketSubscription] = {}
        self.gone = False

    def check_origin(self, origin: str) -> bool:
        """Same-origin pages (Tornado's rule), and the origins the app's CORS policy allows."""
        cors = self.runtime.settings.cors
        return super().check_origin(origin) or (cors is not None and cors.allows(origin))

    def _same_origin(self, origin: str) -> bool:
        """A page of this very host (Tornado 6.6 no longer asks ``check_origin`` about those)."""
        if self.request.headers.get("Sec-Fetch-Site") in ("same-origin", "none"):
            return True
        return urlsplit(origin).netloc.lower() == self.request.headers.get("Host", "").lower()

    @property
    def max_message_size(self) -> int:
        return 64 * 1024  # subscribe messages are small

    async def prepare(self) -> None:
        if self.request.method not in self.ALLOWED:
            raise HTTPError(405, "Method not allowed on this route.")
        self.docs: Documents[Any] = Documents(self.runtime, self.spec, self)
        await self.docs.authorize("list")  # the list's auth and rules, for every subscription of the socket
        # Tornado answers a plain GET here with text/html; bzzlite's errors are problem+json.
        connection = [part.strip().lower() for part in self.request.headers.get("Connection", "").split(",")]
        if self.request.headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            raise HTTPError(400, "Open a WebSocket here (Upgrade: websocket) to follow the collection's changes; "
                                 "or GET the collection with Accept: text/event-stream.")
        origin = self.request.headers.get("Origin")  # Tornado checks it again after prepare, in plain text
        if origin is not None and not self._same_origin(origin) and not self.check_origin(origin):
            raise HTTPError(403, f"WebSockets from {origin} are not allowed: add the origin to App(cors=...).")
        await self.feeds.ready()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Refusals before the upgrade are problem+json, like every other bzzlite error."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = as_http_error(exc) if exc is not None else None
        if error is None:
            error = HTTPError(status_code if status_code < 500 and exc is None else 500,
                              None if status_code < 500 and exc is None else "Internal server error.")
        self.clear()
        self.set_header(HEADER, request_id(self.request))
        if self.runtime.settings.cors is not None:  # a page of another origin may read the refusal
            cors_headers(self)
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        if error.status == 405:
            self.set_header("Allow", ", ".join(self.ALLOWED))
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(_json.dumps(problem(error.status, error.message, error.errors)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if value is None or as_http_error(value) is None:
            super().log_exception(typ, value, tb)

    # -- the socket ----------------------------------------------------------------------

    def open(self, *args: Any) -> None:
        stream = getattr(self.ws_connection, "stream", None)
        if stream is not None:
            stream.max_write_buffer_size = self.feeds.buffer
        self.feeds.opened(self)

    def on_close(self) -> None:
        self.gone = True
        for sub in list(self.subs.values()):
            sub.end()
        self.feeds.closed(self)

    def send(self, data: bytes) -> bool:
        """Queue one message; a full buffer disconnects the client (never blocks)."""
        if self.gone:
            return False
        stream = getattr(self.ws_connection, "stream", None)
        if stream is not None and stream.max_write_buffer_size is not None:
            # Refuse only when what is already queued exceeds the bound (any one message fits).
            stream.max_write_buffer_size = self.feeds.buffer + len(data) + 16
        try:
            self.write_message(data).add_done_callback(_retrieve)
            return True
        except StreamBufferFullError:
            self.overflow("the client reads slower than changes arrive")
        except tornado.websocket.WebSocketClosedError:
            self.on_close()
        return False

    def overflow(self, reason: str) -> None:
        if self.gone:
            return
        self.feeds.overflows += 1
        stream = getattr(self.ws_connection, "stream", None)
        if stream is not None:
            stream.max_write_buffer_size = None
        positions = {sub_id: sub.sent for sub_id, sub in self.subs.items()}
        self.send(orjson.dumps({"type": "overflow", "reason": reason, "event_ids": positions}))
        self.on_close()
        self.close(OVERFLOW_CODE, "too slow")

    def heartbeat(self, position: int) -> None:
        self.send(b'{"type":"ping","event_id":%d}' % position)

    def shutdown(self) -> None:
        self.on_close()
        self.close(1001, "server shutting down")

    @property
    def handler(self) -> ChangesHandler:
        return self  # what the hub re-checks the user's session with

    def unauthorized(self) -> None:
        self.send(b'{"type":"unauthorized","status":401,"detail":"The session ended; sign in again."}')
        self.on_close()
        self.close(UNAUTHORIZED_CODE, "session ended")

    # -- messages ------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError:
            return self._error(None, HTTPError(400, "Messages are JSON objects."))
        if not isinstance(data, dict):
            return self._error(None, HTTPError(400, "Messages are JSON objects."))
        kind, sub_id = data.get("type"), data.get("id")
        if not isinstance(sub_id, str) or not 0 < len(sub_id) <= 100:
            return self._error(None, HTTPError(400, "Give every subscription an \"id\": a string of 1 to 100 characters."))
        try:
            if kind == "subscribe":
                await self._subscribe(sub_id, data)
            elif kind == "unsubscribe":
                sub = self.subs.get(sub_id)
                if sub is not None:
                    sub.end()
                self.send(orjson.dumps({"type": "unsubscribed", "sub": sub_id}))
            else:
                raise HTTPError(400, "Message types are \"subscribe\" and \"unsubscribe\".")
        except Exception as exc:
            error = as_http_error(exc)
            if error is None:
                log.exception("subscribing to %s failed", self.spec.path)
                error = HTTPError(500, "Internal server error.")
            self._error(sub_id, error)

    async def _subscribe(self, sub_id: str, data: dict[str, Any]) -> None:
        if sub_id in self.subs:
            raise HTTPError(409, f"A subscription {sub_id!r} is already open on this socket.")
        if len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise HTTPError(429, f"At most {MAX_SUBSCRIPTIONS} subscriptions per socket.")
        query = data.get("query", "")
        if not isinstance(query, str):
            raise QueryError("query", "a query string such as \"done=false&fields=title\"")
        since = data.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            raise QueryError("since", "an event id (a non-negative integer)", "query_value")
        spec = self.spec
        arguments = parse_arguments(spec.schema, parse_qs(query.lstrip("?"), keep_blank_values=True),
                                    per_page=spec.per_page, filterable=spec.filterable, sortable=spec.sortable)
        # the list's receivers, the resource's scope and rules (decided at the upgrade)
        built = await self.docs.list_query(arguments)
        if self.gone or sub_id in self.subs:
            return
        sub = SocketSubscription(self, sub_id, spec, built.conditions, built.fields, self.docs.reach_conditions())
        self.subs[sub_id] = sub
        await self.feeds.subscribe(sub, since)

    def _error(self, sub_id: str | None, error: HTTPError) -> None:
        # problem+json fields, with "type" naming the message kind as in every other message
        body: dict[str, Any] = {**problem(error.status, error.message, error.errors), "type": "error", "sub": sub_id}
        self.send(orjson.dumps(body))


def _retrieve(future: Any) -> None:
    """Consume a write's outcome: a socket that closed meanwhile is handled by on_close."""
    if not future.cancelled():
        future.exception()


class SocketSubscription(Subscription):
    """A subscription whose events go to a WebSocket, tagged with its id."""

    __slots__ = ("_tag", "sent", "socket", "sub_id")

    def __init__(
        self,
        socket: ChangesHandler,
        sub_id: str,
        spec: ResourceSpec,
        conditions: tuple[Condition, ...],
        fields: tuple[str, ...] | None,
        reach: tuple[Condition, ...] = (),
    ) -> None:
        super().__init__(spec, conditions, fields, reach)
        self.socket = socket
        self.sub_id = sub_id
        self.sent = 0  # the id of the latest event queued for the client
        self._tag = orjson.dumps(sub_id)

    def deliver(self, events: list[Event]) -> None:
        for event in events:
            if self.closed or not self.socket.send(event.message(self._tag)):
                return
            self.sent = event.seq

    def control(self, type_: str, seq: int | None, body: dict[str, Any]) -> None:
        if self.socket.send(orjson.dumps({"type": type_, "sub": self.sub_id, **body})) and seq is not None:
            self.sent = max(self.sent, seq)

    def overflow(self, reason: str) -> None:
        self.socket.overflow(reason)

    def end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.socket.feeds.unsubscribe(self)
        if self.socket.subs.get(self.sub_id) is self:
            del self.socket.subs[self.sub_id]

    async def drain(self) -> None:
        stream = getattr(self.socket.ws_connection, "stream", None)
        if stream is not None and not self.closed and not stream.closed():
            try:
                await stream.write(b"")
            except StreamClosedError:
                self.end()
