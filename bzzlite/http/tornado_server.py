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
  connections go on being served; here the idle ones are closed and a busy one's response in
  progress ends it (``Connection: close`` when its headers are not yet out). A connection
  accepted just before the stop has its first request answered, as with bzzlite's own server.
"""

from __future__ import annotations

import time
from typing import Any

from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream

from .limits import FIRST_REQUEST_GRACE


def _nodelay_kept(value: bool) -> None:
    """``IOStream.set_nodelay`` of a stream whose no-delay flag was set once for good."""


class Server(HTTPServer):
    """``tornado.httpserver.HTTPServer`` with the per-request costs above removed; same arguments."""

    idle_timeout: float
    _sweeper: PeriodicCallback | None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.idle_timeout = self.conn_params.header_timeout or 3600.0  # what Tornado would enforce
        self.conn_params.header_timeout = None  # no timer around each header read: _sweep instead
        self._sweeper = None

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _nodelay_kept  # type: ignore[method-assign]
        if self._sweeper is None:  # on the loop that serves the connections
            self._sweeper = PeriodicCallback(self._sweep, min(60.0, max(0.05, self.idle_timeout / 10)) * 1000)
            self._sweeper.start()
        super().handle_stream(stream, address)

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        server_conn.bzz_first = not hasattr(server_conn, "bzz_waiting")
        server_conn.bzz_waiting = (request_conn, time.monotonic())  # reading headers from now on
        return super().start_request(server_conn, request_conn)

    def _sweep(self) -> None:
        """Close the connections that have waited for a request's headers longer than the timeout."""
        deadline = time.monotonic() - self.idle_timeout
        for conn in list(self._connections):
            waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
            if waiting is None or waiting[1] > deadline:
                continue
            if waiting[0]._request_start_line is None:  # its headers have not all arrived
                _close(conn)

    def stop(self) -> None:
        """Stop accepting; idle keep-alive connections close now, busy ones after their response
        (``Connection: close``); one yet to send its first request gets ``FIRST_REQUEST_GRACE``
        seconds to (as ``bzzlite.http.server.HTTPServer.stop``)."""
        super().stop()
        self.conn_params.no_keep_alive = True  # shared by the connections: every response ends its own
        for conn in list(self._connections):
            waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
            if waiting is not None and waiting[0]._request_start_line is not None:
                waiting[0]._disconnect_on_finish = True  # its response says Connection: close, then it ends
            elif not _unused(conn):
                _close(conn)  # between requests: nothing is lost
        IOLoop.current().call_later(FIRST_REQUEST_GRACE, self._close_unused)

    def _close_unused(self) -> None:
        for conn in list(self._connections):
            if _unused(conn):
                _close(conn)

    def awaiting_first_requests(self) -> bool:
        """Stopping: whether a connection accepted before the stop may still send its first request."""
        return any(_unused(conn) for conn in self._connections)

    async def close_all_connections(self) -> None:
        await super().close_all_connections()
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None


def _unused(conn: HTTP1ServerConnection) -> bool:
    """Accepted, and the head of its first request has not arrived."""
    waiting: tuple[HTTP1Connection, float] | None = getattr(conn, "bzz_waiting", None)
    return waiting is None or (getattr(conn, "bzz_first", False) and waiting[0]._request_start_line is None)


def _close(conn: HTTP1ServerConnection) -> None:
    """End an idle connection as Tornado's header timeout does: close the stream; the
    connection's read fails and its request loop ends."""
    conn.stream.close()
