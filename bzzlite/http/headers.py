"""Tornado's ``HTTPHeaders``, made empty without going through ``MutableMapping.update``.

Every request builds two header maps (the request's, the response's) that start empty;
``HTTPHeaders()`` passes nothing to ``update()``, whose generic body still runs two ABC
``isinstance`` checks. Only that step is skipped: names, values and validation are Tornado's.
"""

from __future__ import annotations

from typing import Any

from tornado import httputil


class Headers(httputil.HTTPHeaders):
    """An ``HTTPHeaders`` (a subclass: every ``isinstance`` check and method is Tornado's)."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            super().update(*args, **kwargs)


__all__ = ["Headers"]
