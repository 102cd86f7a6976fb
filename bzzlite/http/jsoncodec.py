"""JSON in and out: fast with orjson, strict about what JSON cannot carry portably."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from ..errors import HTTPError


class _Unportable(ValueError):
    pass


# An integer literal of 19+ digits may not fit in 64 bits; orjson would silently make it a float.
_LONG_INT = re.compile(rb"(?<![\w.])-?\d{19,}(?![\d.eE])")
_DIGITS = b"0123456789"

# Deeper bodies are refused: every layer below (merge patch, validation, the stores, orjson's
# own encoder, which stops at 255) recurses, and no real document nests this far.
MAX_DEPTH = 100
_TOO_DEEP = f"The JSON body nests deeper than {MAX_DEPTH} levels."


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels deep (no recursion)."""
    level: list[Any] = [value] if type(value) in (dict, list) else []  # parsed JSON: exact types
    for _ in range(limit):
        deeper: list[Any] = []
        for container in level:
            for child in container.values() if type(container) is dict else container:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return bool(level)


def _exact_int(text: str) -> int:
    """An integer literal as written. One beyond 64 bits is kept: a float or decimal field
    takes it (JavaScript writes 2**64 as 18446744073709552000); where it would be stored as
    an integer, validation refuses it (``_documents.unstorable``)."""
    if len(text.lstrip("-")) > 4300:  # Python's own limit on int(str)
        raise _Unportable(f"the integer {text[:30]}... has {len(text)} digits: beyond 64 bits, and beyond a double")
    return int(text)


def _checked_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Unportable(f"the number {text[:30]} is too large for a double")
    return value


def _reject_constant(name: str) -> Any:
    raise _Unportable(f"{name} is not a JSON number")


def _strict_loads(body: bytes) -> Any:
    """The slow, exact parse: for bodies with long integers, and to tell 'unportable number'
    apart from 'malformed'."""
    return json.loads(
        body.decode("utf-8"),
        parse_int=_exact_int,
        parse_float=_checked_float,
        parse_constant=_reject_constant,
    )


def _valid_text(value: Any) -> bool:
    """No lone surrogate in any string (the standard library's parser lets ``"\\ud800"`` through)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_text(k) and _valid_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_text(v) for v in value)
    return True


def loads(body: bytes) -> Any:
    """Parse a request body; malformed JSON → 400, NaN, infinities and numbers too long to
    parse → 422 (integers beyond 64 bits are parsed exactly, for validation to judge)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson stops at 1,024 levels
            raise HTTPError(400, _TOO_DEEP) from None
        try:
            value = _strict_loads(body)
            if _LONG_INT.search(body) and _valid_text(value):
                return value  # what orjson refuses and JSON allows: integers past 64 bits
        except _Unportable as why:
            raise HTTPError(422, f"Unportable number in JSON body: {why}") from None
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            pass
        raise HTTPError(400, f"Malformed JSON body: {exc}") from None
    # Nesting is only possible with brackets; counting them in C skips the walk for nearly every body.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth_exceeds(value, MAX_DEPTH):
        raise HTTPError(400, _TOO_DEEP)
    # The regex tries every position (0.5 µs for a small body, 4 µs for 400 bytes); counting
    # digits in C first skips it for any body with fewer than 19 digits in all.
    if len(body) - len(body.translate(None, _DIGITS)) >= 19 and _LONG_INT.search(body):
        try:
            return _strict_loads(body)  # orjson made the long integers floats: parse them exactly
        except _Unportable as why:
            raise HTTPError(422, f"Unportable number in JSON body: {why}") from None
        except RecursionError:
            raise HTTPError(400, _TOO_DEEP) from None
    return value


def dumps(value: Any) -> bytes:
    """Encode a response body."""
    return orjson.dumps(value)
