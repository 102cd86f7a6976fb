"""Serve an :class:`~bzzlite.App` from any ASGI server (uvicorn, hypercorn, granian...).

    # asgi.py
    from bzzlite.asgi import ASGIAdapter
    from shop import app

    application = ASGIAdapter(app)      # uvicorn asgi:application

Each ASGI ``http`` request becomes a Tornado request handled by the app's own handlers, so
routing, errors, CORS, auth and signals are the ones ``bzzlite serve`` runs; the response is
sent back as ASGI messages (streamed responses such as Server-Sent Events included). The
``lifespan`` protocol opens and closes the store. WebSocket connections are refused (close
code 1003) for now: follow change feeds over Server-Sent Events under ASGI servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from types import SimpleNamespace
from typing import Any

from tornado import httputil

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ASGIAdapter:
    """An ASGI 3 application serving ``app`` (a bzzlite App, or any Tornado Application)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})

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
                    import logging

                    logging.getLogger("bzzlite").warning("store unavailable at start-up (%s)", exc)
                    continue
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                shutdown = getattr(self.app, "shutdown", None)
                if shutdown is not None:
                    await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = _Connection(scope, send)
        headers = httputil.HTTPHeaders()
        for name, value in scope["headers"]:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string") or b""
        uri = (path + (b"?" + query if query else b"")).decode("latin-1")
        start_line = httputil.RequestStartLine(scope["method"], uri, "HTTP/" + scope.get("http_version", "1.1"))
        request = httputil.HTTPServerRequest(method=scope["method"], uri=uri, version=start_line.version,
                                             headers=headers, connection=connection,
                                             start_line=start_line)
        delegate = self.app.find_handler(request)
        ready = delegate.headers_received(start_line, headers)
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


async def _wait_disconnect(receive: Receive, connection: _Connection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            connection.closed()
            return


class _Connection(httputil.HTTPConnection):
    """What a Tornado request writes its response to, sent on as ASGI messages in order."""

    def __init__(self, scope: Scope, send: Send) -> None:
        client = scope.get("client") or ("127.0.0.1", 0)
        self.context = SimpleNamespace(remote_ip=client[0], protocol=scope.get("scheme", "http"))
        self._send = send
        self._lock = asyncio.Lock()
        self._close_callback: Callable[[], None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _queue(self, message: dict[str, Any]) -> asyncio.Future[None]:
        async def send() -> None:
            async with self._lock:  # FIFO: messages leave in the order they were written
                if not self.done.done() or message.get("more_body") is False:
                    await self._send(message)

        return asyncio.ensure_future(send())

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders,
                      chunk: bytes | None = None) -> asyncio.Future[None]:
        pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.get_all()
                 if k != "Date"]  # the ASGI server sends its own
        sent = self._queue({"type": "http.response.start", "status": start_line.code, "headers": pairs})
        if chunk:
            sent = self._queue({"type": "http.response.body", "body": chunk, "more_body": True})
        return sent

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self._queue({"type": "http.response.body", "body": chunk, "more_body": True})

    def finish(self) -> None:
        finished = self._queue({"type": "http.response.body", "body": b"", "more_body": False})
        finished.add_done_callback(self._finished)

    def _finished(self, sent: asyncio.Future[None]) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def closed(self) -> None:
        """The client went away: tell the handler (a stream stops), end the request."""
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()
        if not self.done.done():
            self.done.set_result(None)
