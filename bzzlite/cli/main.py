"""``python -m bzzlite``: serve an app, print its routes or its OpenAPI document, check and
migrate its stored documents (:mod:`.migrations`).

Every mistake the user can make here (a wrong target, an import error in their
module, a port in use, a bad store URL) ends in one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BzzliteError
from ..http.observability import configure_logging
from ..settings import mount_path
from .discovery import CLIError, locate_app, shadowing_folder
from .migrations import add_commands as add_migration_commands
from .process import PARENT_ENV, die_with_parent, run_reloader
from .serving import bind, bind_slots, run_single, run_workers, tune_gc

log = logging.getLogger("bzzlite")


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
    check = f"bzzlite check {args.target}" + (f" --db {args.db}" if args.db else "")  # named when data breaks Unique
    if workers > 1:
        return run_workers(app, bind_slots(host, port, workers), args.graceful_timeout, ssl_options=ssl_options,
                           http=http, check_command=check)
    return run_single(app, bind(host, port), args.graceful_timeout, parent_pid=parent_pid, ssl_options=ssl_options,
                      http=http, check_command=check)


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
    if args.permissions:
        return print_matrix(*app.permission_matrix())
    rows = app.route_table()
    width = max(len(r[0]) for r in rows)
    for methods, path, handler in rows:
        print(f"{methods:<{width}}  {path}  ({handler})")
    return 0


def print_matrix(columns: list[str], rows: list[tuple[str, str, list[str]]]) -> int:
    """The permission matrix as an aligned table: a row per route and method, a column per caller."""
    table = [["METHOD", "PATH", *columns], *([method, path, *cells] for method, path, cells in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print("\nyes: allowed; 401: sign in first; 403: refused; own F: the documents whose F is the user; "
          "where ...: the documents matching it (others answer 404 when unreadable, 403 when readable).")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    app = locate_app(args.target)
    from ..openapi import build_document

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
    routes.add_argument("--permissions", action="store_true",
                        help="print who may do what instead: a row per route and method, a column per caller")
    routes.set_defaults(run=cmd_routes)
    openapi = sub.add_parser("openapi", help="print the OpenAPI document", parents=[common])
    openapi.add_argument("target")
    openapi.set_defaults(run=cmd_openapi)
    add_migration_commands(sub, common)
    return top


def _tornado_version() -> str:
    import tornado

    return str(tornado.version)


def main(argv: list[str] | None = None) -> int:
    shadow = shadowing_folder()
    if shadow is not None:
        print(f"bzzlite: error: the folder {shadow} hides the installed bzzlite package (Python imports "
              "'bzzlite' from the working directory first): run from another folder", file=sys.stderr)
        return 1
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
