"""Helpers for testing bzzlite apps.

    from bzzlite.testing import serve

    def test_create():
        with serve(app) as client:
            response = client.post("/todo_item", json={"title": "x"})
            assert response.code == 201

``server``: ``serve`` (the app on a free port, a small client) and ``record`` (a signal's
calls). ``client``: the in-process ``TestClient`` and ``AsyncTestClient`` (httpx's API; also
importable from ``bzzlite.testclient``), ``websocket``: their WebSocket sessions, ``fixtures``:
pytest fixtures (also ``bzzlite.fixtures``). Fake identity providers are in
``bzzlite.auth.testing``, a change-feed reader in ``bzzlite.feeds.testing``.
"""

from __future__ import annotations

from .server import Client, Response, record, serve

__all__ = ["Client", "Response", "record", "serve"]
