"""Requests the HTTP layer refuses before any handler sees them, answered as problem+json."""

from __future__ import annotations

from http import HTTPStatus

from . import jsoncodec as _json
from ..handlers.base import PROBLEM_JSON, http_date, problem


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
