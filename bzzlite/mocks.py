"""Mock routes (bzz's MockHive): URLs answered from data rather than from a store.

    bzzlite.mock([
        ("GET", "/much/api", {"body": "much api"}),
        ("*", r"/such/.*", {"status": 202, "headers": {"X-Wow": "such"}}),
    ])

Declared on a registry (``bzzlite.mock`` is the default registry's), served by the
same :class:`~bzzlite.App` next to the resources. Pure data and checks: no Tornado here,
so the OpenAPI generator reads the same objects the router serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ConfigurationError

#: What ``*`` stands for: every method a mock can answer.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
OPTIONS = frozenset({"body", "status", "cookies", "headers"})
_REGEX_CHARS = frozenset(".^$*+?{}[]\\|()")
_BAD_HEADER = re.compile(r"[\x00-\x1f\x7f]")
_BAD_COOKIE = re.compile(r"[\x00-\x20;,\x7f]")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
NO_BODY = frozenset({204, 304})  # statuses that carry no body


@dataclass(frozen=True, slots=True)
class MockRoute:
    """One declared mock: which requests it answers and with what."""

    method: str  # upper-case, or "*" for any method
    url: str  # as declared: a path, or a regex matched against the whole path
    body: Any = ""  # str, bytes, JSON-able dict/list, or a callable of the request
    status: int = 200
    cookies: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.url))

    @property
    def is_literal(self) -> bool:
        """True when the URL is a plain path (no regex syntax): OpenAPI can name it."""
        return not (_REGEX_CHARS & set(self.url))

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS if self.method == "*" else (self.method,)

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None

    def allows(self, method: str) -> bool:
        return self.method == "*" or self.method == method

    @property
    def dynamic(self) -> bool:
        return callable(self.body)


def encode_body(body: Any) -> tuple[bytes, str | None]:
    """A mock's body as bytes and the Content-Type it implies (None when empty).

    ``str`` is sent as UTF-8 text, ``bytes`` as they are, a dict or a list as JSON.
    """
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    try:
        return orjson.dumps(body), "application/json"
    except TypeError:
        raise TypeError(f"a mock body must be str, bytes, a dict or a list; got {type(body).__name__}") from None


def content_type(route: MockRoute) -> str | None:
    """The Content-Type a static mock answers with (a Content-Type header wins)."""
    for name, value in route.headers.items():
        if name.lower() == "content-type":
            return value
    if route.dynamic or route.status in NO_BODY:
        return None
    return encode_body(route.body)[1]


def parse_entries(entries: Iterable[Sequence[Any]], declared: Iterable[MockRoute] = ()) -> list[MockRoute]:
    """Turn ``(method, url[, options])`` entries into checked :class:`MockRoute` objects.

    ``declared`` are the mocks already registered: declaring one of them again is an error.

    Raises:
        ConfigurationError: an entry is malformed; the message names the entry and the fix.
    """
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Iterable):
        raise ConfigurationError(
            'bzzlite.mock takes a list of (method, url, options) tuples, e.g. [("GET", "/much/api", {"body": "much api"})]'
        )
    routes = [_parse_entry(index, entry) for index, entry in enumerate(entries)]
    seen = {(route.method, route.url) for route in declared}
    for route in routes:
        if (route.method, route.url) in seen:
            raise ConfigurationError(f"mock {route.method} {route.url} is declared twice; keep one of them")
        seen.add((route.method, route.url))
    return routes


def _parse_entry(index: int, entry: Any) -> MockRoute:
    where = f"mock entry {index} ({entry!r:.80})"
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) not in (2, 3):
        raise ConfigurationError(f"{where}: expected (method, url) or (method, url, options)")
    method, url = entry[0], entry[1]
    options = entry[2] if len(entry) == 3 and entry[2] is not None else {}
    if not isinstance(method, str) or not (method == "*" or _TOKEN.match(method)):
        raise ConfigurationError(f'{where}: the method is an HTTP method such as "GET", or "*" for any method')
    method = method.upper()
    if method != "*" and method not in METHODS:
        raise ConfigurationError(f"{where}: mocks answer {', '.join(METHODS)} or *; not {method}")
    if not isinstance(url, str) or not url.startswith(("/", "^/")):
        raise ConfigurationError(f'{where}: the url is a path or a path regex starting with "/", e.g. "/much/api"')
    try:
        regex = re.compile(url)
    except re.error as exc:
        raise ConfigurationError(f"{where}: {url!r} is not a valid regular expression ({exc})") from None
    if regex.groupindex and len(regex.groupindex) != regex.groups:
        raise ConfigurationError(f"{where}: name all the groups of the url regex, or none of them")
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{where}: options are a dict with keys among {', '.join(sorted(OPTIONS))}")
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown option(s) {', '.join(map(str, unknown))}; use {', '.join(sorted(OPTIONS))}"
        )
    status = options.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ConfigurationError(f"{where}: status is an HTTP status code from 200 to 599, got {status!r}")
    body = options.get("body", "")
    if not callable(body):
        try:
            data, _ = encode_body(body)
        except TypeError as exc:
            raise ConfigurationError(f"{where}: {exc}; or a callable of the request") from None
        if data and status in NO_BODY:
            raise ConfigurationError(f"{where}: a {status} response has no body; remove the body or the status")
    headers = _string_map(where, "headers", options.get("headers", {}), _BAD_HEADER)
    for name in headers:
        if not _TOKEN.match(name):
            raise ConfigurationError(f"{where}: {name!r} is not a valid header name")
    cookies = _string_map(where, "cookies", options.get("cookies", {}), _BAD_COOKIE)
    for name in cookies:
        if not _TOKEN.match(name):
            raise ConfigurationError(f"{where}: {name!r} is not a valid cookie name")
    return MockRoute(method, url, body, status, cookies, headers)


def _string_map(where: str, option: str, value: Any, bad: re.Pattern[str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: {option} is a dict of names to values")
    result = {}
    for name, item in value.items():
        if not isinstance(name, str) or not isinstance(item, (str, int)) or isinstance(item, bool):
            raise ConfigurationError(f"{where}: {option} maps names to strings, got {name!r}: {item!r}")
        if bad.search(str(item)):
            raise ConfigurationError(f"{where}: the {option[:-1]} {name!r} has a value with forbidden characters")
        result[name] = str(item)
    return result


def check_collisions(routes: Iterable[MockRoute], taken: Iterable[tuple[str, str]]) -> None:
    """Refuse a mock whose URL would answer a path the app already serves.

    Args:
        taken: (what, sample path) for every route of the app: ``("TodoItem", "/todo_item")``.
    Raises:
        ConfigurationError: naming the mock and the route it hides.
    """
    samples = list(taken)
    for route in routes:
        for what, path in samples:
            if route.matches(path):
                raise ConfigurationError(
                    f"mock {route.method} {route.url} matches {path}, which {what} serves; "
                    "give the mock a URL of its own"
                )


#: Stands for an id (or any one path segment) when a route pattern becomes a sample path.
SAMPLE_SEGMENT = "5f0c6b2e9d1a4c3b2a190807"


def sample_paths(pattern: str) -> list[str]:
    """Concrete paths a router pattern answers: ``/todo_item/([^/]+)/?`` → the item path,
    with and without its trailing slash. Patterns with other regex syntax give none."""
    pattern = pattern.removeprefix("^").removesuffix("$")
    slash = pattern.endswith("/?")
    for group in ("([^/]+)", "(.+)", "(.*)"):
        pattern = pattern.replace(group, SAMPLE_SEGMENT)
    pattern = pattern.removesuffix("/?")
    path, escaped = [], False
    for char in pattern:
        if escaped:
            path.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _REGEX_CHARS:
            return []
        else:
            path.append(char)
    plain = "".join(path) or "/"
    return [plain, plain.rstrip("/") + "/"] if slash else [plain]


def group_by_url(routes: Iterable[MockRoute]) -> dict[str, list[MockRoute]]:
    """Mocks grouped by URL, in declaration order: one router rule per URL."""
    groups: dict[str, list[MockRoute]] = {}
    for route in routes:
        groups.setdefault(route.url, []).append(route)
    return groups

