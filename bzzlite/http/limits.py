"""Limits both HTTP servers (bzzlite's own and Tornado's) keep."""

from __future__ import annotations

from typing import Any

from ..settings import BODY_RATE_PERIOD, MAX_HEADERS, MIN_BODY_RATE

__all__ = ["BODY_RATE_PERIOD", "FIRST_REQUEST_GRACE", "MAX_HEADERS", "MIN_BODY_RATE", "BodyRate", "server_limits"]

#: How long a stopping server (either) waits for the first request of a connection it accepted
#: just before it stopped (its bytes may be on their way or already in the socket, unread).
FIRST_REQUEST_GRACE = 1.0


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
