"""bzzlite's HTTP/1.1 server: listening sockets, the connections' timeouts and a graceful stop.

It has the methods of Tornado's ``HTTPServer`` that bzzlite's command line and test helper use
(``add_sockets``, ``stop``, ``close_all_connections``), so either server can be dropped in.

Timeouts are enforced by one sweep a second rather than a timer per request:

- ``idle_timeout``: a keep-alive connection waiting for its next request is closed;
- ``header_timeout``: a request whose head has not fully arrived this long after its first
  byte gets 408 and the connection closes (slow-header clients cannot hold connections);
- ``body_timeout``: a request body that stops arriving for this long gets 408 likewise;
- ``min_body_rate``: a request body arriving slower than this many bytes a second, measured
  over each ``body_rate_period`` seconds the server waits for it, gets 408 likewise (a byte
  every few seconds never trips the timeout above, yet holds the connection for ever).

Requests with more than ``max_headers`` header fields get 431, and request lines of an HTTP
version other than 1.0 and 1.1 get 505 (HTTP/0.9, which has no version, 400).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from .errors import ProtocolError
from .limits import BODY_RATE_PERIOD, FIRST_REQUEST_GRACE, MAX_HEADERS, MIN_BODY_RATE
from .protocol import HTTPProtocol

#: The largest request head (request line and headers) read, as Tornado's default; above it: 431.
MAX_HEADER_SIZE = 64 * 1024
#: The longest request target; above it: 414.
MAX_URL_SIZE = 16 * 1024


class HTTPServer:
    """Serves a ``tornado.web.Application`` on asyncio sockets, one :class:`HTTPProtocol` each."""

    def __init__(
        self,
        app: Any,
        *,
        max_body_size: int,
        max_header_size: int = MAX_HEADER_SIZE,
        max_url_size: int = MAX_URL_SIZE,
        idle_timeout: float = 75.0,
        header_timeout: float = 15.0,
        body_timeout: float = 60.0,
        max_headers: int = MAX_HEADERS,
        min_body_rate: float = MIN_BODY_RATE,
        body_rate_period: float = BODY_RATE_PERIOD,
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.max_url_size = max_url_size
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_headers = max_headers
        self.min_body_rate = min_body_rate
        self.body_rate_period = body_rate_period
        self.connections: set[HTTPProtocol] = set()
        self._held: list[HTTPProtocol] = []  # connections with bytes to write at the end of the turn
        self.draining = False  # stopping: answer what is in flight, start nothing new
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.done: asyncio.Future[None] = None  # type: ignore[assignment]
        self._listeners: list[asyncio.AbstractServer] = []
        self._starting: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._swept = 0.0  # when the last sweep ran

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        """Serve on bound, listening sockets (from within the running event loop)."""
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()  # what a write returns when nothing waits: done
        self.done.set_result(None)
        for sock in sockets:
            self._starting.append(self.loop.create_task(self._listen(sock)))
        if self._sweeper is None:
            self._swept = time.monotonic()
            self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep)

    def hold(self, connection: HTTPProtocol) -> None:
        """``connection`` has bytes to write at the end of this turn of the loop."""
        if not self._held:
            self.loop.call_soon(self.flush)
        self._held.append(connection)

    def flush(self) -> None:
        held, self._held = self._held, []
        for connection in held:
            connection.flush()

    async def _listen(self, sock: socket.socket) -> None:
        self._listeners.append(await self.loop.create_server(lambda: HTTPProtocol(self), sock=sock, backlog=1024))

    def stop(self) -> None:
        """Stop accepting and start draining: idle keep-alive connections close now, busy ones
        after the response in progress, which says ``Connection: close``.

        A connection accepted but yet to send a request is not idle: its client has sent, or is
        sending, a request it expects answered (closing it would reset that request, unread in
        the socket). Its first request is answered with ``Connection: close``; if none has begun
        ``FIRST_REQUEST_GRACE`` seconds later, it is closed.
        """
        for task in self._starting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.draining:
            return
        self.draining = True
        for connection in list(self.connections):
            if connection.idle() and not connection.unused():
                connection.close()
        if self.loop is not None:
            self.loop.call_later(FIRST_REQUEST_GRACE, self._close_unused)

    def _close_unused(self) -> None:
        for connection in list(self.connections):
            if connection.unused():
                connection.close()

    def awaiting_first_requests(self) -> bool:
        """Stopping: whether a connection accepted before the stop may still send its first request."""
        return any(connection.unused() for connection in self.connections)

    async def close_all_connections(self) -> None:
        """Close every connection (their responses sent so far are flushed first) and wait
        for them to go, aborting those still open a second later."""
        self.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            connection.close()
        deadline = time.monotonic() + 1.0
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()

    def _sweep_interval(self) -> float:
        return max(0.05, min(1.0, self.idle_timeout / 4, self.header_timeout / 4, self.body_timeout / 4,
                             self.body_rate_period / 4))

    def _sweep(self) -> None:
        """Close the connections that have been silent, or slow, longer than their limits allow."""
        now = time.monotonic()
        waited, self._swept = now - self._swept, now
        for connection in list(self.connections):
            if connection.idle():
                if now - connection.last_active > self.idle_timeout:
                    connection.timed_out(None)
            elif connection.message_started is not None and now - connection.message_started > self.header_timeout:
                connection.timed_out(ProtocolError(408, f"The request's head did not arrive within {self.header_timeout:g} s."))
            elif connection.parsing is not None:
                if now - connection.last_active > self.body_timeout:
                    connection.timed_out(ProtocolError(408, f"The request's body stopped arriving for {self.body_timeout:g} s."))
                elif self.min_body_rate and not connection.body_fast_enough(waited):
                    connection.timed_out(ProtocolError(408, f"The request's body arrived slower than "
                                                            f"{self.min_body_rate:g} bytes/s."))
        self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep)
