"""The HTTP servers bzzlite serves an ``App`` with, and how one is chosen.

``httptools``: bzzlite's own HTTP/1.1 server (:mod:`bzzlite.http.server`), an asyncio protocol
on the httptools parser, run on uvloop when it is installed: the default. ``tornado``: Tornado's
``HTTPServer`` (:mod:`bzzlite.http.tornado_server`). ``auto`` picks httptools, or Tornado with one log line
when httptools is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("bzzlite")

CHOICES = ("auto", "httptools", "tornado")


def resolve(kind: str) -> str:
    """``httptools`` or ``tornado`` for a ``--http`` choice."""
    if kind not in CHOICES:
        raise ValueError(f"unknown HTTP server {kind!r}; choose one of {', '.join(CHOICES)}")
    if kind == "tornado":
        return kind
    if importlib.util.find_spec("httptools") is None:
        if kind == "httptools":
            raise ValueError("--http httptools needs the httptools package (pip install httptools)")
        log.info("httptools is not installed: serving with Tornado's HTTP server")
        return "tornado"
    return "httptools"


def make_server(kind: str, app: Any, *, max_body_size: int) -> Any:
    """A server for ``app`` (``add_sockets``, ``stop``, ``close_all_connections``), with the
    limits its settings give (``max_headers``, ``min_body_rate``, ``body_rate_period``)."""
    from .limits import server_limits

    if resolve(kind) == "httptools":
        from .server import HTTPServer

        return HTTPServer(app, max_body_size=max_body_size, **server_limits(app))
    from .tornado_server import Server

    return Server(app, max_body_size=max_body_size, **server_limits(app))


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the httptools server when uvloop is installed; else asyncio's."""
    if resolve(kind) != "httptools" or importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, Any], kind: str) -> Any:
    """``asyncio.run(main)`` on the event loop that suits the ``kind`` of server."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
