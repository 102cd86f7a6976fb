"""What a Tornado request served by :class:`bzzlite.asgi.ASGIAdapter` writes its response to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from types import SimpleNamespace
from typing import Any

from tornado import httputil
from tornado.iostream import StreamBufferFullError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Outbox:
    """One connection's ASGI messages, sent in the order written, with the part of Tornado's
    ``IOStream`` that streaming handlers use for flow control.

    ``max_write_buffer_size`` bounds the bytes written and not yet taken by the ASGI server
    (which stops taking them while the client does not read): a write beyond it raises
    ``StreamBufferFullError`` as Tornado's stream does, so a Server-Sent Events or WebSocket
    feed disconnects a client that fell behind instead of queueing for it without end.
    ``write(b"")`` waits for what was written before it; ``close()`` drops what is left.
    """

    def __init__(self, send: Send, on_close: Callable[[], None]) -> None:
        self._send = send
        self._on_close = on_close
        self._lock = asyncio.Lock()
        self._in_flight: set[asyncio.Future[None]] = set()
        self._last: asyncio.Future[None] | None = None
        self.max_write_buffer_size: int | None = None
        self.pending = 0  # bytes written, not yet sent
        self.gone = False

    def put(self, message: dict[str, Any], size: int = 0) -> asyncio.Future[None]:
        if size and self.max_write_buffer_size is not None and self.pending + size > self.max_write_buffer_size:
            raise StreamBufferFullError("Reached maximum write buffer size")
        self.pending += size
        sent = asyncio.ensure_future(self._deliver(message, size))
        self._in_flight.add(sent)
        sent.add_done_callback(self._in_flight.discard)
        self._last = sent
        return sent

    async def _deliver(self, message: dict[str, Any], size: int) -> None:
        try:
            async with self._lock:  # FIFO: messages leave in the order they were written
                await self._send(message)
        except Exception:  # noqa: BLE001 - the client left; its disconnect message ends the request
            self.gone = True
        finally:
            self.pending -= size

    def closed(self) -> bool:
        return self.gone

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Only ``write(b"")`` (wait until what is queued is sent): data goes through the handler."""
        assert not data, "write through the handler"
        if self._last is None or self._last.done():
            return already_done()
        return asyncio.ensure_future(asyncio.shield(self._last))

    def close(self) -> None:
        """Drop what is still queued (a client that stopped reading) and end the request."""
        self.gone = True
        for sent in list(self._in_flight):
            sent.cancel()
        self._on_close()


class Connection(httputil.HTTPConnection):
    """An ``http`` scope's response: Tornado's writes become ASGI messages, in order."""

    def __init__(self, scope: Scope, send: Send) -> None:
        client = scope.get("client") or ("127.0.0.1", 0)
        scheme = scope.get("scheme", "http")
        self.context = SimpleNamespace(remote_ip=client[0], protocol={"ws": "http", "wss": "https"}.get(scheme, scheme))
        self.stream = Outbox(send, self.closed)
        self._close_callback: Callable[[], None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders,
                      chunk: bytes | None = None) -> asyncio.Future[None]:
        sent = self.stream.put({"type": "http.response.start", "status": start_line.code,
                                "headers": header_pairs(headers)})
        if chunk:
            sent = self.stream.put({"type": "http.response.body", "body": chunk, "more_body": True}, len(chunk))
        return sent

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self.stream.put({"type": "http.response.body", "body": chunk, "more_body": True}, len(chunk))

    def finish(self) -> None:
        finished = self.stream.put({"type": "http.response.body", "body": b"", "more_body": False})
        finished.add_done_callback(self._finished)

    def _finished(self, sent: asyncio.Future[None]) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def closed(self) -> None:
        """The client went away: tell the handler (a stream stops), end the request."""
        self.stream.gone = True
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()
        if not self.done.done():
            self.done.set_result(None)


def already_done() -> asyncio.Future[None]:
    """A future already done: a write with nothing to wait for."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def header_pairs(headers: httputil.HTTPHeaders, leave: tuple[str, ...] = ()) -> list[tuple[bytes, bytes]]:
    """ASGI's header list; ``Date`` is the server's to send."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.get_all()
            if k != "Date" and k not in leave]
