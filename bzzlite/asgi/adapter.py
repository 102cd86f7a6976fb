"""Serve an :class:`~bzzlite.App` from any ASGI server (uvicorn, hypercorn, granian...).

    # asgi.py
    from bzzlite.asgi import ASGIAdapter
    from shop import app

    application = ASGIAdapter(app)      # uvicorn asgi:application

Each ASGI ``http`` request becomes a Tornado request handled by the app's own handlers, so
routing, errors, CORS, auth and signals are the ones ``bzzlite serve`` runs; the response is
sent back as ASGI messages (streamed responses such as Server-Sent Events included). The
``lifespan`` protocol opens and closes the store.

An ASGI ``websocket`` connection is routed the same way: a Tornado ``WebSocketHandler`` (the
``/{name}/_changes`` feeds, or your own) runs its ``prepare`` and origin check, a refusal is
answered as an HTTP response (problem+json) where the server offers the
``websocket.http.response`` extension and as a closed handshake (403) elsewhere, then
``open``/``on_message``/``on_close`` run on ASGI messages instead of Tornado's frames. Ping
and pong frames are the ASGI server's business; a route without a WebSocket handler is
refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.websocket
from tornado import httputil

from ..settings import mount_path
from .connection import Connection, Receive, Scope, Send
from .websocket import SocketConnection, socket_class

log = logging.getLogger("bzzlite")


class ASGIAdapter:
    """An ASGI 3 application serving ``app`` (a bzzlite App, or any Tornado Application)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._socket_classes: dict[type, type] = {}  # WebSocketHandler -> its ASGI-speaking subclass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup = getattr(self.app, "startup", None)
                try:
                    if startup is not None:
                        await startup()
                except Exception as exc:  # noqa: BLE001 - a store that is down: 503s until it answers
                    await send({"type": "lifespan.startup.complete"})
                    log.warning("store unavailable at start-up (%s)", exc)
                    continue
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                shutdown = getattr(self.app, "shutdown", None)
                if shutdown is not None:
                    await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._mounted(scope)
        connection = Connection(scope, send)
        start_line, request = _request(scope, connection, scope["method"])
        delegate = self.app.find_handler(request)
        ready = delegate.headers_received(start_line, request.headers)
        if ready is not None:
            await ready
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                connection.closed()
                delegate.on_connection_close()
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if body:
                received = delegate.data_received(body)
                if received is not None:
                    await received
        delegate.finish()
        watcher = asyncio.ensure_future(_wait_disconnect(receive, connection))
        try:
            await connection.done
        finally:
            watcher.cancel()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        self._mounted(scope)
        connection = SocketConnection(scope, receive, send)
        start_line, request = _request(scope, connection, "GET")
        request.headers["Upgrade"] = "websocket"  # what a websocket scope is; Tornado's handler checks them
        request.headers["Connection"] = "Upgrade"
        delegate = self.app.find_handler(request)
        handler_class = getattr(delegate, "handler_class", None)
        if not (isinstance(handler_class, type) and issubclass(handler_class, tornado.websocket.WebSocketHandler)):
            await send({"type": "websocket.close", "code": 1000})  # no WebSocket here: the server answers 403
            return
        delegate.handler_class = self._socket_classes.get(handler_class) or socket_class(handler_class)
        self._socket_classes[handler_class] = delegate.handler_class
        ready = delegate.headers_received(start_line, request.headers)
        if ready is not None:
            await ready
        delegate.finish()
        await connection.done

    def _mounted(self, scope: Scope) -> None:
        """The ASGI server's root path (``uvicorn --root-path /api``) becomes the app's own
        (``App(root_path=...)``): routes match without it, ``Location``/``Link`` URLs and the
        OpenAPI ``servers`` carry it. A root path the app was given is left as it is."""
        settings = getattr(self.app, "bzz_settings", None)
        if settings is not None and not settings.root_path and scope.get("root_path"):
            settings.root_path = mount_path(scope["root_path"])


def _request(scope: Scope, connection: httputil.HTTPConnection,
             method: str) -> tuple[httputil.RequestStartLine, httputil.HTTPServerRequest]:
    """The Tornado request an ASGI scope describes, answered through ``connection``."""
    headers = httputil.HTTPHeaders()
    for name, value in scope["headers"]:
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
    path = scope.get("raw_path") or scope["path"].encode("utf-8")
    root = (scope.get("root_path") or "").rstrip("/").encode("utf-8")
    if root and (path == root or path.startswith(root + b"/")):
        # The server's mount comes off once. Servers differ: uvicorn puts its root path in front of
        # the path it received (as ASGI says), hypercorn and granian pass that path as it came. What
        # is left is what the proxy sent, with its prefix or without: the app's root path (the same,
        # see _mounted) takes a prefix off when there is one.
        path = path[len(root):] or b"/"
    query = scope.get("query_string") or b""
    uri = (path + (b"?" + query if query else b"")).decode("latin-1")
    start_line = httputil.RequestStartLine(method, uri, "HTTP/" + scope.get("http_version", "1.1"))
    request = httputil.HTTPServerRequest(headers=headers, connection=connection, start_line=start_line)
    return start_line, request


async def _wait_disconnect(receive: Receive, connection: Connection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            connection.closed()
            return
