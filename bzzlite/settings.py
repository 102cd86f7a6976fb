"""The app's settings: one typed object, from arguments and ``BZZLITE_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigurationError

DEFAULT_DB = "sqlite:///bzzlite.db"
#: The MongoDB store's drivers (docs/mongodb.md), the default first: PyMongo's asyncio API, motor.
MONGO_DRIVERS = ("pymongo", "motor")
#: HTTP server limits (both servers; docs/cli.md "HTTP limits"): header fields in one request,
#: and the slowest a request body may arrive, in bytes a second over each period of seconds
MAX_HEADERS = 100
MIN_BODY_RATE = 500
BODY_RATE_PERIOD = 10.0


@dataclass(slots=True)
class Settings:
    """What an :class:`~bzzlite.App` is configured with.

    Each field can come from an ``App(...)`` argument or, when not given there, from the
    environment variable ``BZZLITE_<FIELD>`` (``BZZLITE_DB``, ``BZZLITE_MAX_BODY_SIZE``...).
    """

    db: str = DEFAULT_DB
    mongo_driver: str = MONGO_DRIVERS[0]  # or "motor": the MongoDB store's driver (docs/mongodb.md)
    max_body_size: int = 10 * 1024 * 1024
    store_timeout: float = 5.0  # seconds a store call may take before 503
    query_timeout: float = 3.0  # seconds a list query may run before it is stopped (503); 0 = no budget
    docs: bool = True  # serve /openapi.json and /docs
    title: str = "bzzlite API"
    version: str = "0.1.0"
    servers: list[str] = field(default_factory=list)
    debug: bool = False
    feeds: bool = True  # every collection is a live change feed (SSE and WebSocket; see docs/feeds.md)
    feed_journal_size: int = 10_000  # changes the store keeps for subscribers that resume
    feed_heartbeat: float = 15.0  # seconds between keep-alive messages on a feed
    feed_buffer: int = 256 * 1024  # bytes a subscriber may fall behind before it is disconnected
    feed_poll: float = 0.01  # seconds between reads of the SQLite journal while someone subscribes
    feed_lease: float = 2.0  # seconds a MongoDB journal leader holds its lease unrenewed (docs/feeds.md)
    # -- production on the web (docs/deployment.md) --
    cors: Any = None  # a bzzlite.cors.CORS, or its origins; BZZLITE_CORS: "*" or origins comma-separated
    proxy_headers: bool = False  # believe X-Forwarded-* / Forwarded from forwarded_allow_ips
    forwarded_allow_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # "*": any peer
    root_path: str = ""  # the path prefix a proxy mounts the app under ("/api")
    log_format: str = "text"  # or "json": the server's log lines (serve --log-format)
    metrics: bool = False  # Prometheus metrics at /_metrics (the extra bzzlite[metrics])
    # -- what the HTTP server accepts (docs/cli.md, docs/security.md) --
    max_headers: int = MAX_HEADERS  # header fields in one request; more: 431
    min_body_rate: int = MIN_BODY_RATE  # bytes/s a body must arrive at, over each body_rate_period; 0: no minimum
    body_rate_period: float = BODY_RATE_PERIOD  # seconds of waiting for a body over which its rate is measured

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, **given: Any) -> Settings:
        """Arguments win over ``BZZLITE_*`` variables, which win over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if given.get(f.name) is not None:
                values[f.name] = given.pop(f.name)
                continue
            given.pop(f.name, None)
            raw = env.get(f"BZZLITE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, f.type, raw)
        if given:
            raise ConfigurationError(f"unknown App setting(s): {', '.join(sorted(given))}")
        settings = cls(**values)
        if settings.max_body_size < 1:
            raise ConfigurationError("max_body_size must be a positive number of bytes")
        if settings.feed_journal_size < 1 or settings.feed_buffer < 1024:
            raise ConfigurationError("feed_journal_size must be 1 or more and feed_buffer at least 1024 bytes")
        if not settings.query_timeout >= 0:
            raise ConfigurationError("query_timeout is a number of seconds (0 turns the budget off)")
        if not (settings.feed_heartbeat > 0 and settings.feed_poll > 0 and settings.feed_lease > 0):
            raise ConfigurationError("feed_heartbeat, feed_poll and feed_lease are positive numbers of seconds")
        if settings.mongo_driver not in MONGO_DRIVERS:
            raise ConfigurationError(f"mongo_driver is one of {', '.join(map(repr, MONGO_DRIVERS))}, "
                                     f"not {settings.mongo_driver!r}")
        if settings.max_headers < 1 or settings.min_body_rate < 0 or not settings.body_rate_period > 0:
            raise ConfigurationError("max_headers is 1 or more, min_body_rate 0 or more bytes a second (0: no "
                                     "minimum) and body_rate_period a positive number of seconds")
        if settings.log_format not in ("text", "json"):
            raise ConfigurationError(f"log_format is 'text' or 'json', not {settings.log_format!r}")
        from .cors import CORS

        settings.root_path = mount_path(settings.root_path)

        settings.cors = CORS.of(settings.cors)
        return settings


def mount_path(root_path: str) -> str:
    """A root path as routes and URLs use it: ``api/`` → ``/api``; ``/`` or nothing → ``""``."""
    inner = root_path.strip("/")
    return "/" + inner if inner else ""


def _parse(name: str, type_: Any, raw: str) -> Any:
    kind = str(type_)
    if name == "cors":  # origins, not a pattern: a comma is no regular expression anyone means
        return raw.strip() if raw.strip() == "*" else [o.strip() for o in raw.split(",") if o.strip()]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind.startswith("list"):
            return [s for s in raw.split(",") if s]
    except ValueError:
        raise ConfigurationError(f"BZZLITE_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
