"""bzzlite's HTTP/1.1 server: listening sockets, the connections' timeouts and a graceful stop.

It has the methods of Tornado's ``HTTPServer`` that bzzlite's command line and test helper use
(``add_sockets``, ``stop``, ``close_all_connections``), so either server can be dropped in.

Timeouts are enforced by one sweep a second rather than a timer per request:

- ``idle_timeout``: a keep-alive connection waiting for its next request is closed (as
  :meth:`HTTPProtocol.linger` closes: its client may be sending that request now);
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
from .limits import BODY_RATE_PERIOD, LINGER, MAX_HEADERS, MIN_BODY_RATE, REQUEST_GRACE
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
        self._drain_started = 0.0
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
        """Stop accepting and start draining: every response from now on says ``Connection:
        close`` and ends its connection; a connection waiting for a request is left open for
        ``REQUEST_GRACE`` seconds (from the stop, or from its last response), then closed.

        Closing a connection between requests at once would race its client: a pooled client
        may be sending its next request on it at that moment, and that request would be lost
        (reset, unread, in the socket). Within the grace such a request is answered; the
        connections that stay idle are closed with :meth:`HTTPProtocol.linger`, so a client
        that sends at the very moment they close reads a clean end of stream, which HTTP
        clients take as the sign to retry, and not a reset. A connection accepted just before
        the stop is treated the same: its first request may already be on its way.
        """
        for task in self._starting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.draining:
            return
        self.draining = True
        self._drain_started = time.monotonic()
        if self.loop is not None:
            self.loop.call_later(REQUEST_GRACE, self._close_idle)

    def _close_idle(self) -> None:
        """Draining: close the connections idle for ``REQUEST_GRACE``; look again while others
        are open (a response whose headers said keep-alive before the stop leaves its
        connection idle once it ends)."""
        now = time.monotonic()
        soonest: float | None = None
        for connection in list(self.connections):
            if connection.idle():
                left = max(self._drain_started, connection.last_active) + REQUEST_GRACE - now
                if left <= 0:
                    connection.linger()
                    continue
            elif connection.closing():
                continue
            else:
                left = REQUEST_GRACE
            soonest = left if soonest is None else min(soonest, left)
        if soonest is not None:
            self.loop.call_later(soonest, self._close_idle)

    def drained(self) -> bool:
        """Stopping: whether every connection has ended or is closing (a busy one ends after its
        response, one waiting for a request ``REQUEST_GRACE`` seconds after the stop or its last
        response)."""
        return all(connection.closing() for connection in self.connections)

    async def close_all_connections(self) -> None:
        """Close every connection (their responses sent so far are flushed first) and wait
        for them to go, aborting those still open ``LINGER`` seconds later (those closing
        between requests wait for their clients to close until then)."""
        self.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            if not connection.lingering():
                connection.close()
        deadline = time.monotonic() + LINGER
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
