"""Limits both HTTP servers (bzzlite's own and Tornado's) keep."""

from __future__ import annotations

from typing import Any

from ..settings import BODY_RATE_PERIOD, MAX_HEADERS, MIN_BODY_RATE

__all__ = ["BODY_RATE_PERIOD", "LINGER", "MAX_HEADERS", "MIN_BODY_RATE", "REQUEST_GRACE", "BodyRate", "server_limits"]

#: How long a stopping server (either) waits for a request on a connection it still has open:
#: the first one of a connection accepted just before the stop (its bytes may be on their way or
#: already in the socket, unread), the next one on an idle keep-alive connection (its client may
#: be sending it now). Such a request is answered with ``Connection: close``; a connection still
#: idle after this long is closed as :data:`LINGER` says.
REQUEST_GRACE = 1.0

#: How long a server that closes a connection between requests keeps reading (and dropping)
#: what the client still sends. It shuts down its side first, so the client reads a clean end of
#: stream (FIN), which HTTP clients answer by retrying an idempotent request (RFC 9112 9.3.1);
#: closing a socket with unread bytes in its buffer would send a reset instead, which they do not.
LINGER = 2.0


def server_limits(app: Any) -> dict[str, Any]:
    """The limits an app's settings give the HTTP server that serves it (either server)."""
    settings = getattr(app, "bzz_settings", None)
    if settings is None:  # a plain Tornado Application: the defaults
        return {}
    return {"max_headers": settings.max_headers, "min_body_rate": settings.min_body_rate,
            "body_rate_period": settings.body_rate_period}


class BodyRate:
    """How fast one request's body arrives, counting only the time the server waits for it.

    A server's periodic sweep calls :meth:`waited` for each request whose body it is reading
    (not while reading is paused: a handler not ready, a pipelined request's turn), with the
    time since its last sweep. Each time ``period`` seconds of waiting have added up, the bytes
    received in them must be at least ``min_rate * period``, else the body is too slow: a
    client trickling a byte every few seconds holds a connection (and a file descriptor) for
    as long as it likes under a timeout between bytes alone. Measured per period, not since
    the body began, so a burst first buys no trickle after it.
    """

    __slots__ = ("mark", "spent")

    def __init__(self) -> None:
        self.mark = 0  # bytes received when this period began
        self.spent = 0.0  # seconds waited for the body in this period

    def waited(self, seconds: float, received: int, min_rate: float, period: float) -> bool:
        """Count ``seconds`` more of waiting (``received`` bytes so far); False: too slow."""
        self.spent += seconds
        if self.spent < period:
            return True
        fast_enough = received - self.mark >= min_rate * self.spent
        self.mark = received
        self.spent = 0.0
        return fast_enough
