"""Health probes: ``GET /_health`` (the store answers) and ``GET /_health/live`` (the process serves)."""

from __future__ import annotations

from ..errors import StoreUnavailable
from .base import BaseHandler


class HealthHandler(BaseHandler):
    """``GET /_health``: 200 when the store answers, 503 when it does not."""

    ALLOWED = ("GET",)

    async def get(self) -> None:
        try:
            store = await self.runtime.ready_store()
            details = await store.ping()
        except StoreUnavailable as exc:
            self.set_status(503)
            self.write_json({"status": "unavailable", "store": {"url_scheme": self.runtime.settings.db.split(":")[0],
                                                                "error": str(exc)}}, 503)
            return
        self.write_json({"status": "ok", "store": details})


class LiveHandler(BaseHandler):
    """``GET /_health/live``: 200 while the process serves, whatever the store's state."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        self.write_json({"status": "ok"})
