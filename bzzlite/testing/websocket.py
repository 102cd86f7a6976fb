"""WebSocket sessions of the in-process test clients (``client.websocket_connect(path)``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, MutableMapping
from typing import Any, TypeVar

from ..asgi.adapter import ASGIAdapter

T = TypeVar("T")


class WebSocketRefused(Exception):
    """The app refused the upgrade: ``status`` (401, 403...) and its problem+json ``body``."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(f"WebSocket refused with {status}: {body}")
        self.status = status
        self.body = body


class WebSocketClosed(Exception):
    """The app closed the socket with ``code`` (1000, 1001, 1009, 4008...)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class AsyncWebSocket:
    """One WebSocket to the app, in the current event loop."""

    def __init__(self, adapter: ASGIAdapter, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        raw_path, _, query = path.partition("?")
        self.scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": raw_path,
                      "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
                      "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
                      "subprotocols": [], "extensions": {"websocket.http.response": {}}}
        self.adapter = adapter
        self._to_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.close_code: int | None = None

    async def open(self) -> AsyncWebSocket:
        self._task = asyncio.ensure_future(self.adapter(self.scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "websocket.connect"})
        first = await self._next(10)
        if first["type"] == "websocket.accept":
            return self
        await self._finish()
        if first["type"] == "websocket.http.response.start":
            body = b""
            while True:
                part = await self._next(10)
                body += part.get("body", b"")
                if not part.get("more_body"):
                    break
            raise WebSocketRefused(first["status"], json.loads(body) if body else None)
        raise WebSocketRefused(403)  # closed before the accept: what a server answers

    async def _next(self, timeout: float) -> MutableMapping[str, Any]:
        return await asyncio.wait_for(self._from_app.get(), timeout)

    async def send_json(self, value: Any) -> None:
        await self.send_text(json.dumps(value))

    async def send_text(self, text: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def receive_json(self, timeout: float = 10) -> Any:
        """The next message the app sends, parsed; ``WebSocketClosed`` when it closes instead."""
        message = await self._next(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            raise WebSocketClosed(message.get("code", 1000), message.get("reason", ""))
        return json.loads(message["text"] if message.get("text") is not None else message["bytes"])

    async def close(self, code: int = 1000) -> None:
        await self._to_app.put({"type": "websocket.disconnect", "code": code})
        await self._finish()

    async def _finish(self) -> None:
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    async def __aenter__(self) -> AsyncWebSocket:  # noqa: PYI034 - open() may raise WebSocketRefused
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class WebSocket:
    """:class:`AsyncWebSocket` driven from synchronous code, on the test client's loop thread."""

    def __init__(self, socket: AsyncWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.socket = socket
        self.loop = loop

    def _run(self, call: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout)

    @property
    def close_code(self) -> int | None:
        return self.socket.close_code

    def send_json(self, value: Any) -> None:
        self._run(self.socket.send_json(value))

    def send_text(self, text: str) -> None:
        self._run(self.socket.send_text(text))

    def receive_json(self, timeout: float = 10) -> Any:
        return self._run(self.socket.receive_json(timeout), timeout + 5)

    def close(self, code: int = 1000) -> None:
        self._run(self.socket.close(code))

    def __enter__(self) -> WebSocket:  # noqa: PYI034 - a session, not a subclassable context
        self._run(self.socket.open())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def socket_headers(client: Any, headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    """The upgrade request's headers: the client's own, its cookies, then ``headers``."""
    merged = {"host": "testserver", **{k.lower(): v for k, v in client.headers.items() if k.lower() != "connection"}}
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)
    if cookies:
        merged["cookie"] = cookies
    merged.update({k.lower(): v for k, v in (headers or {}).items()})
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
