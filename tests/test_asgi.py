"""bzzlite.asgi under uvicorn: the same App, its routes, errors, CORS and Server-Sent Events."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_cli import ENV, free_port
from tests.test_process import answers, wait_for

pytest.importorskip("uvicorn", reason="the ASGI test runs uvicorn (the bench extra)")

APP = textwrap.dedent(
    """
    from pydantic import BaseModel
    from bzzlite import App, Registry
    from bzzlite.asgi import ASGIAdapter

    registry = Registry()

    @registry.resource
    class Thing(BaseModel):
        name: str

    app = App(registry=registry, db="sqlite:///asgi.db", cors=["http://shop.example"])
    application = ASGIAdapter(app)
    """
)


@pytest.fixture
def uvicorn(tmp_path: Path):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:application", "--port", str(port),
                             "--log-level", "warning"], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: answers(port) == 200, "uvicorn serves the app")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once stopped


def call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return reply.status, reply.headers, reply.read()
    finally:
        conn.close()


def test_crud_errors_and_cors_under_uvicorn(uvicorn: int) -> None:
    status, headers, body = call(uvicorn, "POST", "/thing", {"name": "a"}, {"X-Request-ID": "asgi-1"})
    created = json.loads(body)
    assert status == 201
    assert headers["Location"] == f"/thing/{created['id']}" and headers["X-Request-ID"] == "asgi-1"
    assert headers.get_all("Date") and len(headers.get_all("Date")) == 1
    status, headers, body = call(uvicorn, "GET", f"/thing/{created['id']}")
    assert status == 200 and json.loads(body) == created
    assert call(uvicorn, "GET", f"/thing/{created['id']}", headers={"If-None-Match": headers["ETag"]})[0] == 304
    assert call(uvicorn, "PATCH", f"/thing/{created['id']}", {"name": "b"})[0] == 200
    status, headers, body = call(uvicorn, "GET", "/thing?nope=1")
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    status, headers, _ = call(uvicorn, "PUT", "/thing")
    assert status == 405 and headers["Allow"]
    status, headers, _ = call(uvicorn, "OPTIONS", "/thing", headers={"Origin": "http://shop.example",
                                                                     "Access-Control-Request-Method": "PATCH"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "http://shop.example"
    assert call(uvicorn, "DELETE", f"/thing/{created['id']}")[0] == 204
    _, _, body = call(uvicorn, "GET", "/thing")
    assert json.loads(body)["total"] == 0


def test_server_sent_events_stream_under_uvicorn(uvicorn: int) -> None:
    with socket.create_connection(("127.0.0.1", uvicorn), timeout=10) as stream:
        stream.sendall(b"GET /thing HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        received = stream.recv(4096)
        assert received.startswith(b"HTTP/1.1 200")
        assert call(uvicorn, "POST", "/thing", {"name": "live"})[0] == 201
        deadline = time.monotonic() + 10
        while b'"live"' not in received and time.monotonic() < deadline:
            received += stream.recv(4096)
        assert b'"live"' in received


# -- the in-process test clients (bzzlite/testing/client.py) -------------------------------------

httpx = pytest.importorskip("httpx", reason="the test clients need httpx")

from bzzlite.fixtures import client  # noqa: F401 - the fixture users import
from bzzlite.testclient import AsyncTestClient, TestClient
from tests.test_cors import make_app as auth_app


@pytest.fixture
def app():
    return auth_app(cors=None, auth=True)


def test_fixture_client_with_login_and_cookies(client: TestClient) -> None:  # noqa: F811 - the imported fixture
    assert client.get("/secret").status_code == 401
    assert client.get("/auth/me/").json() == {"authenticated": False}
    client.login({"id": "ann", "name": "Ann"})
    me = client.get("/auth/me/").json()
    assert me["authenticated"] is True and me["userData"]["name"] == "Ann"
    created = client.post("/secret", json={"text": "s"})
    assert created.status_code == 201 and created.headers["location"] == f"/secret/{created.json()['id']}"
    assert client.get(f"/secret/{created.json()['id']}").json()["text"] == "s"
    assert client.post("/secret", json={"text": "s"}, headers={"X-Requested-With": ""}).status_code == 403
    assert client.post("/auth/signout/").json() == {"loggedOut": True}  # the server clears the cookie
    assert client.get("/secret").status_code == 401
    bad = client.post("/order", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_async_client() -> None:
    async def main() -> None:
        async with AsyncTestClient(auth_app(cors=None, auth=True)) as in_process:
            created = await in_process.post("/order", json={"lines": [{"sku": "a"}]})
            assert created.status_code == 201
            lines = await in_process.get(f"/order/{created.json()['id']}/lines")
            assert lines.status_code == 200 and lines.json()["items"] == [{"sku": "a"}]
            with pytest.raises(ValueError, match="'id'"):
                in_process.login({"name": "nobody"})

    asyncio.run(main())


def test_a_second_login_switches_users_after_a_request() -> None:
    """login(ann), a request (the server renews the cookie), login(bob): the client is bob."""
    with TestClient(auth_app(cors=None, auth=True)) as in_process:
        in_process.login({"id": "ann", "name": "Ann"})
        assert in_process.get("/auth/me/").json()["userData"]["id"] == "ann"
        in_process.login({"id": "bob", "name": "Bob"})
        assert in_process.get("/auth/me/").json()["userData"]["id"] == "bob"
        assert in_process.get("/auth/me/").json()["userData"]["id"] == "bob"  # bob's renewed cookie
        in_process.logout()
        assert in_process.get("/auth/me/").json() == {"authenticated": False}


def test_a_second_login_switches_users_in_the_async_client() -> None:
    async def main() -> None:
        async with AsyncTestClient(auth_app(cors=None, auth=True)) as in_process:
            in_process.login({"id": "ann", "name": "Ann"})
            assert (await in_process.get("/auth/me/")).json()["userData"]["id"] == "ann"
            in_process.login({"id": "bob", "name": "Bob"})
            assert (await in_process.get("/auth/me/")).json()["userData"]["id"] == "bob"

    asyncio.run(main())


def test_login_needs_auth() -> None:
    with TestClient(auth_app(cors=None)) as in_process, pytest.raises(RuntimeError, match="auth=Auth"):
        in_process.login({"id": "x"})


# -- WebSocket scopes driven by hand (bzzlite/asgi/websocket.py) ----------------------------


def drive_socket(app, path: str, incoming: list[dict], extensions: dict | None = None) -> list[dict]:
    """Run one ``websocket`` scope through the adapter; what it sent, once it returned."""
    from bzzlite.asgi import ASGIAdapter

    sent: list[dict] = []

    async def main() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for message in [{"type": "websocket.connect"}, *incoming]:
            queue.put_nowait(message)

        async def receive() -> dict:
            if queue.empty() and sent and sent[-1]["type"] in ("websocket.close", "websocket.http.response.body"):
                return {"type": "websocket.disconnect", "code": 1000}
            return await asyncio.wait_for(queue.get(), 5)

        async def send(message: dict) -> None:
            sent.append(message)
            await asyncio.sleep(0)

        scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "scheme": "ws",
                 "extensions": extensions or {}}
        await asyncio.wait_for(ASGIAdapter(app)(scope, receive, send), 10)

    asyncio.run(main())
    return sent


def test_a_refused_upgrade_without_the_http_response_extension_is_a_closed_handshake() -> None:
    sent = drive_socket(auth_app(cors=None, auth=True), "/secret/_changes", [])
    assert [m["type"] for m in sent] == ["websocket.close"]  # the server answers 403


def test_a_refused_upgrade_with_the_extension_is_problem_json() -> None:
    sent = drive_socket(auth_app(cors=None, auth=True), "/secret/_changes", [],
                        extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 401 and (b"content-type", b"application/problem+json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["status"] == 401


def test_a_route_without_a_websocket_handler_is_refused() -> None:
    sent = drive_socket(auth_app(cors=None), "/order", [], extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.close"]


def test_messages_over_the_handlers_limit_close_the_socket_with_1009() -> None:
    big = json.dumps({"type": "subscribe", "id": "x", "query": "a" * 70_000})
    sent = drive_socket(auth_app(cors=None), "/order/_changes", [{"type": "websocket.receive", "text": big}])
    assert sent[0]["type"] == "websocket.accept"
    assert sent[-1] == {"type": "websocket.close", "code": 1009, "reason": "message too big"}


# -- the ASGI server's root path ------------------------------------------------------------


def test_the_servers_root_path_is_the_apps_whether_or_not_the_path_carries_it() -> None:
    from bzzlite.asgi import ASGIAdapter

    async def main() -> None:
        application = ASGIAdapter(auth_app(cors=None))
        # httpx's transport leaves the root path out of scope["path"]; uvicorn puts it in
        for path in ("/order", "/api/order"):
            transport = httpx.ASGITransport(app=application, root_path="/api")
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as in_process:
                created = await in_process.post(path, json={"lines": []})
                assert created.status_code == 201
                assert created.headers["location"] == f"/api/order/{created.json()['id']}"
                listed = await in_process.get(path + "?per_page=1")
                assert listed.status_code == 200 and "</api/order?" in listed.headers["link"]
                document = (await in_process.get(path.replace("order", "openapi.json"))).json()
                assert document["servers"] == [{"url": "/api"}]

    asyncio.run(main())


def test_an_apps_own_root_path_and_servers_are_kept() -> None:
    from bzzlite.openapi import build_document

    assert build_document(auth_app(cors=None, root_path="/v1"))["servers"] == [{"url": "/v1"}]
    assert build_document(auth_app(cors=None, root_path="/v1", servers=["https://api.example"]))["servers"] == \
        [{"url": "https://api.example"}]
    assert "servers" not in build_document(auth_app(cors=None))


# -- WebSockets through the test clients -------------------------------------------------------


def test_client_websocket_follows_a_feed_with_the_clients_session() -> None:
    from bzzlite.testclient import WebSocketClosed, WebSocketRefused

    with TestClient(auth_app(cors=None, auth=True)) as in_process:
        with pytest.raises(WebSocketRefused) as refused:
            in_process.websocket_connect("/secret/_changes").__enter__()
        assert refused.value.status == 401 and refused.value.body["status"] == 401
        in_process.login({"id": "ann", "name": "Ann"})  # the session cookie goes with the upgrade
        with in_process.websocket_connect("/secret/_changes") as ws:
            ws.send_json({"type": "subscribe", "id": "mine", "query": "text=live"})
            assert ws.receive_json()["type"] == "ready"
            assert in_process.post("/secret", json={"text": "other"}).status_code == 201
            assert in_process.post("/secret", json={"text": "live"}).status_code == 201
            event = ws.receive_json()
            assert (event["type"], event["sub"], event["doc"]["text"]) == ("created", "mine", "live")
            ws.send_text("not json")
            assert ws.receive_json()["status"] == 400
            ws.send_text("x" * 70_000)  # over the feed's message limit
            with pytest.raises(WebSocketClosed) as closed:
                while True:
                    ws.receive_json()
            assert closed.value.code == 1009 and ws.close_code == 1009


def test_async_client_websocket() -> None:
    async def main() -> None:
        async with AsyncTestClient(auth_app(cors=None)) as in_process, \
                in_process.websocket_connect("/order/_changes") as ws:
            await ws.send_json({"type": "subscribe", "id": "o"})
            assert (await ws.receive_json())["type"] == "ready"
            created = await in_process.post("/order", json={"lines": [{"sku": "a"}]})
            event = await ws.receive_json()
            assert event["type"] == "created" and event["doc"]["id"] == created.json()["id"]

    asyncio.run(main())
