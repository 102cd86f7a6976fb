"""Server-Sent Events on a collection URL: ``GET /name?<query>`` with ``Accept: text/event-stream``.

The collection handler applies the same rules as to a list read (auth for ``list``, the
``pre_get_list`` receivers, the query language, the scope), then hands the request to
:func:`stream`, which keeps the response open, writing one SSE event per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from ..errors import QueryError
from ..feeds.events import Event, sse_control
from ..feeds.hub import Subscription

if TYPE_CHECKING:
    import tornado.httputil
    import tornado.web

    from ..feeds.hub import Feeds
    from ..models.resource import ResourceSpec
    from ..query import Condition, Query

log = logging.getLogger("bzzlite.feeds")

EVENT_STREAM = "text/event-stream"
SINCE = "since"
_OVERFLOW_GRACE = 10.0  # seconds a disconnected-for-overflow client has to read its last bytes


def wants_event_stream(request: tornado.httputil.HTTPServerRequest) -> bool:
    """Whether a GET asks for the collection's change feed rather than a page of it."""
    return request.method == "GET" and EVENT_STREAM in request.headers.get("Accept", "")


def since_from(request: tornado.httputil.HTTPServerRequest, spec: ResourceSpec,
               query_args: dict[str, list[str]]) -> int | None:
    """Where to resume: ``Last-Event-ID`` (what a reconnecting EventSource sends) wins over
    ``?since=``; an id this server never gave (not a number) is -1, answered by a reset.
    ``since`` is a filter instead when the model has a field of that name."""
    values = None if SINCE in spec.schema.top_level else query_args.pop(SINCE, None)
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        text = header.strip()
        return int(text) if _is_event_id(text) else -1
    if values is None:
        return None
    if len(values) != 1:
        raise QueryError(SINCE, "give this parameter once", "query_repeated")
    text = values[0].strip()
    if not _is_event_id(text):
        raise QueryError(SINCE, f"{values[0][:40]!r} is not an event id (a non-negative integer)", "query_value")
    return int(text)


def _is_event_id(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit() and len(text) < 20


async def stream(handler: tornado.web.RequestHandler, feeds: Feeds, spec: ResourceSpec, query: Query,
                 since: int | None, reach: tuple[Condition, ...] = ()) -> None:
    """Answer ``handler``'s GET with the changes of ``spec``'s documents that match ``query``
    (the list's, as its rules, receivers and scope made it), until the client leaves. ``reach``:
    the conditions of what the caller may read at all (scope and rules)."""
    await feeds.ready()

    handler.set_header("Content-Type", EVENT_STREAM)
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")  # tell nginx not to hold events back
    sub = EventStream(feeds, handler, spec, query.conditions, query.fields, reach)
    handler.feed = sub  # type: ignore[attr-defined]  # ended when the client leaves
    handler.write(b": bzzlite change feed\n\n")
    handler.flush()
    sub.attach(handler.request.connection)
    feeds.opened(sub)
    try:
        await feeds.subscribe(sub, since)
        if not sub.closed:
            await sub.done
    except Exception:  # after the headers: end the stream, the client resumes
        log.exception("the change feed of %s failed", spec.path)
        sub.control("interrupted", None, {"detail": "The feed stopped on a server error; reconnect to resume."})
    finally:
        sub.end()
        feeds.closed(sub)


class EventStream(Subscription):
    """A subscription written to one SSE response.

    Writes skip Tornado's per-write machinery when they can: with nothing queued on the
    connection, an event goes straight to the socket (one system call); otherwise it is
    queued on the connection's stream, whose bound, once exceeded, disconnects the client.
    """

    __slots__ = ("_chunked", "_direct", "_sent", "done", "feeds", "handler", "stream")

    def __init__(
        self,
        feeds: Feeds,
        handler: tornado.web.RequestHandler,
        spec: ResourceSpec,
        conditions: tuple[Condition, ...],
        fields: tuple[str, ...] | None,
        reach: tuple[Condition, ...] = (),
    ) -> None:
        super().__init__(spec, conditions, fields, reach)
        self.feeds = feeds
        self.handler = handler
        self.stream: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sent = 0  # the latest id written on the wire
        self._direct = False  # write framed bytes to the stream ourselves
        self._chunked = False

    def attach(self, connection: Any) -> None:
        """Use the response's connection directly once its headers are out (plain HTTP/1.x
        over TCP; anything else goes through ``RequestHandler.write``)."""
        stream = getattr(connection, "stream", None)
        chunked = getattr(connection, "_chunking_output", None)
        if stream is None:
            return
        stream.max_write_buffer_size = self.feeds.buffer
        self.stream = stream
        if type(stream) is IOStream and isinstance(chunked, bool):
            self._direct, self._chunked = True, chunked

    def _write(self, data: bytes) -> bool:
        """Queue SSE text for the client; False when the client is gone or overflowed."""
        if self.closed:
            return False
        if self._direct:
            return self._emit(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        stream = self.stream
        if stream is not None and stream.max_write_buffer_size is not None:
            # Refuse only when what is already queued exceeds the bound (any one event fits).
            stream.max_write_buffer_size = self.feeds.buffer + len(data) + 32
        try:
            self.handler.write(data)
            self.handler.flush()
            return True
        except StreamBufferFullError:
            self.overflow("the client reads slower than changes arrive")
        except StreamClosedError:
            self.end()
        return False

    def _emit(self, framed: bytes) -> bool:
        stream = self.stream
        if stream.closed():
            self.end()
            return False
        if not stream.writing():  # nothing queued before it: hand it to the kernel now
            try:
                sent = stream.socket.send(framed)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # reset by the peer: Tornado notices and closes the connection
                self.end()
                return False
            if sent == len(framed):
                return True
            framed = framed[sent:]
        if stream.max_write_buffer_size is not None:
            stream.max_write_buffer_size = self.feeds.buffer + len(framed)
        try:
            stream.write(framed)
            return True
        except StreamBufferFullError:
            self.overflow("the client reads slower than changes arrive")
        except StreamClosedError:
            self.end()
        return False

    def deliver(self, events: list[Event]) -> None:
        if self._direct and self._chunked and len(events) == 1:
            written = not self.closed and self._emit(events[0].sse_chunk)  # framed once per query
        else:
            written = self._write(events[0].sse if len(events) == 1 else b"".join(e.sse for e in events))
        if written:
            self._sent = events[-1].seq

    def control(self, type_: str, seq: int | None, body: dict[str, Any]) -> None:
        if seq is None:
            self._write(b"event: %s\ndata: %s\n\n" % (type_.encode(), orjson.dumps(body)))
        elif self._write(sse_control(type_, seq, body)):
            self._sent = max(self._sent, seq)

    def heartbeat(self, position: int) -> None:
        position = max(self.last, position) if self.backlog is None else 0  # no promise while replaying
        if position > self._sent:
            # An id without data sets the client's Last-Event-ID without firing an event:
            # nothing it may see changed up to here, so a resume need not replay older ids.
            if self._write(b": ping\nid: %d\n\n" % position):
                self._sent = position
        else:
            self._write(b": ping\n\n")

    def overflow(self, reason: str) -> None:
        if self.closed:
            return
        self.feeds.overflows += 1
        if self.stream is not None:
            self.stream.max_write_buffer_size = None  # room for the reason, after what is queued
        self.control("overflow", None, {"reason": reason, "event_id": self._sent,
                                        "detail": "Disconnected for falling behind; reconnect with "
                                                  "Last-Event-ID to resume."})
        stream_ = self.stream
        self.end()
        if stream_ is not None and not stream_.closed():
            # A client that stopped reading altogether must not hold the buffer forever.
            asyncio.get_running_loop().call_later(_OVERFLOW_GRACE, stream_.close)

    def end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.feeds.unsubscribe(self)
        if not self.done.done():
            self.done.set_result(None)
        handler = self.handler
        if not handler._finished:
            with contextlib.suppress(StreamClosedError, RuntimeError):  # the connection is gone
                handler.finish()

    def shutdown(self) -> None:
        self.end()

    def unauthorized(self) -> None:
        self.control("unauthorized", None, {"status": 401, "detail": "The session ended; sign in again."})
        self.end()

    async def drain(self) -> None:
        if self.closed:
            return
        try:
            if self._direct:
                await self.stream.write(b"")  # done once everything queued before is sent
            else:
                await self.handler.flush()
        except StreamClosedError:
            self.end()
