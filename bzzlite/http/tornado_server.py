"""The HTTP server bzzlite serves with: Tornado's, minus per-request work nobody asked for.

What a client sees is what Tornado's ``HTTPServer`` sends; the differences are in how much
CPU each request costs the server:

- **TCP_NODELAY stays on.** Tornado turns Nagle's algorithm off at the end of every response
  (so the last bytes leave at once) and back on before the next request: two ``setsockopt``
  calls per request, each behind a Python-level check of the socket's family. Here it is off
  once, for the connection's life. A response written at once (every bzzlite document, list
  and error) goes out in the same packets; a streamed one (change feeds) is no longer held
  back by Nagle between its writes.
- **One sweep instead of a timer per request.** Tornado closes a connection that waits longer
  than ``idle_connection_timeout`` (default an hour) for a request's headers by arming a
  timeout around every header read: a timer scheduled and cancelled, and two futures chained,
  per request. Here each request only notes when its connection started waiting, and a periodic
  sweep (every tenth of the timeout, at most a minute) closes the connections that have waited
  for headers longer than the timeout. A request being handled or streamed is never cut, as
  with Tornado's; an idle client is closed up to a tenth of the timeout later than Tornado would.
- **stop() drains keep-alive connections.** Tornado's only stops accepting, so clients on open
  connections go on being served; here every response from then on says ``Connection: close``
  and ends its connection, and a connection waiting for a request gets ``REQUEST_GRACE``
  seconds to send one before it is closed, cleanly (``LINGER``), as with bzzlite's own server
  (see ``bzzlite.http.server.HTTPServer.stop`` for why).
- **An idle connection is closed cleanly**, at the stop as at the idle timeout: the server
  shuts down its side and reads what the client still sends until the client closes, where
  Tornado closes the socket at once (a reset, if a request had just arrived).

And two limits Tornado's server does not keep, as bzzlite's own server does (``bzzlite.http.server``):
a request with more than ``max_headers`` header fields is answered 431 (problem+json) without
reaching the app, and a body arriving slower than ``min_body_rate`` bytes a second, over each
``body_rate_period`` seconds the server waits for it, has its connection closed by the sweep
(as Tornado's own ``body_timeout`` closes it: the handler is reading it, so no answer is sent).
Tornado itself refuses a request line of another HTTP version than 1.0 and 1.1 (400).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from tornado import httputil
from tornado.concurrent import future_add_done_callback
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream

from . import jsoncodec as _json
from .errors import PROBLEM_JSON, problem
from .limits import BODY_RATE_PERIOD, LINGER, MAX_HEADERS, MIN_BODY_RATE, REQUEST_GRACE, BodyRate

log = logging.getLogger("bzzlite.http")


def _nodelay_kept(value: bool) -> None:
    """``IOStream.set_nodelay`` of a stream whose no-delay flag was set once for good."""


class Server(HTTPServer):
    """``tornado.httpserver.HTTPServer`` with the per-request costs above removed; same arguments."""

    idle_timeout: float
    max_headers: int
    min_body_rate: float
    body_rate_period: float
    _sweeper: PeriodicCallback | None
    _lingering: dict[socket.socket, Callable[[], None]]  # closed between requests: their ends
    _drain_started: float | None
    _swept: float

    def initialize(self, *args: Any, max_headers: int = MAX_HEADERS, min_body_rate: float = MIN_BODY_RATE,
                   body_rate_period: float = BODY_RATE_PERIOD, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.idle_timeout = self.conn_params.header_timeout or 3600.0  # what Tornado would enforce
        self.conn_params.header_timeout = None  # no timer around each header read: _sweep instead
        self.max_headers = max_headers
        self.min_body_rate = min_body_rate
        self.body_rate_period = body_rate_period
        self._sweeper = None
        self._lingering = {}
        self._drain_started = None
        self._swept = 0.0

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _nodelay_kept  # type: ignore[method-assign]
        if self._sweeper is None:  # on the loop that serves the connections
            every = self.idle_timeout / 10
            if self.min_body_rate:
                every = min(every, self.body_rate_period / 4)
            self._swept = time.monotonic()
            self._sweeper = PeriodicCallback(self._sweep, min(60.0, max(0.05, every)) * 1000)
            self._sweeper.start()
        super().handle_stream(stream, address)

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        server_conn.bzz_waiting = (request_conn, time.monotonic())  # reading headers from now on
        guard = server_conn.bzz_guard = Guard(self, super().start_request(server_conn, request_conn), request_conn)
        return guard

    def _sweep(self) -> None:
        """Close the connections that have waited for a request's headers longer than the
        timeout, and those whose request body arrives too slowly."""
        now = time.monotonic()
        deadline = now - self.idle_timeout
        waited, self._swept = now - self._swept, now
        for conn in list(self._connections):
            guard: Guard | None = getattr(conn, "bzz_guard", None)
            if guard is not None and guard.reading and self.min_body_rate and \
                    not guard.rate.waited(waited, guard.received, self.min_body_rate, self.body_rate_period):
                log.info("408 from %s: the request's body arrived slower than %g bytes/s", conn.context,
                         self.min_body_rate)
                _close(conn)
                continue
            waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
            if waiting is None or waiting[1] > deadline:
                continue
            if _idle(conn):
                self._linger(conn)
            elif waiting[0]._request_start_line is None:  # its headers have not all arrived
                _close(conn)

    def stop(self) -> None:
        """Stop accepting; from now on every response says ``Connection: close`` and ends its
        connection, and a connection waiting for a request is closed cleanly once it has waited
        ``REQUEST_GRACE`` seconds (as ``bzzlite.http.server.HTTPServer.stop``)."""
        super().stop()
        if self._drain_started is not None:
            return
        self._drain_started = time.monotonic()
        self.conn_params.no_keep_alive = True  # shared by the connections: every request read from now on
        for conn in list(self._connections):
            waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
            if waiting is not None and waiting[0]._request_start_line is not None \
                    and waiting[0]._response_start_line is None:
                waiting[0]._disconnect_on_finish = True  # its response says Connection: close, then it ends
        IOLoop.current().call_later(REQUEST_GRACE, self._close_idle)

    def _close_idle(self) -> None:
        """Draining: close the connections idle for ``REQUEST_GRACE``; look again while others
        are open (a response whose headers said keep-alive before the stop leaves its
        connection waiting for a request once it ends)."""
        assert self._drain_started is not None
        now = time.monotonic()
        soonest: float | None = None
        for conn in list(self._connections):
            left = REQUEST_GRACE
            if _idle(conn):
                waiting = getattr(conn, "bzz_waiting", None)
                left = max(self._drain_started, waiting[1] if waiting else 0.0) + REQUEST_GRACE - now
                if left <= 0:
                    self._linger(conn)
                    continue
            soonest = left if soonest is None else min(soonest, left)
        if soonest is not None:
            IOLoop.current().call_later(soonest, self._close_idle)

    def _linger(self, conn: HTTP1ServerConnection) -> None:
        """Close a connection between requests without resetting what its client may be sending
        (``bzzlite.http.limits.LINGER``): Tornado lets go of a duplicate of its socket, which
        then shuts down its writing side and reads and drops what arrives until the client
        closes or ``LINGER`` seconds pass."""
        stream = conn.stream
        try:
            sock = socket.socket(fileno=os.dup(stream.socket.fileno()))
        except OSError:
            _close(conn)
            return
        stream.close()  # Tornado's request loop ends; the TCP connection lives on in the duplicate
        loop = asyncio.get_running_loop()

        def end() -> None:
            if self._lingering.pop(sock, None) is not None:
                loop.remove_reader(sock)
                timer.cancel()
                sock.close()

        def discard() -> None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the client closed too
                end()

        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering[sock] = end
        loop.add_reader(sock, discard)
        timer = loop.call_later(LINGER, end)

    def drained(self) -> bool:
        """Stopping: whether every connection has ended or is closing (a busy one ends after its
        response, one waiting for a request ``REQUEST_GRACE`` seconds after the stop or its last
        response; those closing cleanly have left Tornado's set)."""
        return not self._connections

    async def close_all_connections(self) -> None:
        """Close every connection, and wait (``LINGER`` seconds at most) for the clients of those
        closed between requests to close theirs."""
        await super().close_all_connections()
        deadline = time.monotonic() + LINGER
        while self._lingering and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for end in list(self._lingering.values()):
            end()
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None


def _idle(conn: HTTP1ServerConnection) -> bool:
    """Open and waiting for a request: not a byte of the next one has arrived, nothing is being written."""
    stream = conn.stream
    if stream.closed() or stream.writing() or stream._read_buffer_size:
        return False
    waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
    return waiting is None or waiting[0]._request_start_line is None


def _close(conn: HTTP1ServerConnection) -> None:
    """End a connection at once, as Tornado's header timeout does: close the stream; the
    connection's read fails and its request loop ends."""
    conn.stream.close()


class Guard(httputil.HTTPMessageDelegate):
    """The app's delegate for one request, behind the server's limits: too many header fields
    are answered 431 here; body bytes are counted for the sweep's rate check while the
    connection reads them for the app (not while the app's ``prepare()`` or ``data_received``
    makes it wait)."""

    __slots__ = ("connection", "delegate", "rate", "reading", "received", "refused", "server")

    def __init__(self, server: Server, delegate: httputil.HTTPMessageDelegate, connection: Any) -> None:
        self.server = server
        self.delegate = delegate
        self.connection = connection
        self.refused = False
        self.reading = False  # the connection waits for body bytes for the app
        self.received = 0
        self.rate = BodyRate()

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        count = sum(1 for _ in headers.get_all())
        if count > self.server.max_headers:
            self._refuse(431, f"The request has more than {self.server.max_headers} header fields.")
            return None
        ready = self.delegate.headers_received(start_line, headers)
        if "Content-Length" in headers or "Transfer-Encoding" in headers:  # a body comes: read once ready
            return self._wait(ready)
        return ready

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused:
            return None
        self.received += len(chunk)
        self.reading = False
        return self._wait(self.delegate.data_received(chunk))

    def finish(self) -> None:
        self.reading = False
        if not self.refused:
            self.delegate.finish()

    def on_connection_close(self) -> None:
        self.reading = False
        if not self.refused:
            self.delegate.on_connection_close()

    def _wait(self, pending: Awaitable[None] | None) -> Awaitable[None] | None:
        """Count the time waiting for the body from when ``pending`` (the app) is done; what
        the connection is to wait for."""
        if pending is None:
            self.reading = True
            return None
        future = asyncio.ensure_future(pending)  # a coroutine too: awaited once, by the connection
        future_add_done_callback(future, self._resume)
        return future

    def _resume(self, _: Any) -> None:
        self.reading = True

    def _refuse(self, status: int, detail: str) -> None:
        """Answer as bzzlite's own server does, and close the connection after."""
        log.info("%s from %s: %s", status, getattr(self.connection, "context", "-"), detail)
        self.refused = True
        body = _json.dumps(problem(status, detail))
        headers = httputil.HTTPHeaders({"Content-Type": PROBLEM_JSON, "Content-Length": str(len(body)),
                                        "Connection": "close"})
        self.connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, HTTPStatus(status).phrase),
                                      headers, body)
        self.connection.finish()
