"""One TCP connection of bzzlite's HTTP/1.1 server: httptools parses, Tornado's Application answers.

:class:`HTTPProtocol` is an asyncio protocol fed by the event loop; for each request it makes a
:class:`~bzzlite.http.exchange.Exchange` (what Tornado sees as ``request.connection``) and hands
it to the unchanged ``tornado.web.Application`` through its ``start_request`` delegate API, so
every ``RequestHandler`` runs exactly as under Tornado's own ``HTTPServer``.

Requests on one connection are answered in order: a pipelined request is parsed and buffered
while the one before it is handled, and reading pauses until it is its turn. Malformed framing,
an oversized request line or header block, an unsupported transfer coding and a body above the
server's limit are answered here, as problem+json, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools
from tornado import httputil
from tornado.iostream import StreamClosedError

from .errors import ProtocolError, error_response
from .exchange import Exchange
from .headers import Headers
from .limits import LINGER, BodyRate

if TYPE_CHECKING:
    from .server import HTTPServer

log = logging.getLogger("bzzlite.http")



_METHODS: dict[bytes, str] = {}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
_STAND_IN = b"PROPPATCH"
_PREFACE = b"PRI * HTTP/2.0\r\n"
_FRAMING = frozenset({b"host", b"transfer-encoding", b"content-length", b"expect"})
_FRAMING_LENGTHS = frozenset(len(name) for name in _FRAMING)  # a method llhttp knows and treats like any other
#: Response bytes held for the end of the loop's turn past which they are written at once.
HOLD_LIMIT = 64 * 1024


class Context:
    """What ``HTTPServerRequest`` reads from ``connection.context``: the peer's address."""

    __slots__ = ("address", "protocol", "remote_ip")

    def __init__(self, address: Any) -> None:
        self.address = address
        self.remote_ip = address[0] if isinstance(address, tuple) and address else "0.0.0.0"
        self.protocol = "http"

    def __str__(self) -> str:
        return self.remote_ip


class HTTPProtocol(asyncio.Protocol):
    """An HTTP/1.1 server connection: parsing, pipelining, flow control, limits and closing."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.context: Context = None  # type: ignore[assignment]
        self.exchanges: deque[Exchange] = deque()  # the first is being answered, the rest wait
        self.parsing: Exchange | None = None  # the request whose bytes are arriving
        self.max_write_buffer_size: int | None = None  # a bound set by change feeds (see Exchange.write)
        self.last_active = 0.0  # when the connection last became idle or received body bytes
        self.message_started: float | None = None  # when the request being parsed began
        self._url = b""
        self._headers: httputil.HTTPHeaders | None = None
        self._header_bytes = 0
        self._head_size = 0
        self._header_count = 0
        self._framing: list[bytes] = []
        self._begun = 0  # requests begun on this connection
        self._method: str | None = None
        self.upgrade_tail: bytes | None = None  # bytes after a WebSocket upgrade request
        self._reading = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._held: list[bytes] | None = None  # response bytes waiting for the end of the turn (send)
        self._held_size = 0
        self._closing = False  # no new request will be started
        self._lost = False
        self.detached = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.context = Context(transport.get_extra_info("peername"))
        self.last_active = time.monotonic()
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self.upgrade_tail is not None:
            if self.upgrade_tail is not None:
                self.upgrade_tail += data  # the WebSocket's first frames, kept for its stream
            return
        begun = self._begun
        fresh = self.message_started is None and self.parsing is None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            # llhttp knows a fixed list of methods; Tornado routes any token (404, 405 + Allow).
            if not (fresh and self._begun - begun == 1 and self._extension_method(data)):
                self.fail(ProtocolError(400, "Malformed request: invalid method."))
            return
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0]:])
            return
        except ProtocolError as exc:
            self.fail(exc)
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                self.fail(cause)
            elif isinstance(cause, httputil.HTTPInputError):
                self.fail(ProtocolError(400, f"Malformed request: {cause}."))
            else:
                log.error("the request's head could not be read", exc_info=cause)
                self.fail(ProtocolError(400, "Malformed request."))
            return
        except httptools.HttpParserError as exc:
            if fresh and data.startswith(_PREFACE[:len(data)]):  # HTTP/2 with prior knowledge
                self.fail(ProtocolError(505, "HTTP/2 is not served over this connection; use HTTP/1.1."))
            else:
                self.fail(ProtocolError(400, f"Malformed request: {exc}."))
            return
        if self.message_started is not None:  # still in a request's head after all of this data
            self._header_bytes += len(data)
            if self._header_bytes > self.server.max_header_size:
                self.fail(ProtocolError(431, f"The request's header block exceeds {self.server.max_header_size} bytes."))

    def _extension_method(self, data: bytes) -> bool:
        """Parse a request whose method llhttp does not know (``data`` starts with it) under a
        stand-in method, and give the handler the real one."""
        method, space, _ = data.partition(b" ")
        if not space or not _TOKEN.fullmatch(method):
            return False
        self.parser = httptools.HttpRequestParser(self)  # the old one stopped at the error
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._method = method.decode("ascii")
        self.data_received(_STAND_IN + data[len(method):])
        return True

    def eof_received(self) -> bool | None:
        # The client is gone (as for Tornado and uvicorn: a half-close is not told apart from
        # a close, so a handler waiting on a slow operation or a change feed hears of it now).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._held = None
        self.server.connections.discard(self)
        if self.detached:
            return
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(StreamClosedError())
                waiter.exception()  # retrieved: a handler need not await it
        self._drain_waiters.clear()
        exchanges, self.exchanges = self.exchanges, deque()
        for exchange in exchanges:
            exchange.connection_lost()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begun += 1
        self.message_started = time.monotonic()
        self._url = b""
        self._headers = Headers()
        self._header_bytes = 0  # bytes received while the head is incomplete (a head never ending)
        self._head_size = 0  # the size of the header lines parsed
        self._header_count = 0
        self._framing = []  # the names of the framing headers seen (lowercase)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_url_size:
            raise ProtocolError(414, f"The request target exceeds {self.server.max_url_size} bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.server.max_header_size:
            raise ProtocolError(431, f"The request's header block exceeds {self.server.max_header_size} bytes.")
        self._header_count += 1  # compared with the limit once the head is complete (its size bounds it meanwhile)
        if len(name) in _FRAMING_LENGTHS and name.lower() in _FRAMING:
            self._framing.append(name.lower())  # checked once the head is complete
        # Leading and trailing whitespace is not part of the value (RFC 9110 5.5), as Tornado strips it.
        self._headers.add(name.decode("latin1"), value.decode("latin1").strip(" \t"))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        headers: httputil.HTTPHeaders = self._headers  # type: ignore[assignment]
        parser = self.parser
        self.message_started = None
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            if version == "0.9":  # a request line without a version
                raise ProtocolError(400, "Malformed request: HTTP/0.9 is not served; send an HTTP/1.1 request line.")
            raise ProtocolError(505, f"HTTP/{version} is not served over this connection; use HTTP/1.1.")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS.setdefault(raw_method, raw_method.decode("ascii"))
        if self._method is not None:  # an extension method parsed under the stand-in
            method, self._method = self._method, None
        if self._header_count > self.server.max_headers:
            raise ProtocolError(431, f"The request has more than {self.server.max_headers} header fields.")
        framing = self._framing
        expects = False
        bodiless = True
        if framing != [b"host"]:  # not the usual case: one Host, no body, no Expect
            self._check_framing(framing, headers, version)
            expects = b"expect" in framing and headers["Expect"].lower() == "100-continue"
            bodiless = b"content-length" not in framing and b"transfer-encoding" not in framing
        start_line = httputil.RequestStartLine(method, self._url.decode("latin1"), "HTTP/" + version)
        keep_alive = parser.should_keep_alive() and not self._closing and not self.server.draining
        exchange = Exchange(self, start_line, headers, keep_alive, expects, bodiless and not parser.should_upgrade())
        self.parsing = exchange
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            exchange.start()
        else:
            self.pause_reading()  # one request waits its turn; the next are not read yet

    def _check_framing(self, framing: list[bytes], headers: httputil.HTTPHeaders, version: str) -> None:
        hosts = framing.count(b"host")
        if hosts > 1 or (not hosts and version == "1.1"):
            raise ProtocolError(400, "An HTTP/1.1 request needs exactly one Host header.")
        if b"transfer-encoding" in framing:
            coding = headers["Transfer-Encoding"]
            if coding.lower() != "chunked":
                raise ProtocolError(501, f"Transfer-Encoding {coding!r} is not supported; "
                                         "send the body chunked or with Content-Length.")
        if b"content-length" in framing and int(headers["Content-Length"]) > self.server.max_body_size:
            raise ProtocolError(413, f"The body is larger than the server's limit of {self.server.max_body_size} bytes.")

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        exchange.received += len(body)
        if exchange.received > exchange.max_body_size:
            raise ProtocolError(413, f"The body is larger than the server's limit of {exchange.max_body_size} bytes.")
        self.last_active = time.monotonic()
        exchange.body_received(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        self.parsing = None
        if exchange is not None:
            exchange.body_complete()

    # -- used by exchanges -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write response bytes, at the end of this turn of the loop (``HTTPServer.flush``).

        Under load a turn answers many requests; each connection's answers then leave in one
        write, and the client, woken once per turn rather than once per write, has more of
        them to read when it wakes (its wake-up is charged to the writer: ``sock_def_readable``).
        A stream bounded by a change feed is written at once, and so is anything past
        :data:`HOLD_LIMIT`, so the transport's flow control still sees a large answer.
        """
        if self.max_write_buffer_size is not None or len(data) >= HOLD_LIMIT:
            self.flush()
            self.transport.write(data)
        elif self._held is None:
            self._held = [data]
            self._held_size = len(data)
            self.server.hold(self)
        else:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= HOLD_LIMIT:
                self.flush()

    def flush(self) -> None:
        """Write the bytes ``send`` held, now (before closing, and at the end of the turn)."""
        held, self._held = self._held, None
        if held is not None and not self._lost and not self.transport.is_closing():
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def drained(self) -> asyncio.Future[None]:
        """A future done once the transport's buffer is below its high-water mark (the server's
        one done future when it already is: most writes)."""
        if not self._write_paused and not self._lost:
            if self.max_write_buffer_size is None or not self.transport.get_write_buffer_size():
                return self.server.done
            # A change feed waiting with bytes queued: uvloop before 0.23 sends queued writes at
            # the end of the loop's turn (and only then pauses), so look again after it.
            waiter = self.loop.create_future()
            self.loop.call_soon(self._settle, waiter)
            return waiter
        waiter = self.loop.create_future()
        self._settle(waiter)
        return waiter

    def _settle(self, waiter: asyncio.Future[None]) -> None:
        """Wait for resume_writing when paused, fail when the connection is gone, else done."""
        if waiter.done():
            return
        if self._write_paused:
            self._drain_waiters.append(waiter)
        elif self._lost:
            waiter.set_exception(StreamClosedError())
            waiter.exception()
        else:
            waiter.set_result(None)

    def pause_reading(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and not self._lost and not self._closing:
            self._reading = True
            self.transport.resume_reading()

    def finished(self, exchange: Exchange) -> None:
        """``exchange``'s response is complete: start the next request or close."""
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if self._lost:
            return
        if not exchange.keep_alive or not exchange.complete:
            # Its body was not read to the end (an early 413, a 401 before the upload): the
            # stream is out of step, so no further request; drain what the client still sends
            # for a while instead of resetting it before it reads the answer.
            self.exchanges.clear()
            self.parsing = None
            if exchange.complete:
                self.close()
            else:
                self.linger()
            return
        self.last_active = time.monotonic()  # a stopping server gives it REQUEST_GRACE from now
        if self.exchanges:  # pipelined: its turn, once the handler before it has wound up
            self.loop.call_soon(self._start_next)
        if len(self.exchanges) <= 1:
            self.resume_reading()

    def _start_next(self) -> None:
        if self.exchanges and self.exchanges[0].delegate is None and not self._lost:
            self.exchanges[0].start()

    def resume_reading_discarding(self) -> None:
        if not self._reading and not self._lost:
            self._reading = True
            self.transport.resume_reading()

    def fail(self, error: ProtocolError) -> None:
        """Answer a request the server refuses with problem+json and close the connection."""
        if self._closing or self._lost:
            return
        log.info("%s from %s: %s", error.status, self.context, error.detail)
        self._closing = True
        active = self.exchanges[0] if self.exchanges else None
        self.exchanges.clear()
        self.parsing = None
        if active is not None and active.delegate is not None:
            active.abandon()  # its handler hears the connection close, its answer goes nowhere
            if active.headers_written:  # the answer is on its way: only closing is left
                self.close()
                return
        self.send(error_response(error))
        self.close()

    # -- used by the server ------------------------------------------------------------------

    def body_fast_enough(self, waited: float) -> bool:
        """Whether the body being read arrives fast enough, counting ``waited`` more seconds
        if the server waited for it all along (reading, and the client told to send it)."""
        exchange = self.parsing
        if exchange is None or not self._reading or (exchange.expects_continue and not exchange.asked_for_body()):
            return True
        if exchange.rate is None:
            exchange.rate = BodyRate()
        server = self.server
        return exchange.rate.waited(waited, exchange.received, server.min_body_rate, server.body_rate_period)

    def idle(self) -> bool:
        """Open and waiting for a request (none is being read or answered)."""
        return not self.exchanges and self.message_started is None and not self._closing

    def unused(self) -> bool:
        """Accepted, and not a byte of a request has arrived yet."""
        return self._begun == 0

    def closed(self) -> bool:
        return self._lost or self.transport.is_closing()

    def close(self) -> None:
        """Close now (a change feed's stream overflow, a refused request, the end of a stop)."""
        self._closing = True
        if not self._lost:
            self.flush()
            self.transport.close()

    def linger(self) -> None:
        """Close without resetting what the client may be sending (``limits.LINGER``): once the
        answers are out, shut down the writing side, so the client reads a clean end of stream,
        then read and drop whatever still arrives until the client closes too (``eof_received``)
        or ``LINGER`` seconds pass. Closing at once with unread bytes would send a reset."""
        if self._lost:
            return
        self._closing = True
        self.flush()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.resume_reading_discarding()
        self.loop.call_later(LINGER, self.transport.close)

    def closing(self) -> bool:
        """No request will be read on it any more (it is closed, closing or lingering)."""
        return self._closing or self._lost

    def lingering(self) -> bool:
        """Closed on the server's side, waiting for the client to close its own."""
        return self._closing and not self._lost and not self.transport.is_closing()

    def abort(self) -> None:
        self._held = None
        if not self._lost:
            self.transport.abort()

    def timed_out(self, error: ProtocolError | None) -> None:
        """End a connection that stayed silent too long (idle, or mid-request with ``error``)."""
        if error is None:
            self.linger()  # its client may be sending a request right now
        else:
            self.fail(error)

    def _upgrade(self, tail: bytes) -> None:
        """The parser stopped after a request asking to switch protocols."""
        exchange = self.exchanges[-1] if self.exchanges else None
        if exchange is None or exchange.start_line.method != "GET" or \
                (exchange.headers.get("Upgrade") or "").lower() != "websocket":
            # Not a WebSocket (h2c, ...): answer it over HTTP/1.1, then close, as the parser cannot go on.
            self._closing = True
            if exchange is not None:
                exchange.keep_alive = False
            return
        self.upgrade_tail = tail  # the handler answers 101 and detaches (Exchange.detach)

