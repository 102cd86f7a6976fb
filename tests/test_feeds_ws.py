"""Change feeds over a WebSocket: several subscriptions on one socket, subscribe/unsubscribe."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os

import pytest
import tornado.httpclient
import tornado.websocket
from pydantic import BaseModel

from bzzlite import App, HTTPError, Registry
from bzzlite.testing import serve


class Todo(BaseModel):
    title: str
    done: bool = False
    owner: str | None = None


@pytest.fixture
def store_url(store_url):
    if store_url.startswith("mongodb") and importlib.util.find_spec("bzzlite.feeds.mongo") is None:
        pytest.skip("the MongoDB journal is not built yet")
    return store_url


def app_for(url: str, registry: Registry | None = None, **options) -> App:
    if registry is None:
        registry = Registry()
        registry.resource(Todo)
    return App(registry, db=url, **options)


class Socket:
    """A WebSocket client with blocking-style helpers, used inside one asyncio.run."""

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    async def open(cls, client, path="/todo/_changes", headers=None):
        request = tornado.httpclient.HTTPRequest(f"ws://{client.host}:{client.port}{path}", headers=headers or {})
        return cls(await tornado.websocket.websocket_connect(request))

    async def send(self, **message):
        await self.conn.write_message(json.dumps(message))

    async def recv(self, skip_pings=True):
        while True:
            text = await asyncio.wait_for(self.conn.read_message(), 10)
            if text is None:
                return None
            message = json.loads(text)
            if not (skip_pings and message.get("type") == "ping"):
                return message

    async def subscribe(self, sub_id, query="", **extra):
        await self.send(type="subscribe", id=sub_id, query=query, **extra)
        while (message := await self.recv())["type"] != "ready":
            pass
        return message


async def post(client, path, body):
    return await asyncio.to_thread(client.post, path, json=body)


def test_two_subscriptions_on_one_socket(store_url):
    async def main(client):
        ws = await Socket.open(client)
        ready = await ws.subscribe("open", "done=false&fields=title")
        assert ready["sub"] == "open" and isinstance(ready["event_id"], int)
        await ws.subscribe("all")
        doc = (await post(client, "/todo", {"title": "a"})).json()
        first, second = await ws.recv(), await ws.recv()
        assert {first["sub"], second["sub"]} == {"open", "all"}
        by_sub = {m["sub"]: m for m in (first, second)}
        assert by_sub["open"]["type"] == "created"
        assert by_sub["open"]["doc"] == {"id": doc["id"], "title": "a"}
        assert by_sub["all"]["doc"] == doc
        assert by_sub["all"]["event_id"] == by_sub["open"]["event_id"] > ready["event_id"]

        await ws.send(type="unsubscribe", id="open")
        assert await ws.recv() == {"type": "unsubscribed", "sub": "open"}
        await asyncio.to_thread(client.patch, f"/todo/{doc['id']}", json={"done": True})
        message = await ws.recv()
        assert (message["sub"], message["type"]) == ("all", "updated")
        assert message["updated_fields"] == {"done": {"from": False, "to": True}}
        ws.conn.close()

    with serve(app_for(store_url)) as client:
        asyncio.run(main(client))


def test_subscribe_with_since_replays(store_url):
    async def main(client):
        ws = await Socket.open(client)
        await ws.subscribe("start")  # on MongoDB, the journal follows the database from now on
        await ws.send(type="unsubscribe", id="start")
        assert (await ws.recv())["type"] == "unsubscribed"
        docs = [(await post(client, "/todo", {"title": str(i)})).json() for i in range(3)]
        await ws.send(type="subscribe", id="s", query="title__in=0,2", since=0)
        replayed = []
        while len(replayed) < 2:  # on MongoDB the last ones may follow "ready" (journal lag)
            message = await ws.recv()
            if message["type"] == "ready":
                assert isinstance(message["event_id"], int)
            else:
                replayed.append(message)
        assert [m["doc"]["id"] for m in replayed] == [docs[0]["id"], docs[2]["id"]]
        ws.conn.close()

    with serve(app_for(store_url)) as client:
        asyncio.run(main(client))


def test_bad_messages_get_errors_and_the_socket_stays_open(store_url):
    async def main(client):
        ws = await Socket.open(client)
        await ws.conn.write_message("not json")
        assert (await ws.recv())["status"] == 400
        await ws.send(type="subscribe", query="done=true")  # no id
        assert (await ws.recv())["status"] == 400
        await ws.send(type="subscribe", id="x", query="nope=1")
        error = await ws.recv()
        assert error["type"] == "error" and error["sub"] == "x" and error["status"] == 400
        assert error["errors"][0]["loc"] == ["query", "nope"]
        await ws.send(type="subscribe", id="x", query="", since="yesterday")
        assert (await ws.recv())["errors"][0]["loc"] == ["query", "since"]
        await ws.send(type="dance", id="x")
        assert (await ws.recv())["status"] == 400
        await ws.subscribe("x")
        await ws.send(type="subscribe", id="x")
        assert (await ws.recv())["status"] == 409
        doc = (await post(client, "/todo", {"title": "still here"})).json()
        assert (await ws.recv())["doc"] == doc
        ws.conn.close()

    with serve(app_for(store_url)) as client:
        asyncio.run(main(client))


def test_pre_get_list_scopes_each_subscription(store_url):
    registry = Registry()
    registry.resource(Todo)

    @registry.on("pre_get_list", sender=Todo)
    def only_mine(sender, arguments, handler):
        user = handler.request.headers.get("X-User")
        if user is None:
            raise HTTPError(403, "Who are you?")
        arguments["filters"]["owner"] = user

    async def main(client):
        anonymous = await Socket.open(client)
        await anonymous.send(type="subscribe", id="s")
        refused = await anonymous.recv()
        assert (refused["type"], refused["sub"], refused["status"]) == ("error", "s", 403)
        ann = await Socket.open(client, headers={"X-User": "ann"})
        await ann.subscribe("s", "owner=bob")
        await post(client, "/todo", {"title": "bob's", "owner": "bob"})
        mine = (await post(client, "/todo", {"title": "ann's", "owner": "ann"})).json()
        assert (await ann.recv())["doc"] == mine
        anonymous.conn.close()
        ann.conn.close()

    with serve(app_for(store_url, registry)) as client:
        asyncio.run(main(client))


def test_heartbeats_and_shutdown_close(store_url):
    app = app_for(store_url, feed_heartbeat=0.05)

    async def main(client):
        ws = await Socket.open(client)
        await ws.subscribe("s")
        ping = await ws.recv(skip_pings=False)
        assert ping["type"] == "ping" and isinstance(ping["event_id"], int)
        return ws

    with serve(app) as client:
        loop = asyncio.new_event_loop()
        ws = loop.run_until_complete(main(client))
    # the server stopped: the socket was closed with "going away" (uvicorn closes the sockets
    # itself before the app's shutdown, with "service restart": either tells clients to reconnect)
    assert loop.run_until_complete(ws.recv()) is None
    assert ws.conn.close_code == (1012 if os.environ.get("BZZLITE_TEST_HTTP") == "asgi" else 1001)
    loop.close()


class RawSocket:
    """A minimal blocking WebSocket client on a raw socket whose receive buffer is small,
    so that not reading really stops the server's writes."""

    def __init__(self, client, path="/todo/_changes"):
        import base64
        import os
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((client.host, client.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.close_code = None

    def send(self, **message):
        import os
        import struct

        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def _need(self, n):
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data

    def recv(self):
        import struct

        self._need(2)
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            self._need(4)
            length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            self._need(10)
            length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        self._need(offset + length)
        payload, self.buffer = self.buffer[offset:offset + length], self.buffer[offset + length:]
        if opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0]
            return None
        return json.loads(payload)


def test_a_slow_socket_is_disconnected(sqlite_url):
    app = app_for(sqlite_url, feed_buffer=16 * 1024)
    with serve(app) as client:
        ws = RawSocket(client)
        ws.send(type="subscribe", id="s", query="")
        while ws.recv()["type"] != "ready":
            pass
        blob = "x" * 32 * 1024  # now stop reading
        posted = 0
        while app.runtime.feeds.overflows == 0 and posted < 3000:
            assert client.post("/todo", json={"title": str(posted) + blob}).code == 201
            posted += 1
        assert app.runtime.feeds.overflows == 1
        messages = []
        while (message := ws.recv()) is not None:
            messages.append(message)
        assert messages[-1]["type"] == "overflow"
        assert messages[-1]["event_ids"] == {"s": messages[-2]["event_id"]}
        assert ws.close_code == 4008
        assert [m["doc"]["title"][:-len(blob)] for m in messages[:-1]] == [str(i) for i in range(len(messages) - 1)]


def test_auth_applies_at_the_upgrade(sqlite_url):
    from bzzlite.auth import Auth, AuthProvider

    class Fake(AuthProvider):
        name = "fake"

        async def authenticate(self, access_token):
            return {"id": "u1"} if access_token == "good" else None

    registry = Registry()
    registry.resource(Todo)
    app = App(registry, db=sqlite_url, auth=Auth(secret="s" * 32, providers=[Fake()]))

    async def main(client):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await Socket.open(client)
        assert refused.value.code == 401
        assert refused.value.response.headers["Content-Type"] == "application/problem+json"

    with serve(app) as client:
        asyncio.run(main(client))


def test_a_signed_out_user_loses_the_socket(sqlite_url):
    from bzzlite.auth import Auth, AuthProvider

    class Fake(AuthProvider):
        name = "fake"

        async def authenticate(self, access_token):
            return {"id": "u1"} if access_token == "good" else None

    registry = Registry()
    registry.resource(Todo)
    app = App(registry, db=sqlite_url, auth=Auth(secret="s" * 32, providers=[Fake()]), feed_heartbeat=0.05)

    async def main(client):
        signin = await asyncio.to_thread(client.post, "/auth/signin/", json={"access_token": "good", "provider": "fake"})
        token = signin.headers["Set-Cookie"].split("=", 1)[1].split(";", 1)[0]
        bearer = {"Authorization": f"Bearer {token}"}
        ws = await Socket.open(client, headers=bearer)
        await ws.subscribe("s")
        assert (await asyncio.to_thread(client.post, "/auth/signout/", headers=bearer)).code == 200
        while (message := await ws.recv()) is not None:
            last = message
        assert last["type"] == "unauthorized"
        assert ws.conn.close_code == 4001

    with serve(app) as client:
        asyncio.run(main(client))
