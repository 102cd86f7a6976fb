"""The handler every bzzlite route uses: body parsing and problem+json errors.

Every failure is rendered in one place, :meth:`BaseHandler.write_error`, which maps
bzzlite's errors, store errors and Tornado's own to RFC 9457 problem details. A
client never sees a traceback.
"""

from __future__ import annotations

import functools
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.util
import tornado.web
from pydantic import BaseModel, ValidationError
from tornado import httputil
from tornado.concurrent import Future
from tornado.httputil import HTTPInputError, parse_body_arguments

from ..documents import Documents, transaction
from ..errors import (
    DuplicateKey,
    HTTPError,
    InvalidDocument,
    NotFound,
    QueryTimeout,
    QueryTooComplex,
    Referenced,
    StoreUnavailable,
    TransactionIncomplete,
    VersionConflict,
    error_list,
)
from ..http import jsoncodec as _json
from ..http.errors import PROBLEM_JSON, http_date, problem
from ..http.headers import Headers
from ..http.observability import HEADER, current_request_id, header, request_id
from ..signals import failed_signal
from . import forms as _forms

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..runtime import Runtime

    M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("bzzlite")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def as_http_error(exc: BaseException) -> HTTPError | None:
    """The HTTP meaning of an exception, or None for a bug (→ 500)."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, NotFound):
        return HTTPError(404, "No document with that id.")
    if isinstance(exc, DuplicateKey):
        field = exc.field or "a unique field"
        return HTTPError(409, f"Another document already has this value of {field}.",
                         errors=[{"loc": [exc.field] if exc.field else [], "msg": "value already taken",
                                  "type": "unique"}])
    if isinstance(exc, Referenced):
        if not exc.referrers:  # only documents the caller may not read: nothing about them
            return HTTPError(409, "The document cannot be deleted: other documents refer to it.")
        return HTTPError(409, f"The document cannot be deleted: {exc}; delete or change them first.",
                         errors=[{"loc": [field], "msg": f"{n} {model} document(s) refer to it", "type": "referenced"}
                                 for model, field, n in exc.referrers])
    if isinstance(exc, TransactionIncomplete):
        return HTTPError(409, "The change failed midway and could not be fully undone; check the documents.",
                         log_message=str(exc))
    if isinstance(exc, VersionConflict):
        return HTTPError(412, "The document changed: its current ETag does not match If-Match.")
    if isinstance(exc, QueryTooComplex):
        return HTTPError(400, "The query is too complex for the store: use fewer filter conditions or values.",
                         log_message=str(exc))
    if isinstance(exc, QueryTimeout):
        return HTTPError(503, f"The query took longer than its budget of {exc.budget:g} s and was stopped. "
                         "Filter or sort on indexed fields, or page with after= cursors, so that it "
                         "does less work; or retry when the server is less busy.",
                         headers={"Retry-After": str(max(1, round(exc.budget)))}, log_message=str(exc))
    if isinstance(exc, StoreUnavailable):
        return HTTPError(503, "The store is unavailable; try again shortly.", headers={"Retry-After": "1"},
                         log_message=str(exc))
    if isinstance(exc, InvalidDocument):
        # The server's data, not the request: a deliberate 500 naming the document, never a traceback.
        return HTTPError(500, f"The stored document {exc.resource}/{exc.id} does not match the current "
                         f"{exc.model} model, and no migration upgrades it. This is a problem of the server's "
                         "data, not of the request; the server's log has the details.",
                         log_message=f"{exc}; `bzzlite check` lists every such document, and a migration "
                         "(docs: Changing your models) upgrades them")
    if isinstance(exc, ValidationError):
        return HTTPError(422, "The request body is invalid.", errors=error_list(exc))
    if isinstance(exc, tornado.web.HTTPError):
        detail = exc.reason or (HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error")
        if exc.status_code == 405:
            detail = "Method not allowed on this route."
        elif exc.status_code == 404:
            detail = "No route matches this URL."
        return HTTPError(exc.status_code, detail)
    return None


def server_body_limit(limit: int) -> int:
    """Tornado's own body limit for an app limit: above it, so the app answers 413 itself."""
    return limit * 2 + 1024 * 1024


# Proxies refuse large response headers (nginx's default buffer is 4-8 KiB); a Link header
# repeats the query four times, so a long query gets fewer links, or none (docs/queries.md).
LINK_HEADER_MAX = 4096


def link_header(links: list[tuple[str, str]]) -> str | None:
    """The ``Link`` header for ``(rel, url)`` pairs within :data:`LINK_HEADER_MAX` bytes: all of
    them, else ``next`` and ``prev`` only (what a client paging through needs), else none."""
    for wanted in (None, ("next", "prev")):
        value = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links if wanted is None or rel in wanted)
        if value and len(value) <= LINK_HEADER_MAX:
            return value
    return None


class _AnyMethod(tuple):  # type: ignore[type-arg]
    def __contains__(self, item: object) -> bool:
        return True


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Reads bodies up to the app's limit and renders every error as problem+json."""

    runtime: Runtime
    ALLOWED: tuple[str, ...] = ()

    def __init__(self, application: tornado.web.Application, request: httputil.HTTPServerRequest,
                 **kwargs: Any) -> None:
        # Tornado's own (6.5 to 6.6), less the template namespace it builds for every request:
        # ``ui`` is made when a template asks for it (no bzzlite handler renders one).
        self.application = application
        self.request = request
        self._headers_written = False
        self._finished = False
        self._auto_finish = True
        self._prepared_future = None
        self.clear()
        request.connection.set_close_callback(self.on_connection_close)  # type: ignore[union-attr]
        self.initialize(**kwargs)

    @functools.cached_property
    def ui(self) -> tornado.util.ObjectDict:  # type: ignore[override]
        """Tornado's template namespace (``ui_methods``, ``ui_modules``), made on first use."""
        ui = tornado.util.ObjectDict((n, self._ui_method(m)) for n, m in self.application.ui_methods.items())
        ui["_tt_modules"] = ui["modules"] = tornado.web._UIModuleNamespace(self, self.application.ui_modules)
        return ui

    def initialize(self, runtime: Runtime, **kwargs: Any) -> None:
        self.runtime = runtime
        # runs before Tornado starts the request's task, which copies the context: every log
        # line of the request carries its id (bzzlite/http/observability.py)
        current_request_id.set(self._headers[HEADER])
        if runtime.settings.cors is not None:  # clear() ran before the runtime was known
            cors_headers(self)
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._in_flight = True
        runtime.in_flight += 1  # graceful shutdown waits for this to drop to zero

    def documents(self, model: type[M]) -> Documents[M]:
        """A resource's documents, bound to this request: its auth rules and scope apply,
        and receivers get this handler."""
        return Documents.of(self.runtime, model, self)

    def transaction(self) -> Any:
        """``async with handler.transaction():`` — the document API's writes in it commit together."""
        return transaction(self.runtime)

    def on_finish(self) -> None:
        self._done()

    def on_connection_close(self) -> None:
        # Tornado's own fails the body future of a streamed request: without it, a client that
        # hangs up mid-body (or sends a bad chunk size) leaves its handler waiting forever.
        super().on_connection_close()
        self._done()

    def _done(self) -> None:
        if self._in_flight:
            self._in_flight = False
            self.runtime.in_flight -= 1

    def clear(self) -> None:
        """Tornado's reset of the response (6.4 to 6.6 alike), without formatting a ``Server``
        header that is then removed and a ``Date`` that changes once a second."""
        headers = self._headers = Headers()  # set one by one: a dict goes through Mapping.update
        headers["Content-Type"] = "text/html; charset=UTF-8"
        headers["Date"] = http_date()
        self.set_default_headers()
        self._headers[HEADER] = request_id(self.request)
        runtime = getattr(self, "runtime", None)
        if runtime is not None and runtime.settings.cors is not None:  # errors keep them too
            cors_headers(self)
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def compute_etag(self) -> str | None:
        return None  # ETags come from document versions, not from hashing bodies

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Tornado's ``finish()``, in one step for what nearly every bzzlite answer is: one body
        of bytes written at once, no output transform, no cookie. Anything else goes Tornado's
        way. Its ETag step does nothing here: ``compute_etag`` is None."""
        status = self._status_code
        if (not isinstance(chunk, bytes) or self._finished or self._headers_written or self._write_buffer
                or self._transforms or hasattr(self, "_new_cookie") or status < 200 or status in (204, 304)
                or type(self).compute_etag is not BaseHandler.compute_etag):
            return super().finish(chunk)
        headers = self._headers
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(chunk))
        request = self.request
        connection = request.connection
        connection.set_close_callback(None)  # type: ignore[union-attr]
        self._headers_written = True
        future = connection.write_headers(  # type: ignore[union-attr]
            httputil.ResponseStartLine("", status, self._reason), headers,
            b"" if request.method == "HEAD" else chunk)
        connection.finish()  # type: ignore[union-attr]
        self._log()
        self._finished = True
        self.on_finish()
        self._break_cycles()
        return future

    def prepare(self) -> Any:
        length = header(self.request, "Content-Length")
        limit = self.runtime.settings.max_body_size
        if length is not None:
            if not (length.isascii() and length.isdigit()):  # isdigit() alone accepts "²"
                raise HTTPError(400, "Content-Length is not a number.")
            if int(length) > limit:
                # A client that waits for "100 Continue" reads this answer before sending the
                # body; any other is answered after its body was read and discarded, since
                # closing mid-upload would reset the connection before it reads the 413.
                expects = self.request.headers.get("Expect", "").lower() == "100-continue"
                if expects or int(length) > server_body_limit(limit):
                    raise HTTPError(413, f"The body is larger than the limit of {limit} bytes.")
                self._too_large = True
        return None

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._too_large or self._size > self.runtime.settings.max_body_size:
            self._too_large = True
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        if self._too_large:
            raise HTTPError(413, f"The body is larger than the limit of {self.runtime.settings.max_body_size} bytes.")
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)

    def parse_body(self) -> Any:
        """The request body as Python data: JSON, or form fields (as in bzz's example).

        Raises:
            HTTPError: 400 malformed, 413 too large, 415 unsupported Content-Type.
        """
        body = self.body
        encoding = (header(self.request, "Content-Encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise HTTPError(415, f"Unsupported Content-Encoding {encoding!r}: send the body uncompressed.")
        content_type = header(self.request, "Content-Type") or ""
        media, _, params = content_type.partition(";")
        media = media.strip().lower()
        content_type = f"{media};{params}" if params else media  # Tornado matches the media type as given
        if not media:  # no Content-Type: JSON if it looks like JSON, else form fields
            media = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/x-www-form-urlencoded"
        if media == "application/json" or media.endswith("+json"):
            if not body.strip():
                raise HTTPError(400, "The request body is empty; send a JSON object.")
            return _json.loads(body)
        if media in _FORM_TYPES:
            return self.form_data(self._form_fields(content_type or media, body))
        raise HTTPError(415, f"Unsupported Content-Type {media!r}: send application/json or form fields.")

    def _form_fields(self, content_type: str, body: bytes) -> dict[str, list[str]]:
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, Any] = {}
        try:
            parse_body_arguments(content_type, body, arguments, files, self.request.headers)
        except HTTPInputError as exc:
            raise HTTPError(400, f"Malformed form body: {exc}") from None
        try:
            return {k: [v.decode("utf-8") for v in values] for k, values in arguments.items()}
        except UnicodeDecodeError:
            raise HTTPError(400, "Form fields are not valid UTF-8.") from None

    def form_data(self, fields: dict[str, list[str]]) -> Any:
        """Decoded form fields as body data, with bzz's conventions (``child.name=``,
        ``tags[]=``: see :mod:`bzzlite.handlers.forms`); the model coerces the values."""
        return _forms.form_data(fields, self.form_model())

    def form_model(self) -> type[BaseModel] | None:
        """The model a form body is data for (it tells list and optional fields apart)."""
        return None

    def query_arguments(self) -> dict[str, list[str]]:
        try:
            return {k: [v.decode("utf-8") for v in vs] for k, vs in self.request.query_arguments.items()}
        except UnicodeDecodeError:
            raise HTTPError(400, "The query string is not valid UTF-8.") from None

    def head(self, *args: Any, **kwargs: Any) -> Any:
        """HEAD answers what GET would, headers only (RFC 9110 9.3.2): Tornado leaves out the body."""
        if "GET" not in self.allowed_methods():
            raise tornado.web.HTTPError(405)
        return self.get(*args, **kwargs)

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(_json.dumps(value))

    # -- errors, rendered in one place ----------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = as_http_error(exc) if exc is not None else None
        if error is None:
            if status_code < 500 and exc is None:
                error = HTTPError(status_code)
            else:
                signal = failed_signal(exc) if exc is not None else None
                error = HTTPError(500, f"A {signal} receiver failed; the server log has the details."
                                  if signal else "Internal server error.")
        self.clear()
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        if error.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", PROBLEM_JSON)
        self.clear_header("Server")
        self.finish(_json.dumps(problem(error.status, error.message, error.errors)))

    def allowed_methods(self) -> tuple[str, ...]:
        return self.ALLOWED

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        error = as_http_error(value) if value is not None else None
        if error is None:
            super().log_exception(typ, value, tb)
        elif error.status >= 500:
            log.warning("%s %s: %s", self.request.method, self.request.path, error.log_message or error.message)
        elif error.log_message:
            log.info("%s %s: %s", self.request.method, self.request.path, error.log_message)


# -- cross-origin requests (bzzlite/cors.py decides) ------------------------------------------


def cors_headers(handler: tornado.web.RequestHandler) -> None:
    """Add the CORS headers of the app's policy for this request's Origin (none if not allowed)."""
    cors = handler.runtime.settings.cors  # type: ignore[attr-defined]
    if cors.varies:
        handler.add_header("Vary", "Origin")
    origin = handler.request.headers.get("Origin")
    if origin is not None and cors.allows(origin):
        for name, value in cors.response_headers(origin).items():
            handler.set_header(name, value)


def is_preflight(request: httputil.HTTPServerRequest) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


class PreflightHandler(BaseHandler):
    """A CORS preflight, for any URL: the app routes every one here (``App.find_handler``)."""

    SUPPORTED_METHODS = ("OPTIONS",)  # type: ignore[assignment]

    def clear(self) -> None:
        super().clear()
        for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"):
            self.clear_header(name)  # a preflight's are set by options()

    def options(self, *args: Any) -> None:
        cors = self.runtime.settings.cors
        origin = self.request.headers["Origin"]
        if not cors.allows(origin):
            raise HTTPError(403, f"CORS: the origin {origin[:100]!r} is not allowed to call this API.")
        for name, value in cors.preflight_headers(origin, self.request.headers.get("Access-Control-Request-Headers")).items():
            self.set_header(name, value)
        self.set_status(204)
        self.finish()


class NotFoundHandler(BaseHandler):
    """Every unknown route: 404 as problem+json, whatever the method."""

    SUPPORTED_METHODS = _AnyMethod()  # type: ignore[assignment]

    def prepare(self) -> Any:
        raise HTTPError(404, "No route matches this URL.")
