"""A local fake identity provider for tests: a real HTTP server on 127.0.0.1.

    from bzzlite.auth import GoogleProvider
    from bzzlite.auth.testing import fake_provider

    with fake_provider() as fake:
        fake.tokens["good-token"] = {"sub": "1", "email": "a@b.c", "name": "Ann"}
        google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
        ...

Any path answers ``200`` with ``tokens[<Bearer token>]`` as JSON, or ``401`` for an
unknown token; ``replies[path]`` overrides that with a fixed ``(status, body)`` and
``hanging`` paths never answer (until the server stops). Every request is recorded.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .providers import AuthProvider


@dataclass(frozen=True)
class ProviderRequest:
    """One request the fake provider received."""

    method: str
    path: str  # with its query string
    headers: dict[str, str]


@dataclass
class FakeProvider:
    """What the fake provider answers, and what it was asked."""

    host: str
    port: int
    tokens: dict[str, Any] = field(default_factory=dict)
    replies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    hanging: set[str] = field(default_factory=set)
    requests: list[ProviderRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/userinfo") -> str:
        return f"http://{self.host}:{self.port}{path}"


def _handler_for(fake: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            fake.requests.append(ProviderRequest("GET", self.path, dict(self.headers.items())))
            route = self.path.split("?", 1)[0]
            if route in fake.hanging:
                fake.stopping.wait(60)
                return
            if route in fake.replies:
                status, body = fake.replies[route]
            else:
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                user = fake.tokens.get(token) if scheme.lower() == "bearer" else None
                status, body = (200, json.dumps(user).encode()) if user is not None else (
                    401, b'{"error": "invalid_token"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@contextlib.contextmanager
def fake_provider(host: str = "127.0.0.1") -> Iterator[FakeProvider]:
    """Serve a :class:`FakeProvider` on a free loopback port for the block's duration."""
    fake = FakeProvider(host, 0)
    server = ThreadingHTTPServer((host, 0), _handler_for(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    # shutdown() waits for serve_forever to look at its flag: every 0.5 s by default, every 20 ms here
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"fake-provider-{fake.port}", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


class StaticTokenProvider(AuthProvider):
    """A provider that knows a fixed set of tokens: for tests and for trying an app locally.

    ``StaticTokenProvider("local-dev", {"alice-token": {"id": "alice"}})`` signs in as Alice
    whoever sends ``alice-token``: never list it in a deployed app.
    """

    def __init__(self, name: str, users: dict[str, dict[str, Any]]) -> None:
        self.name = name
        self.users = {token: dict(user) for token, user in users.items()}

    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        user = self.users.get(access_token)
        return dict(user) if user is not None else None
