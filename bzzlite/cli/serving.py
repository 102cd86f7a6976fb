"""Serving an app from the command line: the listening sockets, one process or a worker per
socket slot, the graceful stop, and the collector's tuning."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConstraintBroken, StoreUnavailable
from .discovery import CLIError
from .process import Workers, watch_parent

log = logging.getLogger("bzzlite")


def bind(host: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for ``host:port``; a bad address or a taken port is a CLIError."""
    from tornado.netutil import bind_sockets

    try:
        return bind_sockets(port, host, reuse_port=reuse_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"port {port} on {host} is already in use") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise CLIError(f"not allowed to listen on {host}:{port}") from None
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def bind_slots(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """``count`` sets of listening sockets on one ``host:port`` (SO_REUSEPORT), one per worker
    slot of ``run_workers``; with port 0, all on the free port the first one found."""
    slots = [bind(host, port, reuse_port=True)]
    port = slots[0][0].getsockname()[1]
    while len(slots) < count:
        slots.append(bind(host, port, reuse_port=True))
    return slots


async def serve_forever(
    app: Any,
    sockets: list[socket.socket],
    graceful_timeout: float,
    *,
    parent_pid: int | None = None,
    on_ready: Callable[[], None] | None = None,
    ssl_options: Any = None,
    http: str = "httptools",
    check_command: str | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and let requests in flight finish.

    Args:
        parent_pid: stop too when this process (the parent of a worker) is gone.
        on_ready: called once the sockets accept connections.
        ssl_options: an ``ssl.SSLContext`` to serve HTTPS (``--certfile``/``--keyfile``): served
            by Tornado's server.
        http: the server, resolved (``httptools``: bzzlite's own; ``tornado``: Tornado's).
        check_command: the command line that lists what stored documents break (``bzzlite check``),
            named when they keep a unique index from being built.
    """
    from ..handlers.base import server_body_limit
    from ..http import make_server
    from ..http.limits import server_limits
    from ..http.tornado_server import Server

    try:
        await app.startup()
    except StoreUnavailable as exc:
        if isinstance(exc, ConstraintBroken):  # waiting will not mend it, on any store
            exc.command = check_command
            raise CLIError(f"cannot open the store {app.runtime.settings.db}: {exc}") from None
        if _must_open(app):
            raise CLIError(f"cannot open the store {app.runtime.settings.db}: {exc}") from None
        log.warning("store unavailable at start-up (%s); requests get 503 until it answers", exc)
    limit = server_body_limit(app.bzz_settings.max_body_size)
    if ssl_options is not None:
        server = Server(app, max_body_size=limit, ssl_options=ssl_options, **server_limits(app))
    else:
        server = make_server(http, app, max_body_size=limit)
    server.add_sockets(sockets)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    watchdog = asyncio.ensure_future(watch_parent(parent_pid, stopping.set)) if parent_pid else None
    scheme = "https" if ssl_options is not None else "http"
    addresses = ", ".join(f"{scheme}://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sockets)
    log.info("serving %d resource(s) on %s (pid %d)", len(app.registry.resources), addresses, os.getpid())
    if on_ready is not None:
        on_ready()
    await stopping.wait()
    if watchdog is not None:
        watchdog.cancel()
    log.info("stopping: no new connections; waiting up to %ss for requests in flight", graceful_timeout)
    server.stop()
    await app.runtime.end_streams()  # change feeds would otherwise hold the wait below
    deadline = time.monotonic() + graceful_timeout
    while (app.runtime.in_flight > 0 or not server.drained()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if app.runtime.in_flight:
        log.warning("%d request(s) still running after %ss; closing", app.runtime.in_flight, graceful_timeout)
    await asyncio.wait_for(server.close_all_connections(), 5)
    await app.shutdown()
    log.info("stopped")


def _must_open(app: Any) -> bool:
    """Whether the server cannot start without its store: a SQLite file must open; a MongoDB
    server that is down is waited for (requests get 503 until it answers)."""
    return bool(app.runtime.settings.db.startswith("sqlite"))


def check_store(app: Any, check_command: str | None = None) -> None:
    """Open the store once and close it, before workers are forked: a store that cannot be
    opened is then one error, where each worker would fail on it, be replaced and fail again."""
    if not _must_open(app):
        return
    try:
        asyncio.run(app.runtime.probe_store())
    except StoreUnavailable as exc:
        if isinstance(exc, ConstraintBroken):
            exc.command = check_command
        raise CLIError(f"cannot open the store {app.runtime.settings.db}: {exc}") from None


#: gen0 collections wait for this many more container allocations than deallocations (CPython: 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Garbage-collector settings for a server process, applied once the app is loaded.

    ``gc.freeze()`` moves every object alive after start-up (modules, models, pydantic
    validators, routes: tens of thousands) out of the collector's view, so a full collection
    no longer walks them all (about 14 ms, paid in some request's latency, every minute or so
    under load). The higher gen0 threshold: requests free what they allocate by reference
    counting, and the alloc/dealloc balance that triggers gen0 collections only drifts, so
    with CPython's 700 a busy server collects the young generation a couple of times a second
    for nothing; with 10,000 it does not collect at all under ``python -m bench --mixed 60``,
    while an app that does make cyclic garbage still has it collected, 10,000 objects at a time.
    Measured: bench/README.md, "Memory and garbage collection".
    """
    gc.collect()  # what start-up left behind, before freezing the rest
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_single(app: Any, sockets: list[socket.socket], graceful_timeout: float, **options: Any) -> int:
    from ..http import run

    run(serve_forever(app, sockets, graceful_timeout, **options), options.get("http", "tornado"))
    return 0


def run_workers(app: Any, slots: list[list[socket.socket]], graceful_timeout: float, **options: Any) -> int:
    """Fork a worker for each of ``slots`` (from ``bind_slots``); SIGHUP replaces them
    gracefully, SIGTERM/SIGINT stop them all (see bzzlite/cli/process.py).

    Each slot's sockets listen on the port with SO_REUSEPORT, so the kernel spreads connections
    over the workers (with one shared socket, whichever worker wakes first accepts, and on a
    busy machine that is the same worker again and again). The parent opens them and holds
    them for its life, and a worker only ever closes its own copy: the connections waiting in
    a slot's queue when its worker stops (a SIGHUP, a crash) are accepted by the worker that
    replaces it, where closing the slot's socket would reset them; before the first workers
    listen, connections wait rather than being refused.
    """
    check_store(app, options.get("check_command"))
    parent = os.getpid()

    def serve(ready: Callable[[], None], slot: int) -> int:
        for other, sockets in enumerate(slots):
            if other != slot:  # or, the parent gone, this worker would keep them listening, unserved
                for sock in sockets:
                    sock.close()
        try:
            return run_single(app, slots[slot], graceful_timeout, parent_pid=parent, on_ready=ready, **options)
        except CLIError as exc:
            print(f"bzzlite: error: {exc}", file=sys.stderr)
            return 1

    return Workers(len(slots), serve).run()
