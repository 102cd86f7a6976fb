"""The asyncio MongoDB drivers the MongoDB store runs on, and the few calls where they differ.

**PyMongo's own asyncio API** (``pymongo.AsyncMongoClient``, stable since PyMongo 4.13) is the
default. **motor** is kept for apps that ask for it (``App(mongo_driver="motor")``): MongoDB
deprecated it in favour of PyMongo's API (end of life 2026-05-14, critical fixes only until
2027-05-14), and motor is no longer installed with bzzlite (the ``motor`` extra installs it).

Both give the same database and collection API for what the store, the change journal and the
sign-out list call (``find`` and its cursor's ``to_list``, inserts, updates, deletes, indexes,
commands). They differ in which calls are coroutines: opening a change stream and running an
aggregation (PyMongo: awaited), starting a session (motor: awaited), starting a transaction
(PyMongo: awaited) and closing the client (PyMongo: awaited). Those five go through a
:class:`Driver`.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

from ..errors import ConfigurationError
from ..settings import MONGO_DRIVERS as DRIVERS


class Driver:
    """How the store makes a client and does the calls in which the drivers differ."""

    name = ""

    def client(self, url: str, **options: Any) -> Any:
        """A client for ``url``: it connects on first use, in the event loop that uses it."""
        raise NotImplementedError

    async def watch(self, collection: Any, **options: Any) -> Any:
        """A change stream on ``collection``, opened (``collection.watch(**options)``)."""
        raise NotImplementedError

    async def aggregate(self, collection: Any, pipeline: list[dict[str, Any]]) -> Any:
        """The cursor of ``collection.aggregate(pipeline)`` (read it with ``to_list``)."""
        raise NotImplementedError

    def transaction(self, client: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        """``async with driver.transaction(client) as session:`` — a session in a transaction,
        committed at the end of the block (aborted if it raises)."""
        raise NotImplementedError

    async def close(self, client: Any) -> None:
        raise NotImplementedError


class PyMongoDriver(Driver):
    """PyMongo's asyncio API: ``pymongo.AsyncMongoClient``."""

    name = "pymongo"

    def client(self, url: str, **options: Any) -> Any:
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(url, **options)

    async def watch(self, collection: Any, **options: Any) -> Any:
        return await collection.watch(**options)

    async def aggregate(self, collection: Any, pipeline: list[dict[str, Any]]) -> Any:
        return await collection.aggregate(pipeline)

    @contextlib.asynccontextmanager
    async def transaction(self, client: Any) -> AsyncIterator[Any]:
        async with client.start_session() as session:
            async with await session.start_transaction():
                yield session

    async def close(self, client: Any) -> None:
        await client.close()


class MotorDriver(Driver):
    """motor's ``AsyncIOMotorClient`` (deprecated by MongoDB; for apps that still want it)."""

    name = "motor"

    def client(self, url: str, **options: Any) -> Any:
        from motor.motor_asyncio import AsyncIOMotorClient

        return AsyncIOMotorClient(url, **options)

    async def watch(self, collection: Any, **options: Any) -> Any:
        return collection.watch(**options)

    async def aggregate(self, collection: Any, pipeline: list[dict[str, Any]]) -> Any:
        return collection.aggregate(pipeline)

    @contextlib.asynccontextmanager
    async def transaction(self, client: Any) -> AsyncIterator[Any]:
        async with await client.start_session() as session:
            async with session.start_transaction():
                yield session

    async def close(self, client: Any) -> None:
        client.close()


def driver(name: str) -> Driver:
    """The driver called ``name`` (one of :data:`DRIVERS`).

    Raises:
        ConfigurationError: an unknown name, or motor asked for and not installed.
    """
    if name == "pymongo":
        return PyMongoDriver()
    if name == "motor":
        if importlib.util.find_spec("motor") is None:
            raise ConfigurationError("mongo_driver='motor' needs motor: pip install 'bzzlite[motor]' "
                                     "(or leave mongo_driver at its default, PyMongo's asyncio API)")
        return MotorDriver()
    raise ConfigurationError(f"mongo_driver is one of {', '.join(map(repr, DRIVERS))}, not {name!r}")
