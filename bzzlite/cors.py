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
            Not allowed with ``"*"``, nor with a pattern that admits any site (see
            :func:`admits_anyone`): any site could then act as the signed-in user.
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
        hostile = pattern is not None and self.credentials and admits_anyone(pattern)
        if hostile:
            raise ConfigurationError(f"CORS(credentials=True) with the origins pattern {pattern.pattern!r} "  # type: ignore[union-attr]
                                     f"admits {hostile!r}, so any site could act as the signed-in user: "
                                     "anchor it to your own hosts (r'https://app\\.example\\.com') or list the origins")
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


#: Origins no credentialed rule may admit, whatever it is meant for: ``null`` (sandboxed frames,
#: ``file:`` pages, redirects: anyone can make a page of that origin) and hosts nobody owns.
HOSTILE_ORIGINS = ("null", "https://evil.example", "http://attacker.invalid", "https://attacker.invalid:8443")
_SAMPLES = 32  # origins a pattern is sampled into (one per branch of its alternatives, at most)


def admits_anyone(pattern: re.Pattern[str]) -> str | None:
    """An origin of a site anyone could own that ``pattern`` admits, or None.

    A pattern is tried on :data:`HOSTILE_ORIGINS`, then on hostile variants of the origins it
    is written for (sampled from the pattern itself, one per alternative): for a sample
    ``https://app.example.com``, the same host under another domain
    (``https://app.example.com.attacker.invalid``: an end left open), a name glued before its
    domain (``https://attackerexample.com``: a start left open), and another registered domain
    or top-level domain in its place (``https://app.attacker.com``, ``https://app.example.attacker``:
    a domain left to a wildcard). Any subdomain of the sample's own domain is not hostile
    (``https://[a-z]+\\.example\\.com`` passes). A domain under a public suffix of two labels
    (``co.uk``) is not told apart from the suffix: anchor such patterns to your own name.
    """
    for origin in HOSTILE_ORIGINS:
        if pattern.fullmatch(origin):
            return origin
    for sample in _samples(pattern):
        for origin in _variants(sample):
            if pattern.fullmatch(origin):
                return origin
    return None


def _variants(sample: str) -> list[str]:
    """Origins of other sites made from ``sample``, an origin a pattern admits."""
    scheme, sep, rest = sample.partition("://")
    host, colon, port = rest.partition(":")
    labels = host.split(".")
    if not sep or not host or host.startswith("[") or not all(labels) or labels[-1].isdigit():
        return []  # no domain name (an IP address, no origin at all): the fixed probes only
    port = colon + port
    domain = ".".join(labels[-2:])
    variants = [f"{scheme}://{host}.attacker.invalid{port}", f"{scheme}://attacker{domain}{port}",
                f"{scheme}://{'.'.join([*labels[:-1], 'attacker'])}{port}"]
    if len(labels) > 1:
        variants.append(f"{scheme}://{'.'.join([*labels[:-2], 'attacker', labels[-1]])}{port}")
    for end in range(1, len(labels) - 1):  # a dot the pattern did not escape: app-example.com
        variants.append(f"{scheme}://{'.'.join(labels[:end])}-{'.'.join(labels[end:])}{port}")
    return variants


def _samples(pattern: re.Pattern[str]) -> list[str]:
    """Strings ``pattern`` matches in full, one per alternative (empty when it cannot tell)."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # CPython's own regex parser

        tree = _parser.parse(pattern.pattern, pattern.flags)
        texts = _sample(list(tree))
    except Exception:  # noqa: BLE001 - a construct not sampled (or another Python): the fixed probes still run
        return []
    return [text for text in texts if pattern.fullmatch(text)]


def _sample(items: list[Any]) -> list[str]:
    from re import _constants as op  # type: ignore[attr-defined]

    texts = [""]
    for kind, value in items:
        if kind is op.LITERAL:
            parts = [chr(value)]
        elif kind is op.NOT_LITERAL:
            parts = ["a" if value != ord("a") else "b"]
        elif kind is op.ANY:
            parts = ["a", "."]  # a letter, or the dot it stands for when a dot was not escaped
        elif kind is op.IN:
            parts = [_member(value)]
        elif kind in (op.MAX_REPEAT, op.MIN_REPEAT, op.POSSESSIVE_REPEAT):
            low, high, sub = value
            count = max(low, min(high, 1))  # one of what may repeat: the name a wildcard stands for
            parts = [text * count for text in _sample(list(sub))]
        elif kind is op.SUBPATTERN:
            parts = _sample(list(value[-1]))
        elif kind is op.ATOMIC_GROUP:
            parts = _sample(list(value))
        elif kind is op.BRANCH:
            parts = [text for branch in value[1] for text in _sample(list(branch))]
        elif kind in (op.AT, op.ASSERT, op.ASSERT_NOT):
            parts = [""]
        else:
            raise ValueError(f"not sampled: {kind}")
        texts = [text + part for text in texts for part in parts][:_SAMPLES]
    return texts


def _member(items: list[Any]) -> str:
    """A character of a ``[...]`` class, a lowercase letter where it allows one."""
    from re import _constants as op  # type: ignore[attr-defined]

    if items and items[0][0] is op.NEGATE:  # [^/:]: a letter it does not exclude
        for char in "abc":
            code = ord(char)
            if not any((kind is op.LITERAL and value == code) or (kind is op.RANGE and value[0] <= code <= value[1])
                       or kind is op.CATEGORY for kind, value in items[1:]):
                return char
        raise ValueError("a negated class")
    for kind, value in items:
        if kind is op.RANGE and value[0] <= ord("a") <= value[1]:
            return "a"
    for kind, value in items:
        if kind is op.LITERAL:
            return chr(value)
        if kind is op.RANGE:
            return chr(value[0])
        if kind is op.CATEGORY:
            return {op.CATEGORY_DIGIT: "1", op.CATEGORY_WORD: "a", op.CATEGORY_SPACE: " "}.get(value, "a")
    raise ValueError("an empty class")


def _origin(value: str) -> str:
    text = str(value).strip().lower().rstrip("/")
    if not _ORIGIN.fullmatch(text):
        raise ConfigurationError(f"CORS origin {value!r} must look like https://app.example.com "
                                 "(scheme, host and port, no path)")
    return text
