"""The in-process test clients, importable as ``from bzzlite.testclient import TestClient``
(they live in :mod:`bzzlite.testing.client`)."""

from __future__ import annotations

from .testing.client import AsyncTestClient, TestClient, WebSocketClosed, WebSocketRefused, session_cookie

__all__ = ["AsyncTestClient", "TestClient", "WebSocketClosed", "WebSocketRefused", "session_cookie"]
