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

from ..http import jsoncodec
from ..http.dispatch import Request
from ..http.errors import PROBLEM_JSON, ProtocolError, problem
from ..http.headers import Headers
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
        try:
            start_line, request = _request(scope, connection, scope["method"])
        except ProtocolError as error:
            _refused(scope, error)
            await _send_problem(send, "http.response", error)
            return
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
        try:
            start_line, request = _request(scope, connection, "GET")
        except ProtocolError as error:
            _refused(scope, error)
            if connection.can_refuse:
                await _send_problem(send, "websocket.http.response", error)
            else:  # the server answers a handshake closed before the accept with 403
                await send({"type": "websocket.close", "code": 1008})
            return
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


#: ``http_version`` values of ASGI scopes served; "0.9" is refused (400) as a request line
#: without a version, any other (uvicorn and hypercorn pass on an ``HTTP/2.0`` request line
#: read over HTTP/1.1 as "2.0") with 505, as bzzlite's own server does
VERSIONS = frozenset({"1.0", "1.1", "2", "3"})


def _request(scope: Scope, connection: httputil.HTTPConnection,
             method: str) -> tuple[httputil.RequestStartLine, httputil.HTTPServerRequest]:
    """The Tornado request an ASGI scope describes, answered through ``connection``.

    Raises:
        ProtocolError: a request Tornado cannot make a request of (no Host, two, a version
            not served): the client's mistake, which the ASGI server let through.
    """
    version = scope.get("http_version", "1.1")
    if version not in VERSIONS:
        if version == "0.9":
            raise ProtocolError(400, "Malformed request: HTTP/0.9 is not served; send an HTTP/1.1 request line.")
        raise ProtocolError(505, f"HTTP/{version} is not served over this connection; use HTTP/1.1.")
    headers = Headers()
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
    start_line = httputil.RequestStartLine(method, uri, "HTTP/" + version)
    try:
        request = Request(connection, None, start_line, headers)
    except httputil.HTTPInputError as exc:  # no Host, two, or one that is not a host
        raise ProtocolError(400, f"Malformed request: {exc}.") from None
    return start_line, request


def _refused(scope: Scope, error: ProtocolError) -> None:
    """One line for a request refused as the client's mistake, as bzzlite's own server logs it."""
    client = scope.get("client") or ("-",)
    log.info("%s from %s: %s", error.status, client[0], error.detail)


async def _send_problem(send: Send, kind: str, error: ProtocolError) -> None:
    """Answer ``error`` as problem+json, through ``kind`` (``http.response`` or its WebSocket twin)."""
    body = jsoncodec.dumps(problem(error.status, error.detail))
    await send({"type": f"{kind}.start", "status": error.status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": f"{kind}.body", "body": body})


async def _wait_disconnect(receive: Receive, connection: Connection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            connection.closed()
            return
