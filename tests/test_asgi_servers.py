"""The same App under each ASGI server users deploy with: uvicorn, hypercorn, granian and
gunicorn with uvicorn workers. Through :class:`bzzlite.asgi.ASGIAdapter`, each serves CRUD,
problem+json errors, a Server-Sent Events feed and the WebSocket change feed (its refusals
included), and stops on SIGTERM."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._processes import ROOT, free_port, http
from tests.test_proxy import nginx_in_front

websockets_sync = pytest.importorskip("websockets.sync.client", reason="the WebSocket client of these tests")
from websockets.exceptions import ConnectionClosed, InvalidStatus

APP = textwrap.dedent(
    """
    from pydantic import BaseModel
    from bzzlite import App, Registry
    from bzzlite.asgi import ASGIAdapter
    from bzzlite.auth import Auth, AuthProvider

    class Nobody(AuthProvider):
        name = "nobody"

        async def authenticate(self, access_token):
            return None

    registry = Registry()

    @registry.resource(auth=False)
    class Thing(BaseModel):
        name: str

    @registry.resource
    class Secret(BaseModel):
        text: str

    app = App(registry=registry, db="sqlite:///things.db", auth=Auth("s" * 40, [Nobody()]))
    application = ASGIAdapter(app)
    """
)

#: server -> (module it needs, command line serving app:application on {port})
SERVERS = {
    "uvicorn": ("uvicorn", ["-m", "uvicorn", "app:application", "--port", "{port}", "--log-level", "warning"]),
    "hypercorn": ("hypercorn", ["-m", "hypercorn", "app:application", "--bind", "127.0.0.1:{port}",
                                "--graceful-timeout", "2"]),
    "granian": ("granian", ["-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                            "--log-level", "warning", "app:application"]),
    "gunicorn": ("uvicorn_worker", ["-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "1",
                                    "-b", "127.0.0.1:{port}", "--graceful-timeout", "2", "app:application"]),
}


def request(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    return http(port, method, path, json.dumps(body).encode() if body is not None else None, headers)


#: server -> its option mounting the app under a path prefix (gunicorn has none)
ROOT_PATH_OPTIONS = {"uvicorn": ("--root-path", "/api"), "hypercorn": ("--root-path", "/api"),
                     "granian": ("--url-path-prefix", "/api")}


@contextlib.contextmanager
def serving(name: str, folder: Path, options: tuple[str, ...] = ()) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The app of APP under the ASGI server ``name`` (with ``options``) on a free port, until stopped."""
    module, argv = SERVERS[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} is not installed (the test extra pins it)")
    (folder / "app.py").write_text(APP)
    port = free_port()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, *(arg.format(port=port) for arg in argv), *options], cwd=folder,
                            env={**os.environ, "PYTHONPATH": path}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{name} exited: {proc.stderr.read() if proc.stderr else ''}"
            try:
                if request_status(port) == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path):
    with serving(request.param, tmp_path) as (port, proc):
        yield request.param, port, proc


#: servers offering ASGI's websocket.http.response extension: a refused upgrade is answered in full
REFUSES_WITH_HTTP = {"uvicorn", "hypercorn", "granian", "gunicorn"}


#: the close code each server ends an open WebSocket with on SIGTERM: uvicorn's "service restart";
#: hypercorn cancels the connection after --graceful-timeout ("internal error"); granian drops it
CLOSED_AT_SHUTDOWN = {"uvicorn": 1012, "gunicorn": 1012, "hypercorn": 1011, "granian": 1006}


def request_status(port: int) -> int:
    return request(port, "GET", "/_health")[0]


def test_crud_sse_and_websocket_feed(server) -> None:
    _, port, _ = server
    status, headers, body = request(port, "POST", "/thing", {"name": "a"}, {"X-Request-ID": "asgi-1"})
    created = json.loads(body)
    assert status == 201 and headers["Location"] == f"/thing/{created['id']}"
    assert headers["X-Request-ID"] == "asgi-1"
    assert json.loads(request(port, "GET", f"/thing/{created['id']}")[2]) == created
    status, headers, body = request(port, "POST", "/thing", {"name": 3})
    assert status == 422 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["errors"][0]["loc"] == ["name"]
    assert request(port, "GET", "/secret")[0] == 401

    # Server-Sent Events: the stream stays open and carries the next change
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stream:
        stream.sendall(b"GET /thing?name=sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        received = b""
        while b"event: ready" not in received:
            received += stream.recv(4096)
        assert received.startswith(b"HTTP/1.1 200")
        assert request(port, "POST", "/thing", {"name": "sse"})[0] == 201
        while b'"sse"' not in received:
            received += stream.recv(4096)
        assert b"event: created" in received

    # the WebSocket change feed: subscribe, see a change, unsubscribe
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/thing/_changes", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "subscribe", "id": "mine", "query": "name=ws"}))
        ready = json.loads(ws.recv(10))
        assert ready["type"] == "ready" and ready["sub"] == "mine"
        assert request(port, "POST", "/thing", {"name": "other"})[0] == 201
        assert request(port, "POST", "/thing", {"name": "ws"})[0] == 201
        event = json.loads(ws.recv(10))
        assert event["type"] == "created" and event["sub"] == "mine" and event["doc"]["name"] == "ws"
        ws.send(json.dumps({"type": "subscribe", "id": "mine"}))
        error = json.loads(ws.recv(10))
        assert error["type"] == "error" and error["status"] == 409 and error["sub"] == "mine"
        ws.send(json.dumps({"type": "unsubscribe", "id": "mine"}))
        assert json.loads(ws.recv(10)) == {"type": "unsubscribed", "sub": "mine"}


def test_websocket_refusals(server) -> None:
    name, port, _ = server
    with pytest.raises(InvalidStatus) as refused:  # auth is checked before the upgrade
        websockets_sync.connect(f"ws://127.0.0.1:{port}/secret/_changes", open_timeout=10)
    response = refused.value.response
    if name in REFUSES_WITH_HTTP:
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(response.body)["status"] == 401
    else:  # no websocket.http.response extension: a handshake closed before the accept
        assert response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:  # not a WebSocket route
        websockets_sync.connect(f"ws://127.0.0.1:{port}/thing", open_timeout=10)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:  # another origin, not allowed by the app's CORS
        websockets_sync.connect(f"ws://127.0.0.1:{port}/thing/_changes", origin="http://evil.example",
                                open_timeout=10)
    assert refused.value.response.status_code == 403
    assert "http://evil.example" in json.loads(refused.value.response.body)["detail"]


def test_sigterm_closes_an_open_websocket_and_stops(server) -> None:
    name, port, proc = server
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/thing/_changes", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "subscribe", "id": "all"}))
        assert json.loads(ws.recv(10))["type"] == "ready"
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(20)
    # How a server ends its sockets is its own choice (ASGI tells the app nothing before they are
    # closed); a feed client resumes from its last event id whatever the code.
    assert ws.close_code == CLOSED_AT_SHUTDOWN[name]
    assert proc.wait(20) in (0, -signal.SIGTERM)



#: requests the app must refuse (issue 28) -> the status bzzlite's own server answers
MALFORMED = {
    "no Host": (b"GET /thing HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    "two Host headers": (b"GET /thing HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
    "a Host list": (b"GET /thing HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n", 400),
    "HTTP/0.9": (b"GET /thing\r\n\r\n", 400),
    "HTTP/2.0 over HTTP/1.1": (b"GET /thing HTTP/2.0\r\nHost: a\r\nConnection: close\r\n\r\n", 505),
}
#: granian gives the app an empty Host for a request without one (an empty Host is valid
#: HTTP/1.1, RFC 9112 3.2): the app cannot tell them apart
SERVED = {("granian", "no Host")}


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def test_a_request_without_one_host_is_a_4xx_never_a_500(server) -> None:
    name, port, proc = server
    answered_by_the_app = 0
    for case, (data, status) in MALFORMED.items():
        reply = raw(port, data)
        head, _, body = reply.partition(b"\r\n\r\n")
        code = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
        assert code is None or code < 500 or code == status, (name, case, reply[:300])  # was a 500
        if b"application/problem+json" in head.lower():  # the app answered, as bzzlite's own server does
            answered_by_the_app += 1
            assert code == status and json.loads(body)["status"] == status, (name, case, reply[:300])
        elif (name, case) in SERVED:
            assert code == 200
        else:  # the server refused it before the app saw it (its own 400, or closing)
            assert code in (None, 400), (name, case, reply[:300])
    assert answered_by_the_app  # each server lets some through to the app
    assert request_status(port) == 200
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else ""), name  # a client's mistake: no traceback


@pytest.mark.parametrize("strip", [False, True], ids=["nginx-keeps-the-prefix", "nginx-strips-it"])
@pytest.mark.parametrize("name", list(ROOT_PATH_OPTIONS))
def test_root_path_behind_nginx(name: str, strip: bool, tmp_path: Path) -> None:
    """docs/deployment.md's nginx in front of the server's own root path option: every route
    answers through /api whether nginx passes the prefix on or strips it (uvicorn puts the root
    path in front of the path it received; hypercorn and granian leave the path as received)."""
    with serving(name, tmp_path, ROOT_PATH_OPTIONS[name]) as (port, _), \
            nginx_in_front(tmp_path, port, strip=strip) as front:
        status, headers, body = request(front, "POST", "/api/thing", {"name": "a"})
        assert status == 201, body
        created = json.loads(body)
        assert headers["Location"] == f"/api/thing/{created['id']}"
        assert json.loads(request(front, "GET", headers["Location"])[2]) == created
        status, headers, _ = request(front, "GET", "/api/thing?per_page=1")
        assert status == 200 and "</api/thing?per_page=1&page=1>" in headers["Link"]
        assert json.loads(request(front, "GET", "/api/openapi.json")[2])["servers"] == [{"url": "/api"}]
        status, _, page = request(front, "GET", "/api/docs")
        assert status == 200 and b'src="/api/docs/static/swagger-ui-bundle.js"' in page
        assert request(front, "GET", "/api/docs/static/swagger-ui-bundle.js")[0] == 200
        assert request(front, "GET", "/api/secret")[0] == 401
        with websockets_sync.connect(f"ws://127.0.0.1:{front}/api/thing/_changes", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "subscribe", "id": "all"}))
            assert json.loads(ws.recv(10))["type"] == "ready"
