"""Request ids and log formats: every log line of a request names it, in text or JSON.

A request's id is its ``X-Request-ID`` header when that is sane (1 to 128 characters of
letters, digits and ``-_.:``), else a new random one (64 bits from ``random``, which is
reseeded in each forked worker: a log correlation id, not a secret); it is sent back in ``X-Request-ID`` and
set in a context variable that :class:`RequestIdFilter` copies onto each log record made while
the request is handled (access log line included).
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from typing import Any

HEADER = "X-Request-ID"
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("bzzlite_request_id", default="-")
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def header(request: Any, name: str) -> str | None:
    """A request header's value, or None: ``headers.get()`` raises and catches a KeyError for
    every absent header, and most requests lack most of the headers bzzlite looks for."""
    headers = request.headers
    return headers[name] if name in headers else None  # noqa: SIM401 (the point of this function)


def request_id(request: Any) -> str:
    """The id of ``request`` (a Tornado request), chosen once and remembered on it."""
    rid: str | None = getattr(request, "bzz_request_id", None)
    if rid is None:
        given = header(request, HEADER)
        rid = given if given is not None and _SANE.fullmatch(given) else f"{_random_bits(64):016x}"
        request.bzz_request_id = rid
    return rid


_random_bits = random.getrandbits  # no system call per request, unlike os.urandom


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", current_request_id.get()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The server's logging: one stderr handler, request ids, ``text`` or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
