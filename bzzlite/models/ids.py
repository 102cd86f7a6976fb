"""Server-assigned ids in the ObjectId layout, so they sort by creation time on every store."""

from __future__ import annotations

import itertools
import os
import re
import time

_ID_RE = re.compile(r"[0-9a-f]{24}\Z")
_random = b""
_counter = itertools.count()


def _new_process() -> None:
    """Fresh random bytes and counter start: at import, and in every forked child, so a
    worker never repeats its parent's ids."""
    global _random, _counter
    _random = os.urandom(5)
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big") + 1)


_new_process()
os.register_at_fork(after_in_child=_new_process)


def new_id() -> str:
    """A 24-hex id: 4 bytes of seconds, 5 random bytes per process, a 3-byte counter.

    No lock and no getpid() per id: ``next()`` on an ``itertools.count`` is atomic under the
    GIL, and forks are handled once, when they happen.
    """
    counter = next(_counter) & 0xFFFFFF
    return (int(time.time()).to_bytes(4, "big") + _random + counter.to_bytes(3, "big")).hex()


def is_valid_id(value: object) -> bool:
    """True for a well-formed id (24 lowercase hex characters)."""
    return isinstance(value, str) and _ID_RE.match(value) is not None
