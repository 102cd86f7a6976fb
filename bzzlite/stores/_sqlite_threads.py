"""SQLite connections that work in threads, so a slow statement never blocks the event loop.

A :class:`ConnectionPool` owns ``size`` connections and as many threads; a job is a
function of a connection, run on whichever connection is free. ``sqlite3`` releases the
GIL while SQLite works, so the event loop keeps serving other requests meanwhile.

A thread costs every job it runs a hand-off: a wake-up of the thread, the GIL taken from the
loop and given back, a wake-up of the loop; on a machine whose other cores are free, the
two threads then contend for the GIL from two cores (bench/README.md, "Fast as deployed").
So a job that is short when it is tried is run on the loop first (:func:`run_slice`): a
job that runs past its slice is stopped and goes to a thread.

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
_SLICE_STEPS = 1_000  # SQLite virtual-machine steps between two looks at the clock (run_slice)


class Overran(Exception):
    """A job tried on the event loop ran past its slice and was stopped: run it in a thread."""


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
        #: Jobs handed to the threads and not yet settled on the loop (counted on the loop's thread
        #: only). At 0 no thread is using a connection, so the loop may use one itself.
        self.pending = 0
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, args=(conn, nice), name=f"{name}-{n}", daemon=True)
            for n, conn in enumerate(self.connections)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """``job(conn)`` in a thread; its result or error, on the loop, in the future returned."""
        return self._submit(job, _Job())

    def _submit(self, job: Callable[[sqlite3.Connection], T], state: _Job) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending += 1
        self._jobs.put((job, state, loop, future))
        return future

    async def run(self, job: Callable[[sqlite3.Connection], T], budget: float | None = None) -> T:
        """``job(conn)`` in a thread; QueryTimeout if it runs longer than ``budget`` seconds."""
        state = _Job()
        future = self._submit(job, state)
        if budget is None:
            return await future
        loop = asyncio.get_running_loop()
        timer = loop.call_later(budget, self._expire, loop, state)
        try:
            return await future
        except sqlite3.OperationalError:
            if state.expired:
                raise QueryTimeout(budget) from None
            raise
        finally:
            timer.cancel()

    def post(self, job: Callable[[sqlite3.Connection], object]) -> None:
        """``job(conn)`` in a thread, nobody waiting for it (housekeeping: its errors are dropped)."""
        self._jobs.put((job, _Job(), None, None))

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
            if loop is None:
                continue
            try:
                loop.call_soon_threadsafe(self._settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _settle(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        self.pending -= 1  # here, not where the job was awaited: a cancelled await leaves the job running
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

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


def run_slice(conn: sqlite3.Connection, job: Callable[[sqlite3.Connection], T], steps: int, seconds: float) -> T:
    """``job(conn)`` on this thread if it ends within ``steps`` steps of SQLite's virtual machine
    (counted in thousands) and ``seconds``; else stopped, :class:`Overran`.

    Steps, not time, are the main measure: the same query fits or not whatever the machine's
    load (or valgrind) does to its speed; the time bounds a query whose few steps are long.
    A job is a read (it changes nothing), so stopping it and running it again elsewhere is safe.
    """
    budget = _Slice(steps // _SLICE_STEPS, time.monotonic() + seconds)
    conn.set_progress_handler(budget, _SLICE_STEPS)
    try:
        return job(conn)
    except sqlite3.OperationalError:
        if budget.over:
            raise Overran from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


class _Slice:
    """A progress handler: stop after ``calls`` calls or past ``deadline``."""

    __slots__ = ("calls", "deadline", "over")

    def __init__(self, calls: int, deadline: float) -> None:
        self.calls, self.deadline, self.over = calls, deadline, False

    def __call__(self) -> bool:
        self.calls -= 1
        self.over = self.calls <= 0 or time.monotonic() >= self.deadline
        return self.over
