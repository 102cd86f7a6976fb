"""pytest fixtures for testing a bzzlite app, importable as
``from bzzlite.fixtures import async_client, client`` (they live in :mod:`bzzlite.testing.fixtures`)."""

from __future__ import annotations

from .testing.fixtures import async_client, client

__all__ = ["async_client", "client"]
