"""Stores: where documents live. They know nothing of HTTP.

A store is chosen by URL: ``sqlite:///path.db`` (the embedded default),
``sqlite:///:memory:``, or ``mongodb://host:port/dbname``.
"""

from __future__ import annotations

from .base import Page, Record, Store, open_store

__all__ = ["Page", "Record", "Store", "open_store"]
