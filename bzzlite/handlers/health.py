"""Health probes: ``GET /_health`` (the store answers) and ``GET /_health/live`` (the process serves).

Anyone can call them, so they answer a status and nothing about how the app is configured:
no file path, no store URL, server name, version or error text. Why a store is unavailable
goes to the log.
"""

from __future__ import annotations

import logging

from ..errors import StoreUnavailable
from .base import BaseHandler

log = logging.getLogger("bzzlite")


class HealthHandler(BaseHandler):
    """``GET /_health``: 200 ``{"status": "ok"}`` when the store answers, 503 when it does not."""

    ALLOWED = ("GET",)

    async def get(self) -> None:
        try:
            store = await self.runtime.ready_store()
            await store.ping()
        except StoreUnavailable as exc:
            log.warning("health: the store is unavailable: %s", exc)
            self.write_json({"status": "unavailable"}, 503)
            return
        self.write_json({"status": "ok"})


class LiveHandler(BaseHandler):
    """``GET /_health/live``: 200 while the process serves, whatever the store's state."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        self.write_json({"status": "ok"})
