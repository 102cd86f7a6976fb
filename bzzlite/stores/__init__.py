"""Stores: where documents live. They know nothing of HTTP.

A store is chosen by URL (:func:`open_store`): ``sqlite:///path.db`` (the embedded default),
``sqlite:///:memory:``, or ``mongodb://host:port/dbname``. ``base`` is the interface both
implement; this factory sits above the implementations it imports.
"""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import Page, Record, Store

__all__ = ["Page", "Record", "Store", "open_store"]


def open_store(url: str, *, mongo_driver: str = "pymongo") -> Store:
    """Make the store for a URL (not connected yet: see :meth:`Store.open`).

    ``mongo_driver``: the MongoDB store's driver, ``pymongo`` (PyMongo's asyncio API) or
    ``motor`` (see docs/mongodb.md).
    """
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        try:
            from .mongo import MongoStore
        except ImportError as exc:  # pymongo not installed
            raise ConfigurationError(f"the MongoDB store needs pymongo (pip install 'bzzlite[mongo]'): {exc}") from None
        return MongoStore(url, mongo_driver)
    raise ConfigurationError(
        f"unknown store URL {url!r}: use sqlite:///path/to/file.db, sqlite:///:memory: "
        "or mongodb://host:port/dbname"
    )
