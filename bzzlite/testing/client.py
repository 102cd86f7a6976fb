"""In-process test clients with httpx's API, on :class:`bzzlite.asgi.ASGIAdapter` (needs httpx).

    from bzzlite.testclient import TestClient

    def test_notes():
        with TestClient(app) as client:
            client.login({"id": "ann", "name": "Ann"})         # signed in, no provider involved
            response = client.post("/note", json={"text": "x"})
            assert response.status_code == 201

No port, no thread per request: requests go straight to the app's handlers. Responses are
read whole, so a Server-Sent Events stream cannot be followed through these clients: follow
changes over the WebSocket feed instead, or use ``bzzlite.testing.serve``::

        with client.websocket_connect("/note/_changes") as ws:     # cookies and login() apply
            ws.send_json({"type": "subscribe", "id": "all"})
            assert ws.receive_json()["type"] == "ready"

A refused upgrade raises ``WebSocketRefused`` (``.status``, ``.body``: the problem+json), a
socket the app closes raises ``WebSocketClosed`` (``.code``) from ``receive_json``.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from http.cookiejar import eff_request_host
from typing import Any

import httpx

from ..asgi.adapter import ASGIAdapter
from .websocket import AsyncWebSocket, WebSocket, WebSocketClosed, WebSocketRefused, socket_headers

__all__ = ["AsyncTestClient", "TestClient", "WebSocketClosed", "WebSocketRefused", "session_cookie"]

BASE_URL = "http://testserver"
#: sent with every request, as bzzlite pages do, so cookie-authenticated writes pass the CSRF check
DEFAULT_HEADERS = {"X-Requested-With": "bzzlite-testclient"}


def session_cookie(app: Any, user_data: dict[str, Any], provider: str | None = None) -> tuple[str, str]:
    """(cookie name, signed token) of a session for ``user_data`` (needs ``App(auth=...)``)."""
    policy = getattr(app.runtime, "auth", None)
    if policy is None:
        raise RuntimeError("login() needs an App configured with auth=Auth(...)")
    auth = policy.auth
    user = {"provider": provider or next(iter(auth.providers)), **user_data}
    if user.get("id") in (None, ""):
        raise ValueError("login() needs user_data with an 'id'")
    token, _ = auth.signer.issue(user)
    return auth.cookie_name, token


def set_session(client: httpx.Client | httpx.AsyncClient, name: str, token: str) -> None:
    """Put ``token`` in ``client``'s jar as the one cookie ``name``, where the server's own goes.

    The server renews the session cookie on every request, stored for the host the way
    ``http.cookiejar`` names it (``testserver.local``); a second cookie of the same name for
    another domain would be sent alongside it, and the server would read the first one.
    """
    for cookie in [cookie for cookie in client.cookies.jar if cookie.name == name]:
        client.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
    host = eff_request_host(urllib.request.Request(str(client.base_url)))[1]
    client.cookies.set(name, token, domain=host, path="/")


class AsyncTestClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` talking to ``app`` in this event loop."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.app = app
        kwargs.setdefault("base_url", BASE_URL)
        kwargs["headers"] = {**DEFAULT_HEADERS, **kwargs.get("headers", {})}
        self.adapter = ASGIAdapter(app)
        super().__init__(transport=httpx.ASGITransport(app=self.adapter), **kwargs)

    def websocket_connect(self, path: str, headers: dict[str, str] | None = None) -> AsyncWebSocket:
        """``async with client.websocket_connect("/note/_changes") as ws``: a WebSocket to the app."""
        return AsyncWebSocket(self.adapter, path, socket_headers(self, headers))

    def login(self, user_data: dict[str, Any], provider: str | None = None) -> None:
        """Sign in as ``user_data`` (``id``, ``name``, ``email``...): the session cookie is set.

        A second call switches users: it replaces the session cookie, the server's renewed one too.
        """
        set_session(self, *session_cookie(self.app, user_data, provider))

    def logout(self) -> None:
        self.cookies.clear()

    async def aclose(self) -> None:
        await super().aclose()
        await self.app.shutdown()


class _LoopTransport(httpx.BaseTransport):
    """Runs the ASGI transport on an event loop of its own, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.adapter = ASGIAdapter(app)
        self.asgi = httpx.ASGITransport(app=self.adapter)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bzzlite-testclient", daemon=True)
        self.thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, httpx.Headers, bytes]:
            sent = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self.asgi.handle_async_request(sent)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = asyncio.run_coroutine_threadsafe(call(), self.loop).result(60)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.app.shutdown(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class TestClient(httpx.Client):
    """``httpx.Client`` talking to ``app`` in this process (the app runs on a loop thread)."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.app = app
        kwargs.setdefault("base_url", BASE_URL)
        kwargs["headers"] = {**DEFAULT_HEADERS, **kwargs.get("headers", {})}
        self.loop_transport = _LoopTransport(app)
        super().__init__(transport=self.loop_transport, **kwargs)

    def websocket_connect(self, path: str, headers: dict[str, str] | None = None) -> WebSocket:
        """``with client.websocket_connect("/note/_changes") as ws``: a WebSocket to the app."""
        loop = self.loop_transport.loop

        async def make() -> AsyncWebSocket:  # its queues belong to the app's loop
            return AsyncWebSocket(self.loop_transport.adapter, path, socket_headers(self, headers))

        return WebSocket(asyncio.run_coroutine_threadsafe(make(), loop).result(10), loop)

    def login(self, user_data: dict[str, Any], provider: str | None = None) -> None:
        """Sign in as ``user_data`` (``id``, ``name``, ``email``...): the session cookie is set.

        A second call switches users: it replaces the session cookie, the server's renewed one too.
        """
        set_session(self, *session_cookie(self.app, user_data, provider))

    def logout(self) -> None:
        self.cookies.clear()


AsyncTestClient.__test__ = False  # type: ignore[attr-defined]
