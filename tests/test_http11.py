"""bzzlite's HTTP/1.1 server (bzzlite.http) driven by raw sockets and by real clients.

The server runs in a background thread on a free port; raw-socket tests check the bytes on
the wire (framing, pipelining, limits, smuggling attempts, closing), client tests check that
what real HTTP clients do works (keep-alive, chunked uploads, 100-continue, streaming).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.web
from pydantic import BaseModel
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.netutil import bind_sockets

from bzzlite import App, Registry
from bzzlite.http import run
from bzzlite.http.server import HTTPServer
from tests._processes import free_port
from tests.test_cli import APP, ENV

pytest.importorskip("httptools")


class Echo(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write({"length": len(self.request.body), "sha": hash(self.request.body) & 0xFFFF,
                    "body": self.request.body[:64].decode("latin1")})

    def get(self) -> None:
        self.write({"path": self.request.path, "query": self.request.query})


class Stream(tornado.web.RequestHandler):
    async def get(self) -> None:
        count = int(self.get_argument("n", "5"))
        size = int(self.get_argument("size", "10"))
        for i in range(count):
            self.write(b"%d:" % i + b"x" * size + b"\n")
            await self.flush()  # done once the transport has room: a slow reader holds it
        self.application.settings["streamed"] = count


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "0.3")))
        self.write("slow done")


class Closing(tornado.web.RequestHandler):
    def initialize(self, seen: list[str]) -> None:
        self.seen = seen

    async def get(self) -> None:
        await asyncio.sleep(5)

    def on_connection_close(self) -> None:
        self.seen.append("closed")


def tornado_app(**settings: Any) -> tornado.web.Application:
    seen: list[str] = []
    return tornado.web.Application(
        [("/echo", Echo), ("/stream", Stream), ("/slow", Slow), ("/hang", Closing, {"seen": seen})],
        seen=seen, **settings)


@contextlib.contextmanager
def serving(app: Any = None, **options: Any) -> Iterator[tuple[int, HTTPServer]]:
    """An HTTPServer for ``app`` (a small Tornado app by default) on a free port, in a thread."""
    app = app if app is not None else tornado_app()
    options.setdefault("max_body_size", 1024 * 1024)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app, **options)
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        server.add_sockets(sockets)
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = stop = asyncio.Event()
        started.set()
        await stop.wait()
        await server.close_all_connections()
        if isinstance(app, App):
            await app.shutdown()

    thread = threading.Thread(target=lambda: run(main(), "httptools"), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield sockets[0].getsockname()[1], server
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_response(sock: socket.socket, buffer: bytearray | None = None) -> tuple[int, dict[str, str], bytes]:
    """One response off a raw socket (Content-Length or chunked); leftover bytes stay in ``buffer``."""
    buffer = buffer if buffer is not None else bytearray()

    def fill() -> None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer.extend(data)

    while b"\r\n\r\n" not in buffer:
        fill()
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffer) < length:
            fill()
        body = bytes(buffer[:length])
        del buffer[:length]
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            while (end := buffer.find(b"\r\n")) < 0:
                fill()
            size = int(buffer[:end], 16)
            while len(buffer) < end + 2 + size + 2:
                fill()
            parts.append(bytes(buffer[end + 2:end + 2 + size]))
            del buffer[:end + 2 + size + 2]
            if size == 0:
                break
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes the connection (EOF or reset) within the socket's timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


# -- framing, keep-alive, pipelining --------------------------------------------------------


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    with serving() as (port, _), connect(port) as sock:
        body = b'{"a": 1}'
        sock.sendall(get("/slow?s=0.2") + get("/echo?x=1")
                     + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                     + get("/nowhere"))
        buffer = bytearray()
        answers = [read_response(sock, buffer) for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 404]
        assert answers[0][2] == b"slow done"  # the slow first one still comes first
        assert json.loads(answers[1][2])["query"] == "x=1"
        assert json.loads(answers[2][2])["length"] == len(body)


def test_a_request_sent_one_byte_at_a_time_is_read() -> None:
    request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    with serving() as (port, _), connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request:
            sock.send(bytes([byte]))
            time.sleep(0.001)
        status, _, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["body"] == "hello"


def test_chunked_request_body_is_reassembled() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["body"] == "hello world"


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        status, _, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["length"] == 4


def test_a_body_over_the_server_limit_gets_413_before_it_is_read() -> None:
    with serving(max_body_size=1000) as (port, _), connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert json.loads(body)["status"] == 413
        assert closed_by_server(sock)


def test_a_chunked_body_over_the_limit_gets_413() -> None:
    with serving(max_body_size=1000) as (port, _), connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"400\r\n" + b"x" * 1024 + b"\r\n")
        status, _, _ = read_response(sock)
        assert status == 413
        assert closed_by_server(sock)


def test_head_answers_headers_without_the_body() -> None:
    class Page(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("twelve bytes")

        head = get

    with serving(tornado.web.Application([("/page", Page)])) as (port, _), connect(port) as sock:
        sock.sendall(b"HEAD /page HTTP/1.1\r\nHost: t\r\n\r\n" + get("/page"))
        buffer = bytearray()
        sock.settimeout(2)
        while buffer.count(b"\r\n\r\n") < 2 or not buffer.endswith(b"twelve bytes"):
            buffer.extend(sock.recv(4096))
        first, second = bytes(buffer).split(b"HTTP/1.1 200 OK", 2)[1:]
        assert b"Content-Length: 12" in first and first.endswith(b"\r\n\r\n")  # no body after HEAD's head
        assert second.endswith(b"\r\n\r\ntwelve bytes")


def test_http10_without_keep_alive_is_closed_after_the_response() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"GET /stream?n=2 HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert b"Transfer-Encoding" not in data  # HTTP/1.0: the body ends with the connection
        assert data.endswith(b"0:xxxxxxxxxx\n1:xxxxxxxxxx\n")


def test_a_half_closed_client_is_taken_as_gone_and_its_handler_hears_it() -> None:
    app = tornado_app()
    with serving(app) as (port, server), connect(port) as sock:
        sock.sendall(get("/hang"))
        time.sleep(0.1)
        sock.shutdown(socket.SHUT_WR)  # as Tornado does: end of input ends the connection
        assert closed_by_server(sock)
        for _ in range(100):
            if app.settings["seen"]:
                break
            time.sleep(0.02)
        assert app.settings["seen"] == ["closed"]
        assert not server.connections


# -- malformed requests and smuggling attempts -------------------------------------------------


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: t\rX-Bare: cr\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /echo HTTP/9.9\r\nHost: t\r\n\r\n", 400),
    (b"G\x00T /echo HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /ec ho HTTP/1.1\r\nHost: t\r\n\r\n", 400),
])
def test_malformed_framing_is_a_problem_400_and_the_connection_closes(request_bytes: bytes, status: int) -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(request_bytes + get("/echo?smuggled=1"))
        got, headers, body = read_response(sock)
        assert got == status
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        problem = json.loads(body)
        assert problem["status"] == status and problem["detail"]
        assert closed_by_server(sock)  # the smuggled request behind it is never answered


def test_oversized_header_block_is_431() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 431
        assert headers["content-type"] == "application/problem+json"
        assert "header block" in json.loads(body)["detail"]
        assert closed_by_server(sock)


def test_many_headers_trickled_past_the_limit_are_431() -> None:
    with serving(max_header_size=4096) as (port, _), connect(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        with contextlib.suppress(OSError):
            for i in range(100):
                sock.sendall(b"X-H%d: %s\r\n" % (i, b"v" * 60))
        assert read_response(sock)[0] == 431


def test_oversized_request_line_is_414() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"GET /echo?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 414
        assert json.loads(body)["status"] == 414


# -- timeouts, closing, shutdown ----------------------------------------------------------------


def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout() -> None:
    with serving(idle_timeout=0.3) as (port, _), connect(port) as sock:
        sock.sendall(get("/echo"))
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_server(sock)
        assert 0.25 < time.monotonic() - started < 3


def test_a_client_trickling_its_headers_gets_408() -> None:
    with serving(header_timeout=0.4) as (port, _), connect(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(30):
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.05)
        status, _, body = read_response(sock)
        assert status == 408
        assert "head" in json.loads(body)["detail"]
        assert time.monotonic() - started < 3


def test_a_body_that_stops_arriving_gets_408_and_the_handler_hears_the_close() -> None:
    with serving(body_timeout=0.4) as (port, _), connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
        status, _, body = read_response(sock)
        assert status == 408
        assert "body" in json.loads(body)["detail"]


def test_a_client_leaving_mid_request_is_reported_to_the_handler() -> None:
    app = tornado_app()
    with serving(app) as (port, _):
        with connect(port) as sock:
            sock.sendall(get("/hang"))
            time.sleep(0.2)
        for _ in range(100):
            if app.settings["seen"]:
                break
            time.sleep(0.02)
        assert app.settings["seen"] == ["closed"]


def test_stop_closes_idle_connections_and_ends_busy_ones_after_their_response() -> None:
    with serving() as (port, server), connect(port) as idle, connect(port) as busy:
        idle.sendall(get("/echo"))
        assert read_response(idle)[0] == 200
        busy.sendall(get("/slow?s=0.5"))
        time.sleep(0.1)
        server.loop.call_soon_threadsafe(server.stop)
        assert closed_by_server(idle)
        status, headers, body = read_response(busy)
        assert (status, body) == (200, b"slow done")
        assert headers["connection"] == "close"
        assert closed_by_server(busy)
        with pytest.raises(OSError):
            connect(port, timeout=1).sendall(get("/echo"))


def test_ten_thousand_connections_opened_and_dropped_leave_no_fds_or_memory() -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with serving() as (port, server):
        def churn(n: int) -> None:
            for i in range(n):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    if i % 3 == 1:
                        sock.sendall(b"GET /echo HTTP/1.1\r\nHost")  # half a request
                    elif i % 3 == 2:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

        churn(1000)  # warm-up: the allocator's pools and the loop's structures reach their size
        time.sleep(0.3)
        gc.collect()
        before_fds, before_rss = fds(), rss()
        churn(10_000)
        time.sleep(0.3)  # connections the client closed before the server accepted them are accepted now
        for _ in range(500):  # up to 10 s on a loaded machine
            if not server.connections:
                break
            time.sleep(0.02)
        gc.collect()
        assert not server.connections
        assert fds() <= before_fds
        assert rss() - before_rss < 4 * 1024 * 1024


# -- streaming -------------------------------------------------------------------------------------


def test_a_streamed_response_waits_for_a_slow_reader() -> None:
    app = tornado_app()
    with serving(app) as (port, _), connect(port, timeout=10) as sock:
        sock.sendall(get("/stream?n=800&size=65536"))  # 52 MB: more than the kernel's socket buffers
        time.sleep(0.5)
        assert "streamed" not in app.settings  # the handler is held at flush(), not buffering it all
        status, headers, body = read_response(sock)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert len(body) == 800 * (65536 + 1) + sum(len(b"%d:" % i) for i in range(800))
        assert app.settings["streamed"] == 800


def test_a_stream_of_small_writes_still_waits_for_a_slow_reader() -> None:
    # Small writes are held for the end of the loop's turn (HTTPProtocol.send) and the handler's
    # flush() does not wait while the transport has room: past HOLD_LIMIT they must go to the
    # transport at once, or the whole answer would pile up in memory.
    app = tornado_app()
    with serving(app) as (port, _), connect(port, timeout=10) as sock:
        sock.sendall(get("/stream?n=12800&size=4096"))  # 52 MB in 4 KiB writes
        time.sleep(0.5)
        assert "streamed" not in app.settings
        status, _, body = read_response(sock)
        assert status == 200 and len(body) == 12800 * 4097 + sum(len(b"%d:" % i) for i in range(12800))
        assert app.settings["streamed"] == 12800


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0


def test_answers_of_one_turn_leave_in_one_write_per_connection() -> None:
    from bzzlite.http.protocol import HOLD_LIMIT, HTTPProtocol

    async def main() -> None:
        server = HTTPServer(tornado_app(), max_body_size=1024)
        server.loop = asyncio.get_running_loop()
        one, two = HTTPProtocol(server), HTTPProtocol(server)
        transports = [_Transport(), _Transport()]
        one.connection_made(transports[0])
        two.connection_made(transports[1])
        one.send(b"a")
        two.send(b"b")
        one.send(b"c")
        assert transports[0].writes == transports[1].writes == []  # held until the turn ends
        await asyncio.sleep(0)
        assert (transports[0].writes, transports[1].writes) == ([b"ac"], [b"b"])
        one.send(b"d")
        one.send(b"x" * HOLD_LIMIT)  # large: written now, after what was held
        assert transports[0].writes[1:] == [b"d", b"x" * HOLD_LIMIT]
        two.send(b"e")
        two.close()  # what was held goes before the close
        assert transports[1].writes[1:] == [b"e"] and transports[1].closed
        one.max_write_buffer_size = 1024  # a change feed's stream: every write at once
        one.send(b"f")
        assert transports[0].writes[-1] == b"f"
        await asyncio.sleep(0)
        assert len(transports[0].writes) == 4 and len(transports[1].writes) == 2  # nothing twice

    asyncio.run(main())


# -- a bzzlite App through it, and real clients -------------------------------------------------


class Note(BaseModel):
    title: str
    done: bool = False


@pytest.fixture
def note_app(tmp_path: Any) -> App:
    registry = Registry()
    registry.resource(Note)
    return App(registry=registry, db=f"sqlite:///{tmp_path}/notes.db", max_body_size=2000)


def test_http_client_keep_alive_crud(note_app: App) -> None:
    with serving(note_app) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/note", body=json.dumps({"title": "a"}), headers={"Content-Type": "application/json"})
        created = conn.getresponse()
        doc = json.loads(created.read())
        assert created.status == 201
        conn.request("GET", f"/note/{doc['id']}")
        got = conn.getresponse()
        assert (got.status, json.loads(got.read())["title"]) == (200, "a")
        conn.request("POST", "/note", body=b"x" * 3000, headers={"Content-Type": "application/json"})
        too_big = conn.getresponse()
        assert too_big.status == 413
        assert too_big.getheader("Content-Type") == "application/problem+json"
        too_big.read()
        conn.request("GET", "/note")  # the connection survived the 413 (its body was read)
        listed = conn.getresponse()
        assert json.loads(listed.read())["total"] == 1
        conn.close()


def test_tornado_client_chunked_upload_and_streaming(note_app: App) -> None:
    with serving(note_app) as (port, _):
        async def main() -> None:
            client = AsyncHTTPClient(force_instance=True)

            async def producer(write: Any) -> None:
                await write(b'{"title": ')
                await write(b'"streamed"}')

            created = await client.fetch(HTTPRequest(
                f"http://127.0.0.1:{port}/note", method="POST", body_producer=producer,
                headers={"Content-Type": "application/json"}))
            assert created.code == 201
            listed = await client.fetch(f"http://127.0.0.1:{port}/note?title=streamed")
            assert json.loads(listed.body)["total"] == 1
            client.close()

        asyncio.run(main())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reuses_the_connection_and_uploads_with_100_continue(note_app: App, tmp_path: Any) -> None:
    upload = tmp_path / "note.json"
    upload.write_text(json.dumps({"title": "from curl"}) + " " * 1500)  # above curl's 1 KB: Expect
    with serving(note_app) as (port, _):
        out = subprocess.run(
            ["curl", "-sS", "--http1.1", "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
             "--data-binary", f"@{upload}", f"http://127.0.0.1:{port}/note",
             "--next", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}",
             f"http://127.0.0.1:{port}/note"],
            capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        assert '"from curl"' in out.stdout
        assert out.stdout.endswith("200 0")  # the second request went over the first connection


def test_httpx_client(note_app: App) -> None:
    httpx = pytest.importorskip("httpx")
    with serving(note_app) as (port, _), httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.post("/note", json={"title": "x"}).status_code == 201
        assert client.get("/note").json()["total"] == 1


def test_aiohttp_client(note_app: App) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    with serving(note_app) as (port, _):
        async def main() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/note", json={"title": "y"}) as response:
                    assert response.status == 201
                async with session.get(f"http://127.0.0.1:{port}/note") as response:
                    assert (await response.json())["total"] == 1

        asyncio.run(main())


def test_an_extension_method_reaches_the_application_like_any_token() -> None:
    with serving() as (port, _), connect(port) as sock:
        sock.sendall(b"BREW /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}" + get("/echo?after=brew"))
        buffer = bytearray()
        assert read_response(sock, buffer)[0] == 405  # Tornado's answer: the handler has no brew()
        status, _, body = read_response(sock, buffer)
        assert (status, json.loads(body)["query"]) == (200, "after=brew")


# -- the command line's graceful stop, on both servers ---------------------------------------

def closes_cleanly(sock: socket.socket) -> bool:
    """The server ends ``sock`` between requests (an end of stream within the socket's timeout)
    in a way a client that sends a request at that very moment can tell from a lost request.

    The request is sent after the server's FIN, as by a client that has not noticed it yet. A
    server that closed its socket at once answers it with a reset, which clients do not retry;
    one that shut down its side and reads on until the client closes takes it, and the
    connection ends with no error on the client's socket.
    """
    try:
        while sock.recv(65536):
            pass
        sock.sendall(get("/_health"))
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # a reset
        return False
    deadline = time.monotonic() + 5
    while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != TCP_CLOSE:
        assert time.monotonic() < deadline, "the connection never ended"
        time.sleep(0.01)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


TCP_CLOSE = 7  # tcp_info.tcpi_state of an ended connection (Linux)


@contextlib.contextmanager
def serve_process(
        tmp_path: Any, source: str, server_kind: str) -> Iterator[tuple[subprocess.Popen, int, socket.socket]]:
    """``bzzlite serve`` of ``source`` (as app.py) in a process of its own, its port, and a first
    connection to it, made as soon as it listens; killed at the end if it has not stopped."""
    import sys

    (tmp_path / "app.py").write_text(source)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--port", str(port),
                             "--http", server_kind, "--log-level", "info"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        for _ in range(400):
            try:
                sock = connect(port)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        else:
            pytest.fail(f"bzzlite serve did not listen on port {port} within 20 s")
        yield proc, port, sock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_with_sigterm(proc: subprocess.Popen) -> None:
    """SIGTERM, returning once the server has logged that it stops (it takes no new connections)."""
    import signal

    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    while b"stopping: no new connections" not in proc.stderr.readline():
        assert proc.poll() is None


@pytest.mark.parametrize("server_kind", ["httptools", "tornado"])
def test_sigterm_drains_keep_alive_connections_and_exits_once_nothing_is_in_flight(
        tmp_path: Any, server_kind: str) -> None:
    # APP's receiver sleeps 1 s on a thing named "slow"
    with serve_process(tmp_path, APP, server_kind) as (proc, port, idle):
        quiet = connect(port)
        for sock in (idle, quiet):
            sock.sendall(get("/_health"))
            assert read_response(sock)[0] == 200  # keep-alive connections, now between requests
        busy = connect(port)
        body = b'{"name": "slow"}'
        busy.sendall(b"POST /thing HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        late, silent = connect(port), connect(port)  # accepted, first requests yet to come
        time.sleep(0.3)  # in its slow receiver
        started = time.monotonic()
        stop_with_sigterm(proc)
        # Sent after the stop: the next request on a kept-alive connection (a pooled client
        # does not know the server stops) and the first one on a connection accepted before.
        for sock in (idle, late):
            sock.sendall(get("/_health/live"))
            status, headers, _ = read_response(sock)
            assert (status, headers["connection"]) == (200, "close")
            assert closed_by_server(sock)
        status, headers, _ = read_response(busy)
        assert status == 201
        assert headers["connection"] == "close"
        assert closed_by_server(busy)
        assert closes_cleanly(quiet)  # after REQUEST_GRACE
        assert closes_cleanly(silent)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5  # not the 30 s grace period


TRICKLE = """
import asyncio
import tornado.web
from bzzlite import App, Registry

registry = Registry()


@registry.route("/trickle")
class Trickle(tornado.web.RequestHandler):
    def initialize(self, runtime):
        pass

    async def get(self):
        self.write("first")
        await self.flush()  # the headers leave now, saying keep-alive
        await asyncio.sleep(1.5)
        self.finish("last")


app = App(registry, db="sqlite:///t.db")
"""


@pytest.mark.parametrize("server_kind", ["httptools", "tornado"])
def test_a_response_begun_before_the_stop_leaves_its_connection_to_close_after_the_grace(
        tmp_path: Any, server_kind: str) -> None:
    # Its headers said keep-alive, so its client may send another request once it ends: the
    # connection then waits REQUEST_GRACE like any idle one, and is closed (not left open
    # until the graceful timeout).
    with serve_process(tmp_path, TRICKLE, server_kind) as (proc, _, sock):
        sock.sendall(get("/trickle"))
        head = b""
        while b"first" not in head:
            head += sock.recv(65536)
        assert b"onnection: close" not in head
        started = time.monotonic()
        stop_with_sigterm(proc)
        rest = b""
        while not (head + rest).endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
        assert b"last" in rest
        assert closes_cleanly(sock)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 8  # not the 30 s graceful timeout


def test_header_values_lose_surrounding_whitespace_and_control_characters_are_refused() -> None:
    class Headers(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"x": self.request.headers.get("X-Padded")})

    with serving(tornado.web.Application([("/h", Headers)])) as (port, _), connect(port) as sock:
        sock.sendall(b"GET /h HTTP/1.1\r\nHost: t\r\nX-Padded: \t value \t\r\n\r\n")
        status, _, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"x": "value"})
        sock.sendall(b"GET /h HTTP/1.1\r\nHost: t\r\nX-Ctl: a\x01b\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert (status, headers["content-type"]) == (400, "application/problem+json")


def test_without_httptools_auto_falls_back_to_tornado_with_one_log_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import importlib.util

    import bzzlite.http as chooser
    from bzzlite.http.tornado_server import Server as TornadoServer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("httptools", "uvloop") else real(name, *a))
    with caplog.at_level("INFO", logger="bzzlite"):
        assert chooser.resolve("auto") == "tornado"
    assert [r.getMessage() for r in caplog.records] == ["httptools is not installed: serving with Tornado's HTTP server"]
    assert isinstance(chooser.make_server("auto", tornado_app(), max_body_size=100), TornadoServer)
    assert chooser.loop_factory("auto") is None
    with pytest.raises(ValueError, match="needs the httptools package"):
        chooser.resolve("httptools")


def test_tornados_server_starts_and_stops_without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bzzlite.http.tornado_server import Server as TornadoServer

    monkeypatch.setitem(sys.modules, "httptools", None)  # import httptools: ImportError
    for module in ("bzzlite.http.server", "bzzlite.http.protocol"):
        monkeypatch.delitem(sys.modules, module)

    async def main() -> None:
        server = TornadoServer(tornado_app(), max_body_size=100)
        server.add_sockets(bind_sockets(0, "127.0.0.1"))
        server.stop()  # the graceful stop's parts must not need bzzlite's own server
        assert server.drained()
        await server.close_all_connections()

    asyncio.run(main())


def test_the_default_server_is_bzzlites_on_uvloop_when_installed() -> None:
    import bzzlite.http as chooser

    assert isinstance(chooser.make_server("auto", tornado_app(), max_body_size=100), HTTPServer)
    factory = chooser.loop_factory("auto")
    if importlib.util.find_spec("uvloop") is not None:
        assert factory is not None
        loop = factory()
        assert type(loop).__module__.startswith("uvloop")
        loop.close()
    assert chooser.loop_factory("tornado") is None


def test_requests_leave_no_reference_cycles_for_the_garbage_collector(note_app: App) -> None:
    """A served request is freed by reference counting: under load, cycles would cost gen0 collections."""
    with serving(note_app) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        def exchange(method: str, path: str, body: bytes | None = None) -> int:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status

        for _ in range(20):  # warm-up: caches, lazily built validators
            assert exchange("POST", "/note", b'{"title": "t"}') == 201
            assert exchange("GET", "/note?per_page=1") == 200
        gc.collect()
        gc.disable()
        try:
            for _ in range(100):
                assert exchange("POST", "/note", b'{"title": "t"}') == 201
                assert exchange("GET", "/note?per_page=1") == 200
                assert exchange("GET", "/nowhere") == 404
            unreachable = gc.collect()
        finally:
            gc.enable()
        conn.close()
        assert unreachable < 30  # 300 requests; before the fix: 24 objects each


def test_a_body_that_came_with_its_head_is_handled_in_the_step_that_prepared_it() -> None:
    # The body arrives with the head (one write): it is handed to the handler as prepare()
    # ends, and the method runs in the same step of the handler's task, not a turn later.
    from tests.test_dispatch import upload_app

    seen: list[str] = []
    with serving(upload_app(seen)) as (port, _), connect(port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b"y" * 100)
        status, _, body = read_response(sock)
    assert (status, json.loads(body)) == (200, {"size": 100})
    assert seen == ["prepare", "data", "post", "next turn"]
