"""The journal: every committed change, numbered in commit order, kept for a while.

Feeds read changes from where the store keeps them, never from the process that made
them, so a change made through any worker (or, on MongoDB, by any program) reaches
subscribers everywhere, and a subscriber that reconnects can be given what it missed.
:class:`Journal` is what the feed hub needs of a store; each store has its own.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from .events import Change


def stop_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop, even though the request
    was lost on the way: Python 3.11's ``asyncio.wait_for`` returns its operation's result,
    swallowing the cancellation, when the operation completes at that very moment, and
    PyMongo's asyncio API sends with it. A loop that runs until cancelled calls this on each
    turn, or a stop can wait for it for ever (seen: a server's SIGTERM hanging, 1 stop in 20
    under load, its journal watcher going on with ``Task.cancelling()`` at 1)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TooOld(Exception):
    """The journal no longer holds (or never held) the changes after this id."""


class Unsupported(Exception):
    """This store (as deployed) cannot keep a journal: feeds are off, the rest works."""


class Journal(ABC):
    """Reads a store's changes in commit order; ids are consecutive integers.

    Consecutive: a reader that reads ``n`` and then, next, an id above ``n + 1`` knows the
    changes in between were trimmed (the journal keeps only the latest ones) before it read
    them, and tells its subscribers (:meth:`bzzlite.feeds.Feeds.fell_behind`).
    """

    @abstractmethod
    async def attach(self, specs: Sequence[ResourceSpec]) -> None:
        """Start journaling the resources' collections (idempotent; at store open)."""

    @abstractmethod
    async def head(self) -> int:
        """The id of the latest change (0 when there is none yet)."""

    @abstractmethod
    async def replay(self, after: int, limit: int, collection: str | None = None) -> list[Change]:
        """Up to ``limit`` changes with ids above ``after`` (of one collection, if given), oldest first.

        Raises:
            TooOld: some changes after ``after`` are gone, or ``after`` is unknown here.
        """

    @abstractmethod
    def follow(self, after: int) -> AsyncIterator[list[Change]]:
        """Batches of new changes after ``after``, as they are committed, until cancelled."""

    async def wake(self) -> None:
        """A subscriber arrived in this process (the journal may start working)."""

    def idle(self) -> None:
        """This process has no subscribers left."""

    async def close(self) -> None:
        """Release what the journal holds."""
