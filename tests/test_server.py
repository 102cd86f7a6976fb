"""bzzlite's HTTP server (bzzlite.http.tornado_server.Server): Tornado's answers for less CPU per request."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from tornado.netutil import bind_sockets

from bzzlite import App, Registry
from bzzlite.http.tornado_server import Server


async def _until(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` on the loop until it is truthy (generous deadline: not a timing test)."""
    for _ in range(1000):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


def _served(test: Callable[[Server, int], Awaitable[None]], app: App | None = None, **options: Any) -> None:
    async def main() -> None:
        served = app if app is not None else App(registry=Registry(), db="sqlite:///:memory:")
        server = Server(served, **options)
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        try:
            await test(server, sockets[0].getsockname()[1])
        finally:
            server.stop()
            await server.close_all_connections()
            await served.shutdown()

    asyncio.run(main())


def _nodelay(server: Server) -> list[int]:
    return [c.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in server._connections]


def test_nodelay_is_on_from_the_start_and_stays_on_between_requests() -> None:
    async def check(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: server._connections, "the server accepts the connection")
        assert _nodelay(server) == [1]  # Tornado's own would still be off before the first response
        for _ in range(3):
            response = await _request(reader, writer, "/_health")
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert _nodelay(server) == [1]
        writer.close()

    _served(check)


def test_responses_are_tornados() -> None:
    async def check(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        response = await _request(reader, writer, "/nothing/here")
        head = response.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[0] == b"HTTP/1.1 404 Not Found"
        names = [line.split(b":")[0] for line in head[1:]]
        assert names == [b"Content-Type", b"Date", b"X-Request-Id", b"Content-Length"]  # no Server header
        writer.close()

    _served(check)


def _slow_app() -> App:
    registry = Registry()

    @registry.resource(name="slow")
    class Slow(BaseModel):
        name: str

    @registry.on("pre_get_list")
    async def wait(sender: Any, arguments: Any, handler: Any) -> None:
        await asyncio.sleep(1.0)  # longer than the idle timeout below

    return App(registry=registry, db="sqlite:///:memory:")


def test_a_connection_idle_longer_than_the_timeout_is_closed() -> None:
    async def check(server: Server, port: int) -> None:
        assert server.idle_timeout == 0.3
        idle_reader, _idle_writer = await asyncio.open_connection("127.0.0.1", port)  # never sends
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET /_health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        used_reader, used_writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _request(used_reader, used_writer, "/_health")).startswith(b"HTTP/1.1 200")
        for reader in (idle_reader, slow_reader, used_reader):  # the server closes each: EOF
            assert await asyncio.wait_for(reader.read(), 30) == b""
        await _until(lambda: not server._connections, "the server forgets the closed connections")

    _served(check, idle_connection_timeout=0.3)


def test_a_request_taking_longer_than_the_idle_timeout_is_answered() -> None:
    async def check(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        response = await _request(reader, writer, "/slow")  # its receiver waits 1 s; the timeout is 0.3 s
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert (await _request(reader, writer, "/_health")).startswith(b"HTTP/1.1 200")  # still open
        writer.close()

    _served(check, app=_slow_app(), idle_connection_timeout=0.3)


def test_the_default_idle_timeout_is_tornados() -> None:
    async def check(server: Server, port: int) -> None:
        assert server.idle_timeout == 3600
        assert server.conn_params.header_timeout is None  # no timer per request

    _served(check)


def test_access_log_lines_as_tornado_writes_them_at_the_levels_enabled(caplog: Any) -> None:
    from bzzlite.testing import serve

    app = App(registry=Registry(), db="sqlite:///:memory:")
    caplog.set_level(logging.WARNING, logger="tornado.access")  # 2xx lines (INFO) off, 4xx on
    with serve(app) as client:
        assert client.get("/_health").code == 200
        assert client.get("/nothing").code == 404
        caplog.set_level(logging.INFO, logger="tornado.access")
        assert client.get("/_health?again").code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert [line.rsplit(" ", 1)[0] for line in lines] == ["404 GET /nothing (127.0.0.1)", "200 GET /_health?again (127.0.0.1)"]


def test_access_log_function_setting_is_still_called() -> None:
    from bzzlite.testing import serve

    seen: list[tuple[int, str]] = []
    app = App(registry=Registry(), db="sqlite:///:memory:", log_function=lambda h: seen.append((h.get_status(), h.request.path)))
    with serve(app) as client:
        client.get("/_health")
    assert seen == [(200, "/_health")]


def test_tune_gc_freezes_start_up_objects_and_raises_the_gen0_threshold() -> None:
    import gc

    from bzzlite.cli.main import parser
    from bzzlite.cli.serving import GC_GEN0_THRESHOLD, tune_gc

    threshold = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert parser().parse_args(["serve", "m:app"]).gc == "tuned"
    assert parser().parse_args(["serve", "m:app", "--gc", "default"]).gc == "default"
