"""Tornado ``WebSocketHandler`` s on ASGI ``websocket`` scopes (see :mod:`bzzlite.asgi`).

The handler runs as under Tornado (``prepare``, the origin check, ``open``, ``on_message``,
``on_close``, ``write_message``, ``close``); only the protocol object Tornado would build to
read and write frames is replaced by one speaking ASGI messages, as frames, pings and pongs
are the ASGI server's work.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import tornado.escape
import tornado.websocket
from tornado import httputil

from .connection import (
    Connection,
    Receive,
    Scope,
    Send,
    already_done,
    header_pairs,
)

#: what the handshake answer carries that the ASGI server writes itself
_HANDSHAKE = ("Upgrade", "Connection", "Sec-Websocket-Accept")


def socket_class(handler_class: type[tornado.websocket.WebSocketHandler]) -> type:
    """``handler_class`` (same name) building an ASGI protocol instead of Tornado's."""
    def get_websocket_protocol(handler: tornado.websocket.WebSocketHandler) -> SocketProtocol:
        return SocketProtocol(handler)

    return type(handler_class.__name__, (handler_class,), {
        "get_websocket_protocol": get_websocket_protocol, "__module__": handler_class.__module__,
        "__qualname__": handler_class.__qualname__})


class SocketConnection(Connection):
    """A ``websocket`` scope's connection: a refusal is an HTTP answer, a 101 the accept."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(scope, send)
        self.receive = receive
        self.can_refuse = "websocket.http.response" in (scope.get("extensions") or {})
        self.accepted = False
        self.subprotocol: str | None = None
        self.refusal: dict[str, Any] | None = None  # the HTTP answer refusing the upgrade, sent at finish
        self.body: list[bytes] = []

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders,
                      chunk: bytes | None = None) -> asyncio.Future[None]:
        if start_line.code == 101:
            self.accepted = True
            return self.stream.put({"type": "websocket.accept", "subprotocol": self.subprotocol,
                                    "headers": header_pairs(headers, _HANDSHAKE)})
        if not self.can_refuse:  # the server answers a handshake closed before the accept with 403
            return self.stream.put({"type": "websocket.close", "code": 1008})
        self.refusal = {"type": "websocket.http.response.start", "status": start_line.code,
                        "headers": header_pairs(headers)}
        return self.write(chunk) if chunk else already_done()

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        if self.refusal is not None:  # a refusal's body is sent whole (granian reads one body message)
            self.body.append(chunk)
        return already_done()  # an open socket writes messages, not HTTP body

    def finish(self) -> None:
        if self.accepted:
            return  # the socket is open: its protocol ends the request when it closes
        finished = already_done()
        if self.refusal is not None:
            self.stream.put(self.refusal)
            finished = self.stream.put({"type": "websocket.http.response.body", "body": b"".join(self.body)})
        finished.add_done_callback(self._finished)


class SocketProtocol:
    """Stands in for Tornado's ``WebSocketProtocol13`` on an ASGI connection."""

    def __init__(self, handler: tornado.websocket.WebSocketHandler) -> None:
        connection = handler.request.connection
        assert isinstance(connection, SocketConnection)
        self.handler = handler
        self.connection = connection
        self.stream = connection.stream  # what handlers bound with max_write_buffer_size
        self.selected_subprotocol: str | None = None

    async def accept_connection(self, handler: tornado.websocket.WebSocketHandler) -> None:
        offered = handler.request.headers.get("Sec-WebSocket-Protocol")
        if offered:
            self.selected_subprotocol = handler.select_subprotocol([p.strip() for p in offered.split(",")])
            self.connection.subprotocol = self.selected_subprotocol
        handler.set_status(101)
        handler.clear_header("Content-Type")
        handler.finish()  # the 101: websocket.accept
        try:
            opened = handler.open(*handler.open_args, **handler.open_kwargs)
            if opened is not None:
                await opened
            await self._receive_loop()
        except Exception:  # noqa: BLE001 - a handler's bug: logged, the socket closed with 1011
            handler.log_exception(*sys.exc_info())
            self.close(1011, "internal error")
            while (await self.connection.receive())["type"] != "websocket.disconnect":
                pass
            handler.on_ws_connection_close(1011, None)
        finally:
            self.stream.gone = True
            self.connection.closed()

    async def _receive_loop(self) -> None:
        handler = self.handler
        limit = handler.max_message_size
        while True:
            message = await self.connection.receive()
            if message["type"] == "websocket.disconnect":
                self.stream.gone = True
                handler.on_ws_connection_close(message.get("code"), message.get("reason"))
                return
            if message["type"] != "websocket.receive" or self.stream.gone:
                continue  # once closing, what the client still sends is dropped, as Tornado does
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if limit is not None and len(data) > limit:
                self.close(1009, "message too big")
                continue
            handled = handler.on_message(data)
            if handled is not None:
                await handled

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> asyncio.Future[None]:
        if self.stream.gone:
            raise tornado.websocket.WebSocketClosedError()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        data = message.encode("utf-8") if isinstance(message, str) else message
        event = {"type": "websocket.send", "bytes": data} if binary else \
            {"type": "websocket.send", "text": data.decode("utf-8")}
        return self.stream.put(event, len(data))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not self.stream.gone:
            self.stream.put({"type": "websocket.close", "code": code or 1000, "reason": reason or ""})
            self.stream.gone = True  # after the close message: nothing more is sent

    def is_closing(self) -> bool:
        return self.stream.gone

    def on_connection_close(self) -> None:
        self.stream.gone = True

    def ping(self, data: bytes = b"") -> None:
        """Pings are the ASGI server's (uvicorn's ``--ws-ping-interval``, ...)."""

    def set_nodelay(self, value: bool) -> None:
        """The ASGI server owns the socket."""
