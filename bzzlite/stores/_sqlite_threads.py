"""SQLite connections that work in threads, so a slow statement never blocks the event loop.

A :class:`ConnectionPool` owns ``size`` connections and as many threads; a job is a
function of a connection, run on whichever connection is free. ``sqlite3`` releases the
GIL while SQLite works, so the event loop keeps serving other requests meanwhile.

A job can have a time budget: when it runs past it, the loop interrupts the job's
connection (``sqlite3_interrupt``, made to be called from another thread), SQLite stops
the statement at its next step and the job raises :class:`~bzzlite.errors.QueryTimeout`.
The interrupt is sent again every few milliseconds until the job ends, because it only
stops statements running at that instant (a job may run several in turn). Nothing is
polled while a job runs: a progress handler would have to take the GIL from the loop
thousands of times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import QueryTimeout

T = TypeVar("T")
_RESEND = 0.005  # seconds between interrupts of a job that has not stopped yet


class _Job:
    """One job's connection and whether it has ended, guarded so that an interrupt only
    ever reaches the connection while that job is still on it."""

    __slots__ = ("conn", "done", "expired", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.done = False
        self.expired = False


class ConnectionPool:
    """``size`` connections from ``connect()``, each owned by one thread that runs jobs in turn.

    ``nice`` lowers the threads' CPU priority (Linux): when the CPUs are all busy, the event
    loop, which answers every request, goes first, and a long query takes what is left.
    Jobs travel on one queue and come back through one ``call_soon_threadsafe``, which costs
    less than ``run_in_executor`` (bench/README.md, "Isolation").
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, name: str, nice: int = 0) -> None:
        self.connections = [connect() for _ in range(size)]
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, args=(conn, nice), name=f"{name}-{n}", daemon=True)
            for n, conn in enumerate(self.connections)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, job: Callable[[sqlite3.Connection], T], budget: float | None = None) -> T:
        """``job(conn)`` in a thread; QueryTimeout if it runs longer than ``budget`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        state = _Job()
        self._jobs.put((job, state, loop, future))
        if budget is None:
            return await future
        timer = loop.call_later(budget, self._expire, loop, state)
        try:
            return await future
        except sqlite3.OperationalError:
            if state.expired:
                raise QueryTimeout(budget) from None
            raise
        finally:
            timer.cancel()

    def _serve(self, conn: sqlite3.Connection, nice: int) -> None:
        _lower_priority(nice)
        while (item := self._jobs.get()) is not None:
            job, state, loop, future = item
            with state.lock:
                state.conn = conn
            result: Any = None
            error: BaseException | None = None
            try:
                result = job(conn)
            except BaseException as exc:  # noqa: BLE001 (handed to the awaiting coroutine, raised there)
                error = exc
            with state.lock:
                state.done = True
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _expire(self, loop: asyncio.AbstractEventLoop, state: _Job) -> None:
        with state.lock:
            if state.done:
                return
            state.expired = True
            if state.conn is not None:  # else the job has not started: it stops at its first step
                state.conn.interrupt()
        loop.call_later(_RESEND, self._expire, loop, state)

    def close(self) -> None:
        """Stop running jobs, end the threads, close the connections."""
        for conn in self.connections:
            conn.interrupt()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        for conn in self.connections:
            conn.close()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _lower_priority(nice: int) -> None:
    if nice and sys.platform == "linux":  # a thread's own priority: setpriority on its thread id
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)


def run_inline(conn: sqlite3.Connection, job: Callable[[sqlite3.Connection], T], budget: float | None) -> T:
    """``job(conn)`` on this thread (an in-memory database has one connection, used on the
    loop), bounded by a progress handler since nothing else can interrupt it."""
    if budget is None:
        return job(conn)
    deadline = time.monotonic() + budget
    conn.set_progress_handler(functools.partial(_past, deadline), 10_000)
    try:
        return job(conn)
    except sqlite3.OperationalError:
        if time.monotonic() >= deadline:
            raise QueryTimeout(budget) from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _past(deadline: float) -> bool:
    return time.monotonic() >= deadline
