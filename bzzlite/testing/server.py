"""Helpers for testing bzzlite apps: a real server on a free port, a client, signal recording.

    from bzzlite.testing import serve

    def test_create():
        with serve(app) as client:
            response = client.post("/todo_item", json={"title": "x"})
            assert response.code == 201
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json as jsonlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import tornado.netutil
from blinker import ANY

from ..handlers.base import server_body_limit
from ..http import jsoncodec as _json
from ..http import make_server
from ..http import run as run_loop


@dataclass
class Response:
    """What the server answered."""

    code: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class Client:
    """A small blocking HTTP client bound to one server (one connection per request)."""

    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: dict[str, Any] | list[tuple[str, Any]] | None = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        """Send a request; ``json=`` encodes JSON, ``data=`` form fields, ``body=`` raw bytes."""
        sent = dict(self.headers)
        if json is not None:
            body = _json.dumps(json)
            sent["Content-Type"] = "application/json"
        elif data is not None:
            body = urlencode(data, doseq=True)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params, doseq=True)
        sent.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            reply = conn.getresponse()
            return Response(reply.status, reply.headers, reply.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", http: str | None = None) -> Iterator[Client]:
    """Run ``app`` on a free loopback port in a background thread for the block's duration.

    ``http`` picks the server as ``serve --http`` does (``auto``, ``httptools``, ``tornado``), or
    ``asgi``: the app through :class:`bzzlite.asgi.ASGIAdapter` under uvicorn (needs uvicorn);
    without it, env ``BZZLITE_TEST_HTTP``, else ``auto`` (the server ``serve`` uses: bzzlite's
    own on httptools when installed, Tornado's otherwise).
    """
    kind = http or os.environ.get("BZZLITE_TEST_HTTP") or "auto"
    if kind == "asgi":
        with _serve_asgi(app, host) as client:
            yield client
        return
    sockets = tornado.netutil.bind_sockets(0, host)
    port = sockets[0].getsockname()[1]
    started = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            server = make_server(kind, app, max_body_size=_server_body_limit(app))
            server.add_sockets(sockets)
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = stop = asyncio.Event()
            started.set()
            await stop.wait()
            server.stop()
            await server.close_all_connections()
            shutdown = getattr(app, "shutdown", None)
            if shutdown is not None:
                await shutdown()

        run_loop(main(), kind)

    thread = threading.Thread(target=run, name=f"bzzlite-test-{port}", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test server did not start")
    try:
        yield Client(host, port)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


@contextlib.contextmanager
def _serve_asgi(app: Any, host: str) -> Iterator[Client]:
    """``app`` through :class:`bzzlite.asgi.ASGIAdapter` under uvicorn (its lifespan included)."""
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError("serve(http='asgi') runs uvicorn: pip install uvicorn") from None

    from ..asgi.adapter import ASGIAdapter

    class Server(uvicorn.Server):
        stop: asyncio.Event

        async def main_loop(self) -> None:  # stop when told, not at uvicorn's next 0.1 s tick
            await self.stop.wait()

    sockets = tornado.netutil.bind_sockets(0, host)
    port = sockets[0].getsockname()[1]
    # h11: any method token ("BREW" gets its 405 from the app, not httptools' 400); streams
    # still open when the block ends are cancelled after 1 s (uvicorn waits for them)
    config = uvicorn.Config(ASGIAdapter(app), lifespan="on", log_level="warning", http="h11",
                            timeout_graceful_shutdown=1)
    server = Server(config)
    state: dict[str, Any] = {}

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        server.stop = asyncio.Event()
        await server.serve(sockets=sockets)

    thread = threading.Thread(target=run_loop, args=(main(), "httptools"), name=f"bzzlite-asgi-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start the test server")
        time.sleep(0.005)
    try:
        yield Client(host, port)
    finally:
        state["loop"].call_soon_threadsafe(server.stop.set)
        thread.join(10)


def _server_body_limit(app: Any) -> int:
    settings = getattr(app, "bzz_settings", None)
    return server_body_limit(settings.max_body_size if settings is not None else 10 * 1024 * 1024)


@contextlib.contextmanager
def record(signal: Any, sender: Any = ANY) -> Iterator[list[dict[str, Any]]]:
    """Record each send of ``signal`` as a dict ``{"sender": ..., **kwargs}`` within the block."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    with signal.connected_to(receiver, sender=sender):
        yield calls
