"""Server-assigned ids in the ObjectId layout, so they sort by creation time on every store."""

from __future__ import annotations

import os
import re
import threading
import time

_ID_RE = re.compile(r"[0-9a-f]{24}\Z")
_lock = threading.Lock()
_state = {"pid": -1, "random": b"", "counter": 0}


def new_id() -> str:
    """A 24-hex id: 4 bytes of seconds, 5 random bytes per process, a 3-byte counter."""
    with _lock:
        pid = os.getpid()
        if _state["pid"] != pid:  # a forked worker must not repeat its parent's ids
            _state.update(pid=pid, random=os.urandom(5), counter=int.from_bytes(os.urandom(3), "big"))
        _state["counter"] = counter = (_state["counter"] + 1) & 0xFFFFFF  # type: ignore[operator]
        rand = _state["random"]
    return (int(time.time()).to_bytes(4, "big") + rand + counter.to_bytes(3, "big")).hex()  # type: ignore[operator]


def is_valid_id(value: object) -> bool:
    """True for a well-formed id (24 lowercase hex characters)."""
    return isinstance(value, str) and _ID_RE.match(value) is not None
