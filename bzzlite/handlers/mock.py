"""Mock routes over HTTP: answer a request from the first mock that takes its method."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError
from ..mocks import METHODS, NO_BODY, MockRoute, encode_body
from .base import BaseHandler

if TYPE_CHECKING:
    from ..runtime import Runtime


class MockHandler(BaseHandler):
    """One URL pattern's mocks; other mocks matching the same path are consulted too."""

    SUPPORTED_METHODS = METHODS

    def initialize(self, runtime: Runtime, mocks: list[MockRoute], **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.mocks = mocks  # every mock of the app, in declaration order

    def matching(self) -> list[MockRoute]:
        return [m for m in self.mocks if m.matches(self.request.path)]

    def allowed_methods(self) -> tuple[str, ...]:
        methods = [method for m in self.matching() for method in m.methods]
        return tuple(dict.fromkeys(methods))

    async def answer(self, *args: Any, **kwargs: Any) -> None:
        method = self.request.method or "GET"
        route = next((m for m in self.matching() if m.allows(method)), None)
        if route is None:
            raise HTTPError(405, "Method not allowed on this route.")
        body = route.body
        if route.dynamic:
            self.request.body = self.body  # the streamed body, within the size limit
            body = body(self.request)
            if inspect.isawaitable(body):
                body = await body
        try:
            data, content_type = encode_body(body)
        except TypeError as exc:
            raise HTTPError(500, "Internal server error.", log_message=f"mock {route.method} {route.url}: {exc}") from None
        self.set_status(route.status)
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        for name, value in route.headers.items():
            self.set_header(name, value)
        for name, value in route.cookies.items():
            self.set_cookie(name, value)
        self.finish(None if route.status in NO_BODY else data)

    get = post = put = patch = delete = head = options = answer  # type: ignore[assignment]
