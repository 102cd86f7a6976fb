"""One request and its response on a bzzlite HTTP/1.1 connection: Tornado's ``HTTPConnection``.

Tornado's ``Application`` reads a request through an ``HTTPMessageDelegate`` and writes the
response through ``request.connection``; an :class:`Exchange` is both ends of that for one
request. Body bytes go to the delegate once its handler is prepared (so ``prepare()`` can refuse
an upload before it is read, and ``Expect: 100-continue`` is answered only then); writes go to
the transport, and the futures they return are done once its buffer is below the high-water
mark, which is how a streaming response (a change feed) waits for a slow client.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tornado import httputil
from tornado.concurrent import Future
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from .errors import ProtocolError

if TYPE_CHECKING:
    from .limits import BodyRate
    from .protocol import HTTPProtocol

log = logging.getLogger("bzzlite.http")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Body bytes buffered for a handler that is not ready for them before reading pauses.
BODY_HIGH_WATER = 256 * 1024


def _closed_future() -> Future[None]:
    future: Future[None] = Future()
    future.set_exception(StreamClosedError())
    future.exception()  # retrieved: nobody has to await a write to a closed connection
    return future


class Prepared:
    """A handler's ``_prepared_future`` on bzzlite's server. Tornado's handler sets it once its
    ``prepare()`` has run; the exchange then hands the handler the body it holds at once, in
    that same step of the handler's task, so a request whose body came with its head goes on
    to its method without waiting: a Future would call the exchange back a turn of the loop
    later, and the handler's task would take a second step."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange: Exchange | None = exchange

    def done(self) -> bool:
        return self.exchange is None

    def cancelled(self) -> bool:
        return False

    def set_result(self, _value: None) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        try:
            exchange._prepared()
        except Exception:
            log.exception("the request's body could not be handed to its handler")
            exchange.protocol.close()


class Exchange(httputil.HTTPConnection):
    """A request being read and answered; Tornado's ``request.connection``."""

    def __init__(self, protocol: HTTPProtocol, start_line: httputil.RequestStartLine,
                 headers: httputil.HTTPHeaders, keep_alive: bool, expects_continue: bool = False,
                 bodiless: bool = False) -> None:
        self.protocol = protocol
        self.context = protocol.context
        self.stream = protocol  # a change feed bounds its buffer through ``max_write_buffer_size``
        self.start_line = start_line
        self.headers = headers
        self.keep_alive = keep_alive
        self.expects_continue = expects_continue  # the client waits for "100 Continue" to send its body
        # No body and no upgrade: its handler starts once the request is complete, with nothing
        # to stream (bzzlite.http.dispatch.HandlerDelegate).
        self.bodiless = bodiless
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.max_body_size = protocol.server.max_body_size
        self.received = 0  # body bytes read
        self.rate: BodyRate | None = None  # how fast they arrive, once the server's sweep measures it
        self.complete = False  # the whole request has been read
        self.headers_written = False
        self.response_done = False
        self.gone = False  # the connection closed or gave up on this request: writes go nowhere
        self._chunks: deque[bytes] = deque()  # body bytes the handler is not ready for yet
        self._buffered = 0
        self._ready = False  # the handler takes body bytes (its prepare() has run)
        self._blocked = False  # waiting for the handler's data_received future
        self._delivered = False  # delegate.finish() has been called
        self._chunking = False
        self._remaining: int | None = None
        self._close_callback: Callable[[], None] | None = None
        self._upgrade_head: bytes | None = None

    # -- reading the request ------------------------------------------------------------------

    def start(self) -> None:
        """Hand the request's head to the application (its turn on the connection has come)."""
        protocol = self.protocol
        protocol.max_write_buffer_size = None
        try:
            self.delegate = protocol.server.app.start_request(protocol, self)
            prepared = self.delegate.headers_received(self.start_line, self.headers)
            # A routing delegate only passes on what follows to the one it found: talk to that one.
            self.delegate = getattr(self.delegate, "routed", None) or self.delegate
        except httputil.HTTPInputError as exc:  # a Host Tornado refuses (a list, not a host): the client's mistake
            self.delegate = None
            protocol.fail(ProtocolError(400, f"Malformed request: {exc}."))
            return
        except Exception:
            log.exception("the application refused the request's head")
            protocol.close()
            return
        if isinstance(prepared, Prepared):
            pass  # the handler's prepare() calls _prepared() (bzzlite.http.dispatch)
        elif prepared is None or (isinstance(prepared, Future) and prepared.done()):
            self._prepared()
        else:
            _add_done_callback(prepared, lambda _: self._prepared())

    def _prepared(self) -> None:
        self._ready = True
        if self.expects_continue and not self.complete and not self.headers_written and self.received == 0 \
                and not self.gone:
            self.protocol.send(CONTINUE)  # the handler accepted it: now send the body
        self._pump()

    def prepared_signal(self) -> Prepared:
        """What the handler sets once prepared: it calls :meth:`_prepared` (see :class:`Prepared`)."""
        return Prepared(self)

    def asked_for_body(self) -> bool:
        """Whether a client that expects ``100 Continue`` was told to send its body."""
        return self._ready or self.headers_written

    def body_received(self, chunk: bytes) -> None:
        if self.response_done or self.gone:
            return  # answered already: the rest of the body is read and dropped
        if self._ready and not self._blocked and not self._chunks:
            self._deliver(chunk)
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > BODY_HIGH_WATER:
            self.protocol.pause_reading()

    def body_complete(self) -> None:
        self.complete = True
        self._pump()

    def _deliver(self, chunk: bytes) -> None:
        try:
            pending = self.delegate.data_received(chunk)  # type: ignore[union-attr]
        except Exception:
            log.exception("data_received failed")
            self.protocol.close()
            return
        if pending is not None:
            self._blocked = True
            _add_done_callback(pending, self._unblock)

    def _unblock(self, _: Any) -> None:
        self._blocked = False
        self._pump()

    def _pump(self) -> None:
        """Hand the handler what it is ready for: buffered body bytes, then the request's end."""
        while self._ready and not self._blocked and self._chunks and not self.gone:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            if not self.response_done:
                self._deliver(chunk)
        if not self._chunks and len(self.protocol.exchanges) <= 1:
            self.protocol.resume_reading()
        if self.complete and self._ready and not self._blocked and not self._chunks and not self._delivered:
            self._delivered = True
            if not self.response_done and not self.gone:
                try:
                    self.delegate.finish()  # type: ignore[union-attr]
                except Exception:
                    log.exception("the request's handler failed")
                    self.protocol.close()

    def connection_lost(self) -> None:
        """Tell the handler its client is gone, as Tornado does."""
        self.gone = True
        if self.delegate is None or self.response_done:
            return
        if not self._delivered:
            self.delegate.on_connection_close()  # still reading: the delegate hears it
        elif self._close_callback is not None:
            callback, self._close_callback = self._close_callback, None
            callback()

    abandon = connection_lost

    # -- HTTPConnection: writing the response -------------------------------------------------

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        """Accepted for Tornado's interface; the server's body timeout applies."""

    def write_headers(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                      headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        if self.gone or self.protocol.closed():
            return _closed_future()
        self.headers_written = True
        code = start_line.code
        request = self.start_line
        http11 = request.version == "HTTP/1.1"
        bodiless = request.method == "HEAD" or code in (204, 304) or code < 200
        sized = "Content-Length" in headers
        self._chunking = http11 and not bodiless and not sized
        if self.protocol.server.draining:
            self.keep_alive = False  # shutting down: this is the connection's last response
        elif not http11 and not bodiless and not sized:
            self.keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
        if code == 101:
            pass
        elif not self.keep_alive:
            if http11:
                headers["Connection"] = "close"
        elif not http11:
            headers["Connection"] = "Keep-Alive"
        if self._chunking:
            headers["Transfer-Encoding"] = "chunked"
        if request.method == "HEAD" or code == 304:
            self._remaining = 0
        else:
            self._remaining = int(headers["Content-Length"]) if sized else None
        lines = [f"HTTP/1.1 {code} {start_line.reason}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.get_all()]
        lines.append("\r\n")
        text = "".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):  # a CR or LF in a header
            raise ValueError(f"illegal characters (CR or LF) in the response's headers: {text!r}")
        data = text.encode("latin1")
        if chunk:
            data += self._frame(chunk)
        if code == 101:
            self._upgrade_head = data  # written by detach(), on the WebSocket's own stream
            return self.protocol.drained()
        self.protocol.send(data)
        return self.protocol.drained()

    def write(self, chunk: bytes) -> Future[None]:
        if self.gone or self.protocol.closed():
            return _closed_future()
        data = self._frame(chunk)
        if data:
            bound = self.protocol.max_write_buffer_size
            if bound is not None and self.protocol.transport.get_write_buffer_size() + len(data) > bound:
                raise StreamBufferFullError("the client reads slower than the response is written")
            self.protocol.send(data)
        return self.protocol.drained()

    def _frame(self, chunk: bytes) -> bytes:
        if self._remaining is not None:
            self._remaining -= len(chunk)
            if self._remaining < 0:
                self.protocol.close()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self._chunking and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    def finish(self) -> None:
        if self._remaining and not self.gone and not self.protocol.closed():
            self.protocol.close()
            raise httputil.HTTPOutputError(f"Tried to write {self._remaining} bytes less than Content-Length")
        if self._chunking and not self.gone and not self.protocol.closed():
            self.protocol.send(b"0\r\n\r\n")
        self.response_done = True
        self._close_callback = None
        if self._upgrade_head is None:  # a WebSocket handshake goes on in detach()
            # The delegate holds the handler, which holds the request, which holds this: let
            # reference counting free them all now rather than the garbage collector later.
            self.delegate = None
            self.protocol.finished(self)

    def detach(self) -> IOStream:
        """The connection as a Tornado ``IOStream``, for a WebSocket after its 101 answer.

        The socket is duplicated for the stream before the transport lets go of it; bytes the
        client sent after its upgrade request are put in the stream's read buffer.
        """
        protocol = self.protocol
        protocol.detached = True
        protocol.server.connections.discard(protocol)
        transport = protocol.transport
        protocol.flush()  # the answers before this one
        fd = os.dup(transport.get_extra_info("socket").fileno())
        tail = protocol.upgrade_tail or b""
        transport.close()
        stream = IOStream(socket.socket(fileno=fd))
        if tail:
            stream._read_buffer += tail
            stream._read_buffer_size += len(tail)
        if self._upgrade_head is not None:
            stream.write(self._upgrade_head)
        return stream


def _add_done_callback(awaitable: Awaitable[Any], callback: Callable[[Any], None]) -> None:
    if isinstance(awaitable, Future):
        awaitable.add_done_callback(callback)
    else:
        import asyncio

        asyncio.ensure_future(awaitable).add_done_callback(callback)
