"""The HTTP server bzzlite serves with: Tornado's, minus per-request work nobody asked for.

What a client sees is what Tornado's ``HTTPServer`` sends; the differences are in how much
CPU each request costs the server:

- **TCP_NODELAY stays on.** Tornado turns Nagle's algorithm off at the end of every response
  (so the last bytes leave at once) and back on before the next request: two ``setsockopt``
  calls per request, each behind a Python-level check of the socket's family. Here it is off
  once, for the connection's life. A response written at once (every bzzlite document, list
  and error) goes out in the same packets; a streamed one (change feeds) is no longer held
  back by Nagle between its writes.
"""

from __future__ import annotations

from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream


def _nodelay_kept(value: bool) -> None:
    """``IOStream.set_nodelay`` of a stream whose no-delay flag was set once for good."""


class Server(HTTPServer):
    """``tornado.httpserver.HTTPServer`` with the per-request costs above removed."""

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _nodelay_kept  # type: ignore[method-assign]
        super().handle_stream(stream, address)
