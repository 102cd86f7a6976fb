"""``python -m bzzlite``: serve an app, print its routes or its OpenAPI document.

Every mistake the user can make here (a wrong target, an import error in their
module, a port in use, a bad store URL) ends in one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .errors import BzzliteError, StoreUnavailable

log = logging.getLogger("bzzlite")


class CLIError(Exception):
    """A problem to report in one line, without a traceback."""


# -- finding the app -------------------------------------------------------------------


def locate_app(target: str) -> Any:
    """Import ``MODULE:ATTR`` (MODULE dotted or a ``.py`` path) and return the app.

    Tells "module not found" apart from "the module raised while importing".
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"expected MODULE:ATTR (e.g. examples.todo:app or examples/todo.py:app), got {target!r}")
    module = _import(module_name)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise CLIError(f"{module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    from .app import App

    if not isinstance(value, App) and callable(value):
        try:
            value = value()
        except Exception as exc:
            raise CLIError(f"calling {target} failed: {_describe(exc)}") from None
    if not isinstance(value, App):
        raise CLIError(f"{target} is a {type(value).__name__}, not a bzzlite App")
    return value


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise CLIError(f"no such file: {name}")
        directory = str(path.resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise CLIError(f"cannot import {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(path.stem, None)
            raise CLIError(f"error while importing {name}: {_describe(exc)}") from None
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CLIError(f"no module named {name!r} (run from the directory that contains it, "
                           "or give a .py file path)") from None
        raise CLIError(f"error while importing {name}: {_describe(exc)}") from None
    except Exception as exc:
        raise CLIError(f"error while importing {name}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py:line)`` of the innermost frame in the user's code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}{where}"


# -- serving ---------------------------------------------------------------------------


def bind(host: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    try:
        return bind_sockets(port, host, reuse_port=reuse_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"port {port} on {host} is already in use") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise CLIError(f"not allowed to listen on {host}:{port}") from None
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def serve_forever(app: Any, sockets: list[socket.socket], graceful_timeout: float, reload: bool = False,
                        http: str = "auto") -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and let requests in flight finish."""
    from .handlers.base import server_body_limit
    from .http import make_server

    try:
        await app.startup()
    except StoreUnavailable as exc:
        if app.runtime.settings.db.startswith("sqlite"):
            raise CLIError(f"cannot open the store {app.runtime.settings.db}: {exc}") from None
        log.warning("store unavailable at start-up (%s); requests get 503 until it answers", exc)
    server = make_server(http, app, max_body_size=server_body_limit(app.bzz_settings.max_body_size))
    server.add_sockets(sockets)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if reload:  # checks source files from this loop and re-executes the process on a change
        import tornado.autoreload

        tornado.autoreload.start()
    addresses = ", ".join("http://%s:%s" % s.getsockname()[:2] for s in sockets)
    log.info("serving %d resource(s) on %s (pid %d)", len(app.registry.resources), addresses, os.getpid())
    await stopping.wait()
    log.info("stopping: no new connections; waiting up to %ss for requests in flight", graceful_timeout)
    server.stop()
    await app.runtime.end_streams()  # change feeds would otherwise hold the wait below
    deadline = time.monotonic() + graceful_timeout
    while app.runtime.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if app.runtime.in_flight:
        log.warning("%d request(s) still running after %ss; closing", app.runtime.in_flight, graceful_timeout)
    await asyncio.wait_for(server.close_all_connections(), 5)
    await app.shutdown()
    log.info("stopped")


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


def run_single(app: Any, sockets: list[socket.socket], graceful_timeout: float, reload: bool = False,
               http: str = "auto") -> int:
    from .http import run

    run(serve_forever(app, sockets, graceful_timeout, reload, http), http)
    return 0


def run_workers(app: Any, sockets: list[socket.socket], workers: int, graceful_timeout: float,
                http: str = "auto") -> int:
    """Fork ``workers`` children, each listening on its own SO_REUSEPORT socket; stop them
    all on SIGTERM/SIGINT.

    With one shared listening socket, whichever worker wakes first accepts, and on a busy
    machine that is the same worker again and again; with a socket each, the kernel spreads
    connections over the workers. ``sockets`` (bound by the parent with SO_REUSEPORT, which
    is how "port in use" is reported before any fork) are closed once the workers are forked.
    """
    host, port = sockets[0].getsockname()[:2]
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child serves until told to stop
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                for inherited in sockets:  # or the parent's socket would stay in the group
                    inherited.close()
                code = run_single(app, bind(host, port, reuse_port=True), graceful_timeout, http=http)
            except CLIError as exc:
                print(f"bzzlite: error: {exc}", file=sys.stderr)
            except BaseException:  # never let a child return into the parent's code
                traceback.print_exc()
            finally:
                os._exit(code)
        children[pid] = number

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for number in range(workers):
        spawn(number)
    for listening in sockets:  # each worker has its own now; the parent accepts nothing
        listening.close()
    log.info("started %d workers: %s", workers, ", ".join(map(str, children)))
    failures = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        number = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if not stopping and code != 0:
            failures += 1
            if failures > 5 * workers:
                log.error("workers keep failing; stopping")
                on_signal(signal.SIGTERM, None)
                return 1
            log.warning("worker %d (pid %d) exited with %d; restarting it", number, pid, code)
            spawn(number)
    return 0 if stopping else 1


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# -- commands --------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        raise CLIError("--workers must be 1 or more")
    if args.reload and args.workers > 1:
        raise CLIError("--reload restarts one process; use it without --workers")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port} is not a TCP port")
    from .http import resolve

    try:
        http = resolve(args.http)  # once, so a fallback to Tornado is logged once
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    app = locate_app(args.target)
    if args.db:
        app.use_store(args.db)
    if args.gc == "tuned":
        tune_gc()  # before forking workers too: they share the frozen pages
    sockets = bind(args.host, args.port, reuse_port=args.workers > 1)
    if args.workers > 1:
        return run_workers(app, sockets, args.workers, args.graceful_timeout, http)
    return run_single(app, sockets, args.graceful_timeout, args.reload, http)


def cmd_routes(args: argparse.Namespace) -> int:
    app = locate_app(args.target)
    rows = app.route_table()
    width = max(len(r[0]) for r in rows)
    for methods, path, handler in rows:
        print(f"{methods:<{width}}  {path}  ({handler})")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    app = locate_app(args.target)
    from .openapi import build_document

    print(json.dumps(build_document(app), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bzzlite", description="bzzlite: REST resources on Tornado")
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve an app")
    serve.add_argument("target", help="MODULE:ATTR, MODULE a dotted path or a .py file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8888)
    serve.add_argument("--db", help="store URL (wins over App(db=...) and BZZLITE_DB)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument("--reload", action="store_true", help="restart when a source file changes")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"])
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds requests in flight may take to finish on SIGTERM/SIGINT")
    serve.add_argument("--http", choices=["auto", "httptools", "tornado"], default="auto",
                       help="auto: bzzlite's HTTP/1.1 server on httptools (and uvloop) when installed, "
                            "else Tornado's; tornado: Tornado's HTTPServer")
    serve.add_argument("--gc", choices=["tuned", "default"], default="tuned",
                       help="tuned: freeze start-up objects and collect the young generation less often; "
                            "default: CPython's settings")
    serve.set_defaults(run=cmd_serve)
    routes = sub.add_parser("routes", help="print the route table")
    routes.add_argument("target")
    routes.set_defaults(run=cmd_routes)
    openapi = sub.add_parser("openapi", help="print the OpenAPI document")
    openapi.add_argument("target")
    openapi.set_defaults(run=cmd_openapi)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CLIError, BzzliteError) as exc:
        print(f"bzzlite: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
