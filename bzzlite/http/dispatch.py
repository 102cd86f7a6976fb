"""How ``App`` hands a request to its handler: the rules indexed by their first path segment
(``App.find_handler``), and the delegate that starts the handler (``App.get_handler_delegate``).

Tornado tries an app's rules one by one, two routers deep, for every request: with a dozen
resources that is dozens of regular expressions before ``/item/{id}`` is found. A rule whose
pattern starts with a literal segment (``/item/...``) can only match paths whose first
segment is that text; the others (a pattern such as ``/(?P<x>...)`` or ``/openapi.json``,
whose dot is a regex character) may match any path and are tried everywhere. Each bucket
keeps the rules' order, so the first rule that matches is the one Tornado would pick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import tornado.web
from tornado import httputil
from tornado.concurrent import Future, future_set_result_unless_cancelled
from tornado.routing import PathMatches, Rule, RuleRouter

_SPECIAL = set(".^$*+?{}[]\\|()")


class Request(httputil.HTTPServerRequest):
    """Tornado's ``HTTPServerRequest``, made in fewer steps when the target has no query string
    (a GET by id, a create): Tornado parses the empty query and deep-copies the empty result.
    The same attributes and the same checks of the Host header, by Tornado's own pattern; a
    target with a query goes through Tornado's constructor, its parsing limits included."""

    def __init__(self, connection: httputil.HTTPConnection, server_connection: object,
                 start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> None:
        uri = start_line.path
        if "?" in uri:
            super().__init__(connection=connection, server_connection=server_connection, start_line=start_line,
                             headers=headers)
            return
        self.method, self.uri, self.version = start_line
        self.headers = headers
        self.body = b""
        context = getattr(connection, "context", None)
        self.remote_ip = getattr(context, "remote_ip", None)
        self.protocol = getattr(context, "protocol", "http")
        if "Host" in headers:
            host = headers["Host"]
        elif self.version == "HTTP/1.0":  # HTTP/1.0 does not require one
            host = "127.0.0.1"
        else:
            raise httputil.HTTPInputError("Missing Host header")
        if not _HOST.fullmatch(host):
            raise httputil.HTTPInputError(f"Invalid Host header: {host!r}")
        if "," in host:  # two Host headers, or one a proxy joined: Tornado refuses both
            raise httputil.HTTPInputError(f"Multiple host headers not allowed: {host!r}")
        self.host = host
        self.host_name = httputil.split_host_and_port(host.lower())[0]
        self.files = {}
        self.connection = connection
        self.server_connection = server_connection
        self._start_time = time.time()
        self._finish_time = None
        self.path = uri
        self.query = ""
        self.arguments = {}
        self.query_arguments = {}
        self.body_arguments = {}


_HOST = httputil._ABNF.host  # what Tornado's constructor checks the Host header against


class Routing(httputil.HTTPMessageDelegate):
    """Tornado's routing delegate (``Application.start_request``), making a :class:`Request`."""

    def __init__(self, app: Any, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self.app = app
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        request = Request(self.request_conn, self.server_conn, start_line, headers)
        self.delegate = self.app.find_handler(request)  # bzzlite's App always finds one (NotFoundHandler)
        return self.delegate.headers_received(start_line, headers)  # type: ignore[union-attr]

    @property
    def routed(self) -> httputil.HTTPMessageDelegate | None:
        """The delegate the request went to (bzzlite's server then calls it without this one)."""
        return self.delegate

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)  # type: ignore[union-attr]

    def finish(self) -> None:
        self.delegate.finish()  # type: ignore[union-attr]

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()


def first_segment(rule: Rule) -> str | None:
    """The literal first segment every path ``rule`` matches starts with, or None."""
    if not isinstance(rule.matcher, PathMatches):
        return None
    pattern = rule.matcher.regex.pattern
    if not pattern.startswith("/"):
        return None
    segment: list[str] = []
    for char in pattern[1:]:
        if char == "/" or char == "$":
            return "".join(segment)
        if char in _SPECIAL:
            return None
        segment.append(char)
    return "".join(segment)


class SegmentIndex:
    """The rules of ``router`` by first segment; ``find`` is ``router.find_handler``, faster."""

    def __init__(self, router: RuleRouter) -> None:
        self.router = router
        self.size = len(router.rules)
        keyed = [(rule, first_segment(rule)) for rule in router.rules]
        self.anywhere = [rule for rule, key in keyed if key is None]
        self.buckets = {key: [rule for rule, k in keyed if k in (key, None)] for _, key in keyed if key is not None}

    def stale(self) -> bool:
        return len(self.router.rules) != self.size  # rules added after the index was built

    def find(self, request: httputil.HTTPServerRequest) -> Any:
        path = request.path
        end = path.find("/", 1)
        rules = self.buckets.get(path[1:end] if end > 0 else path[1:], self.anywhere)
        for rule in rules:
            params = rule.matcher.match(request)
            if params is not None:
                if rule.target_kwargs:
                    params["target_kwargs"] = rule.target_kwargs
                delegate = self.router.get_target_delegate(rule.target, request, **params)
                if delegate is not None:
                    return delegate
        return None


class HandlerDelegate(httputil.HTTPMessageDelegate):
    """One request to a ``RequestHandler``: Tornado's ``tornado.web._HandlerDelegate``, with one
    shortcut on bzzlite's HTTP/1.1 server.

    A handler that streams its request body (every bzzlite handler) is started by Tornado when
    the request's head arrives: its task runs ``prepare()``, tells the connection it is ready
    for the body, then waits for the body's end. A request without a body (a GET, a DELETE:
    ``request.connection.bodiless``) has nothing to stream, so it is started once it is
    complete, with its body already ended: one task, no waits in between, and the handler sees
    the same calls in the same order.
    """

    def __init__(self, application: Any, request: httputil.HTTPServerRequest, handler_class: Any,
                 handler_kwargs: dict[str, Any] | None, path_args: list[bytes] | None,
                 path_kwargs: dict[str, bytes] | None) -> None:
        self.application = application
        self.connection = request.connection
        self.request = request
        self.handler_class = handler_class
        self.handler_kwargs = handler_kwargs or {}
        self.path_args = path_args or []
        self.path_kwargs = path_kwargs or {}
        self.chunks = bytearray()
        self.stream_request_body = getattr(handler_class, "_stream_request_body", False)
        self.handler: Any = None
        self.whole = False  # started by finish(): the request has no body to stream

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        if self.stream_request_body:
            self.request._body_future = Future()
            if getattr(self.connection, "bodiless", False):
                self.whole = True
                return None
            return self.execute()
        return None

    def data_received(self, data: bytes) -> Awaitable[None] | None:
        if self.stream_request_body:
            return self.handler.data_received(data)  # type: ignore[no-any-return]
        self.chunks += data
        return None

    def finish(self) -> None:
        if self.whole:
            self.request._body_future.set_result(None)
            self.execute()
        elif self.stream_request_body:
            future_set_result_unless_cancelled(self.request._body_future, None)
        else:
            self.request.body = bytes(self.chunks)
            self.execute()

    def on_connection_close(self) -> None:
        if not self.stream_request_body:
            self.chunks = None  # type: ignore[assignment]
        elif self.handler is not None:  # else not started: a request cut before its end never is
            self.handler.on_connection_close()

    def execute(self) -> Awaitable[None] | None:
        settings = self.application.settings
        if not settings.get("compiled_template_cache", True):
            with tornado.web.RequestHandler._template_loader_lock:
                for loader in tornado.web.RequestHandler._template_loaders.values():
                    loader.reset()
        if not settings.get("static_hash_cache", True):
            settings.get("static_handler_class", tornado.web.StaticFileHandler).reset()
        handler = self.handler = self.handler_class(self.application, self.request, **self.handler_kwargs)
        transforms = [t(self.request) for t in self.application.transforms]
        if self.stream_request_body and not self.whole:
            # done when prepare() has run: the body may come (at once on bzzlite's server)
            signal = getattr(self.connection, "prepared_signal", None)
            handler._prepared_future = Future() if signal is None else signal()
        # A task, as Tornado's gen.convert_yielded makes, held here rather than in the IOLoop's
        # set, which costs a second done callback (and a lookup of the IOLoop) per request.
        task = asyncio.get_running_loop().create_task(handler._execute(transforms, *self.path_args, **self.path_kwargs))
        _running.add(task)  # asyncio keeps only a weak reference to a task
        task.add_done_callback(_ended)
        return handler._prepared_future  # type: ignore[no-any-return]


_running: set[asyncio.Task[None]] = set()


def _ended(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.result()  # what _execute let out is logged by the loop, as under Tornado
