"""Cross-origin resource sharing: which other origins' pages may call the API, and how.

``App(cors=...)`` takes a :class:`CORS`, or a shorthand for its ``origins``: a list of exact
origins (``["https://shop.example.com"]``), ``"*"`` for any origin, or a regular expression
(a ``str`` or ``re.Pattern``) an origin must match in full. This module only decides; the HTTP
layer (``bzzlite.handlers.base``) writes the headers on every response and answers preflights
for every URL, so no route can forget them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: response headers a page's script may read beyond the CORS-safelisted ones
DEFAULT_EXPOSED = ("ETag", "Location", "Link", "X-Created-Id", "X-Request-ID", "Retry-After")
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")


@dataclass(frozen=True)
class CORS:
    """The CORS policy of an app.

    Args:
        origins: exact origins allowed (``scheme://host[:port]``), ``"*"`` for any, or a
            regular expression (``str`` or ``re.Pattern``) an origin must match in full.
        credentials: let pages send cookies and ``Authorization`` (``fetch(..., {credentials:
            "include"})``); such origins are also trusted by the auth's cross-site check.
            Not allowed with ``"*"``: any site could then act as the signed-in user.
        methods: methods a preflight approves.
        headers: request headers a preflight approves; ``"*"`` approves what is asked.
        expose_headers: response headers scripts may read (``ETag``, ``Location``...).
        max_age: seconds a browser may cache a preflight's answer.
    """

    origins: Iterable[str] | str | re.Pattern[str] = ()
    credentials: bool = False
    methods: Iterable[str] = DEFAULT_METHODS
    headers: Iterable[str] | str = "*"
    expose_headers: Iterable[str] = DEFAULT_EXPOSED
    max_age: int = 600
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _any: bool = field(init=False, repr=False, compare=False)
    _static: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        origins = self.origins
        exact: frozenset[str] = frozenset()
        pattern: re.Pattern[str] | None = None
        if isinstance(origins, re.Pattern):
            pattern = origins
        elif isinstance(origins, str) and origins != "*":
            try:
                pattern = re.compile(origins)
            except re.error as exc:
                raise ConfigurationError(f"CORS origins pattern {origins!r} is not a regular expression: {exc}") from None
        elif not isinstance(origins, str):
            exact = frozenset(_origin(o) for o in origins)
        everyone = origins == "*"
        if everyone and self.credentials:
            raise ConfigurationError("CORS(credentials=True) needs the origins listed or a pattern, not '*': "
                                     "otherwise any site could act as the signed-in user")
        if not isinstance(self.max_age, int) or self.max_age < 0:
            raise ConfigurationError("CORS max_age is a number of seconds, 0 or more")
        methods = ", ".join(m.upper() for m in self.methods)
        static = {"Access-Control-Allow-Methods": methods, "Access-Control-Max-Age": str(self.max_age)}
        if not isinstance(self.headers, str):
            static["Access-Control-Allow-Headers"] = ", ".join(self.headers)
        elif self.headers != "*":
            raise ConfigurationError("CORS headers is a list of header names, or '*'")
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_any", everyone)
        object.__setattr__(self, "_static", static)

    @classmethod
    def of(cls, value: Any) -> CORS | None:
        """``App(cors=...)``'s value as a policy: a CORS, a dict of its arguments, or origins."""
        if value is None or isinstance(value, CORS):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if isinstance(value, (str, re.Pattern, list, tuple, set, frozenset)):
            return cls(origins=value)
        raise ConfigurationError(f"App(cors=...) takes a CORS, a dict, a list of origins or a pattern, "
                                 f"not {type(value).__name__}")

    def allows(self, origin: str) -> bool:
        """Whether a page of ``origin`` may read this API's responses."""
        if self._any:
            return True
        if origin in self._exact:
            return True
        return self._pattern is not None and self._pattern.fullmatch(origin) is not None

    def response_headers(self, origin: str) -> dict[str, str]:
        """The headers of a response to an allowed origin's request (not a preflight)."""
        headers = {"Access-Control-Allow-Origin": "*" if self._any else origin}
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        exposed = ", ".join(self.expose_headers)
        if exposed:
            headers["Access-Control-Expose-Headers"] = exposed
        return headers

    def preflight_headers(self, origin: str, requested_headers: str | None) -> dict[str, str]:
        """The headers approving a preflight of an allowed origin."""
        headers = {"Access-Control-Allow-Origin": "*" if self._any else origin, **self._static}
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if "Access-Control-Allow-Headers" not in headers and requested_headers:
            headers["Access-Control-Allow-Headers"] = requested_headers
        return headers

    @property
    def varies(self) -> bool:
        """Whether answers depend on the request's Origin (then ``Vary: Origin``)."""
        return not self._any


def _origin(value: str) -> str:
    text = str(value).strip().lower().rstrip("/")
    if not _ORIGIN.fullmatch(text):
        raise ConfigurationError(f"CORS origin {value!r} must look like https://app.example.com "
                                 "(scheme, host and port, no path)")
    return text
