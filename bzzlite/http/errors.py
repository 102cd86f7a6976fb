"""Errors as HTTP answers: RFC 9457 problem+json bodies, for handlers and for the requests
the HTTP layer refuses before any handler sees them."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from tornado import httputil

from . import jsoncodec as _json

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An RFC 9457 problem body."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


_date: tuple[int, str] = (0, "")  # the current second and its Date header, replaced as one value


def http_date() -> str:
    """The ``Date`` header for now, formatted once a second (its resolution) rather than per response."""
    global _date
    now = int(time.time())
    second, text = _date
    if second != now:
        text = httputil.format_timestamp(now)
        _date = (now, text)
    return text




class ProtocolError(Exception):
    """A request the server cannot or will not read: answered with ``status``, then the connection closes."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def error_response(error: ProtocolError) -> bytes:
    """The whole response for ``error``: status line, headers (``Connection: close``) and body."""
    body = _json.dumps(problem(error.status, error.detail))
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n"
        f"Date: {http_date()}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin1") + body
