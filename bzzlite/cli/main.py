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
import sysconfig
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .process import PARENT_ENV, Workers, die_with_parent, run_reloader, watch_parent
from ..errors import BzzliteError, StoreUnavailable
from ..http.observability import configure_logging
from ..settings import mount_path

log = logging.getLogger("bzzlite")


class CLIError(Exception):
    """A problem to report in one line, without a traceback.

    ``details`` is the full traceback behind it, shown with ``--traceback``.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


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
    from ..app import App

    if not isinstance(value, App) and callable(value):
        try:
            value = value()
        except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
            raise CLIError(f"calling {target} failed: {_describe(exc)}", traceback.format_exc()) from None
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
        except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
            sys.modules.pop(path.stem, None)
            raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CLIError(f"no module named {name!r} (run from the directory that contains it, "
                           "or give a .py file path)") from None
        raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None
    except Exception as exc:  # noqa: BLE001 - the user's code: reported in one line
        raise CLIError(f"error while importing {name}: {_describe(exc)}", traceback.format_exc()) from None


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py:line)``, the line being the innermost one of the user's code.

    A SyntaxError is located where the parser stopped, in the user's file; any other error
    at the innermost frame outside bzzlite, importlib and installed packages, if there is one.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} ({Path(exc.filename).name}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    ours = [f for f in frames if not f.filename.startswith(_NOT_USER_CODE)]
    frames = ours or frames
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}{where}"


_NOT_USER_CODE = tuple(
    {str(Path(__file__).parent) + os.sep}
    | {sysconfig.get_paths()[key] + os.sep for key in ("stdlib", "purelib", "platlib")}
)


# -- serving ---------------------------------------------------------------------------


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
) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and let requests in flight finish.

    Args:
        parent_pid: stop too when this process (the parent of a worker) is gone.
        on_ready: called once the sockets accept connections.
        ssl_options: an ``ssl.SSLContext`` to serve HTTPS (``--certfile``/``--keyfile``): served
            by Tornado's server.
        http: the server, resolved (``httptools``: bzzlite's own; ``tornado``: Tornado's).
    """
    from ..http.tornado_server import Server
    from ..handlers.base import server_body_limit
    from ..http import make_server

    try:
        await app.startup()
    except StoreUnavailable as exc:
        if app.runtime.settings.db.startswith("sqlite"):
            raise CLIError(f"cannot open the store {app.runtime.settings.db}: {exc}") from None
        log.warning("store unavailable at start-up (%s); requests get 503 until it answers", exc)
    limit = server_body_limit(app.bzz_settings.max_body_size)
    if ssl_options is not None:
        server = Server(app, max_body_size=limit, ssl_options=ssl_options)
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
    while (app.runtime.in_flight > 0 or server.awaiting_first_requests()) and time.monotonic() < deadline:
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


# -- commands --------------------------------------------------------------------------


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _from_env(value: Any, names: tuple[str, ...], default: Any, kind: Callable[[str], Any] = str) -> Any:
    """A flag's value, else the first of the environment variables ``names`` set, else ``default``."""
    if value is not None:
        return value
    for name in names:
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                return kind(raw)
            except ValueError:
                raise CLIError(f"{name}={raw!r} is not valid: expected {getattr(kind, '__name__', 'a value')}") from None
    return default


def _log_level(raw: str) -> str:
    if raw.lower() not in LOG_LEVELS:
        raise ValueError(raw)
    return raw.lower()


_log_level.__name__ = "one of " + ", ".join(LOG_LEVELS)


def _log_format(raw: str) -> str:
    if raw not in ("text", "json"):
        raise ValueError(raw)
    return raw


_log_format.__name__ = "text or json"


def cmd_serve(args: argparse.Namespace) -> int:
    host = _from_env(args.host, ("BZZLITE_HOST",), "127.0.0.1")
    port = _from_env(args.port, ("BZZLITE_PORT", "PORT"), 8888, int)
    workers = _from_env(args.workers, ("BZZLITE_WORKERS", "WEB_CONCURRENCY"), 1, int)
    level = _from_env(args.log_level, ("BZZLITE_LOG_LEVEL",), "info", _log_level)
    configure_logging(level, _from_env(args.log_format, ("BZZLITE_LOG_FORMAT",), "text", _log_format))
    if workers < 1:
        raise CLIError("--workers must be 1 or more")
    if args.reload and workers > 1:
        raise CLIError("--reload restarts one process; use it without --workers")
    if not 0 <= port <= 65535:
        raise CLIError(f"--port {port} is not a TCP port")
    ssl_options = _ssl_context(args.certfile, args.keyfile)
    from ..http import resolve

    try:
        http = resolve(args.http)  # once, so a fallback to Tornado is logged once
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if ssl_options is not None:
        if args.http == "httptools":
            raise CLIError("--certfile is served by Tornado's server: use --http tornado or auto, or end TLS "
                           "at a proxy")
        http = "tornado"
    reloader = os.environ.pop(PARENT_ENV, "")
    if args.reload and not reloader:  # this process watches; a child serves (and may fail to import)
        module = args.target.partition(":")[0]
        watched = Path(module).parent if module.endswith(".py") else Path.cwd()
        return run_reloader(args.argv, [watched], args.graceful_timeout)
    parent_pid = int(reloader) if reloader.isdigit() else None
    if parent_pid is not None:
        die_with_parent(parent_pid)
    app = locate_app(args.target)
    if args.db:
        app.use_store(args.db)
    settings = app.bzz_settings
    if args.log_format is None and settings.log_format != "text":  # App(log_format="json")
        configure_logging(level, settings.log_format)
    if args.proxy_headers:
        settings.proxy_headers = True
    settings.forwarded_allow_ips = _from_env(args.forwarded_allow_ips, ("FORWARDED_ALLOW_IPS",),
                                             settings.forwarded_allow_ips, lambda raw: raw.split(","))
    if args.root_path is not None:
        settings.root_path = mount_path(args.root_path)
    if args.gc == "tuned":
        tune_gc()  # before forking workers too: they share the frozen pages
    if workers > 1:
        return run_workers(app, bind_slots(host, port, workers), args.graceful_timeout, ssl_options=ssl_options,
                           http=http)
    return run_single(app, bind(host, port), args.graceful_timeout, parent_pid=parent_pid, ssl_options=ssl_options,
                      http=http)


def _ssl_context(certfile: str | None, keyfile: str | None) -> Any:
    """The TLS context of ``--certfile``/``--keyfile``, or None to serve plain HTTP."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise CLIError("--keyfile needs --certfile")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(f"cannot load the TLS certificate {certfile}: {getattr(exc, 'strerror', None) or exc}") from None
    return context


def cmd_routes(args: argparse.Namespace) -> int:
    app = locate_app(args.target)
    rows = app.route_table()
    width = max(len(r[0]) for r in rows)
    for methods, path, handler in rows:
        print(f"{methods:<{width}}  {path}  ({handler})")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    app = locate_app(args.target)
    from ..openapi.document import build_document

    print(json.dumps(build_document(app), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    from .. import __version__

    top = argparse.ArgumentParser(prog="python -m bzzlite", description="bzzlite: REST resources on Tornado")
    top.add_argument("--version", action="version", version=f"bzzlite {__version__} "
                     f"(Tornado {_tornado_version()}, Python {sys.version.split()[0]})")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true",
                        help="on an error in the app's module, print the full traceback")
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve an app", parents=[common])
    serve.add_argument("target", help="MODULE:ATTR, MODULE a dotted path or a .py file")
    serve.add_argument("--host", help="address to listen on (env BZZLITE_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (env BZZLITE_PORT, then PORT; default 8888)")
    serve.add_argument("--db", help="store URL (wins over App(db=...) and BZZLITE_DB)")
    serve.add_argument("--workers", type=int,
                       help="processes sharing the port (env BZZLITE_WORKERS, then WEB_CONCURRENCY; default 1)")
    serve.add_argument("--reload", action="store_true", help="restart when a .py file changes (development)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="env BZZLITE_LOG_LEVEL; default info")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="text, or one JSON object per line (env BZZLITE_LOG_FORMAT; App(log_format=...))")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds requests in flight may take to finish on SIGTERM/SIGINT")
    serve.add_argument("--http", choices=["auto", "httptools", "tornado"], default="auto",
                       help="auto: bzzlite's HTTP/1.1 server on httptools (and uvloop) when installed, "
                            "else Tornado's; tornado: Tornado's HTTPServer")
    serve.add_argument("--certfile", help="serve HTTPS with this PEM certificate (chain)")
    serve.add_argument("--keyfile", help="the private key of --certfile, if not in the same file")
    serve.add_argument("--proxy-headers", action="store_true",
                       help="trust X-Forwarded-For/-Proto/-Host and Forwarded from --forwarded-allow-ips")
    serve.add_argument("--forwarded-allow-ips", type=lambda raw: raw.split(","),
                       help="comma-separated proxy addresses to trust, '*' for any "
                            "(env FORWARDED_ALLOW_IPS; default 127.0.0.1)")
    serve.add_argument("--root-path", help="the path prefix the proxy mounts the app under, e.g. /api")
    serve.add_argument("--gc", choices=["tuned", "default"], default="tuned",
                       help="tuned: freeze start-up objects and collect the young generation less often; "
                            "default: CPython's settings")
    serve.set_defaults(run=cmd_serve)
    routes = sub.add_parser("routes", help="print the route table", parents=[common])
    routes.add_argument("target")
    routes.set_defaults(run=cmd_routes)
    openapi = sub.add_parser("openapi", help="print the OpenAPI document", parents=[common])
    openapi.add_argument("target")
    openapi.set_defaults(run=cmd_openapi)
    return top


def _tornado_version() -> str:
    import tornado

    return str(tornado.version)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a --reload child runs again
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except (CLIError, BzzliteError) as exc:
        details = getattr(exc, "details", None)
        if args.traceback and details:
            print(details.rstrip(), file=sys.stderr)
        hint = "; --traceback shows the full traceback" if details and not args.traceback else ""
        print(f"bzzlite: error: {exc}{hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `bzzlite openapi app:app | head`: the reader is gone, say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing at exit does not fail again
        return 1
    except KeyboardInterrupt:
        return 0
