"""CORS (bzzlite/cors.py): preflights for every URL, headers on every answer, errors included."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, Registry
from bzzlite.auth import Auth, AuthProvider
from bzzlite.cors import CORS
from bzzlite.testing import serve

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
SHOP = "http://shop.example"
EVIL = "http://evil.example"


class TokenProvider(AuthProvider):
    """Signs in whoever presents ``good``."""

    name = "token"

    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        return {"id": "ann", "name": "Ann"} if access_token == "good" else None


def make_app(cors: Any = (SHOP,), auth: bool = False, **options: Any) -> App:
    registry = Registry()

    class Line(BaseModel):
        sku: str

    @registry.resource(auth=False)
    class Order(BaseModel):
        lines: list[Line] = []

    @registry.resource
    class Secret(BaseModel):
        text: str

    registry.mock([("GET", "/custom/hello", {"body": "hi"})])
    return App(registry, db="sqlite:///:memory:", cors=cors,
               auth=Auth(SECRET, [TokenProvider()]) if auth else None, **options)


def preflight(client: Any, path: str, origin: str = SHOP, method: str = "POST", headers: str = "content-type"):
    return client.request("OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                    "Access-Control-Request-Headers": headers})


def test_preflight_is_answered_on_every_kind_of_route() -> None:
    app = make_app(cors=CORS(origins=[SHOP], credentials=True, max_age=120), auth=True)
    with serve(app) as client:
        order = client.post("/order", json={"lines": [{"sku": "a"}]}).json()
        paths = ["/order", f"/order/{order['id']}", f"/order/{order['id']}/lines", f"/order/{order['id']}/lines/0",
                 "/secret", "/auth/signin/", "/auth/me/", "/order/_changes", "/openapi.json", "/docs",
                 "/custom/hello", "/_health", "/no/such/route"]
        for path in paths:
            reply = preflight(client, path, method="PATCH", headers="content-type, x-requested-with")
            assert reply.code == 204, path
            assert reply.headers["Access-Control-Allow-Origin"] == SHOP
            assert reply.headers["Access-Control-Allow-Credentials"] == "true"
            assert reply.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
            assert reply.headers["Access-Control-Allow-Headers"] == "content-type, x-requested-with"
            assert reply.headers["Access-Control-Max-Age"] == "120"
            assert reply.headers["Vary"] == "Origin"
            assert reply.body == b""


def test_an_origin_not_allowed_gets_no_cors_headers() -> None:
    with serve(make_app()) as client:
        reply = preflight(client, "/order", origin=EVIL)
        assert reply.code == 403
        assert reply.headers["Content-Type"] == "application/problem+json"
        assert "evil.example" in reply.json()["detail"]
        created = client.post("/order", json={}, headers={"Origin": EVIL})
        assert created.code == 201  # CORS is the browser's rule: the page just cannot read this
        for response in (reply, created, client.get("/order", headers={"Origin": EVIL})):
            assert not [h for h in response.headers if h.lower().startswith("access-control-")]
            assert response.headers["Vary"] == "Origin"


def test_answers_and_errors_carry_the_headers() -> None:
    with serve(make_app()) as client:
        created = client.post("/order", json={}, headers={"Origin": SHOP})
        assert created.code == 201
        assert created.headers["Access-Control-Allow-Origin"] == SHOP
        assert "Access-Control-Allow-Credentials" not in created.headers
        exposed = created.headers["Access-Control-Expose-Headers"].split(", ")
        assert {"ETag", "Location", "X-Created-Id"} <= set(exposed)
        for method, path in [("GET", "/order/000000000000000000000000"), ("PUT", "/order"), ("GET", "/nowhere"),
                             ("POST", "/order")]:
            reply = client.request(method, path, body=b"{", headers={"Origin": SHOP,
                                                                     "Content-Type": "application/json"})
            assert reply.code in (400, 404, 405), (method, path)
            assert reply.headers["Access-Control-Allow-Origin"] == SHOP
            assert reply.headers.get_all("Vary") == ["Origin"]


def test_origins_as_a_pattern_or_any() -> None:
    with serve(make_app(cors=r"https://[a-z]+\.example\.com")) as client:
        assert preflight(client, "/order", origin="https://shop.example.com").code == 204
        assert preflight(client, "/order", origin="https://shop.example.com.evil.org").code == 403
        assert preflight(client, "/order", origin="http://shop.example.com").code == 403
    with serve(make_app(cors=re.compile(r"http://127\.0\.0\.1:\d+"))) as client:
        assert preflight(client, "/order", origin="http://127.0.0.1:3000").code == 204
    with serve(make_app(cors="*")) as client:
        reply = client.get("/order", headers={"Origin": EVIL})
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in reply.headers
        assert preflight(client, "/order", origin=EVIL).headers["Access-Control-Allow-Origin"] == "*"


def test_listed_request_headers_and_methods() -> None:
    cors = {"origins": [SHOP], "methods": ["GET"], "headers": ["X-Token"], "expose_headers": []}
    with serve(make_app(cors=cors)) as client:
        reply = preflight(client, "/order", method="DELETE", headers="x-other")
        assert reply.headers["Access-Control-Allow-Methods"] == "GET"  # the browser refuses DELETE
        assert reply.headers["Access-Control-Allow-Headers"] == "X-Token"
        assert "Access-Control-Expose-Headers" not in client.get("/order", headers={"Origin": SHOP}).headers


def test_without_cors_nothing_changes() -> None:
    with serve(make_app(cors=None)) as client:
        reply = preflight(client, "/order")
        assert reply.code == 405
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")]
        assert "Vary" not in client.get("/order", headers={"Origin": SHOP}).headers


@pytest.mark.parametrize("cors, message", [
    (CORS.__new__, "App(cors=...) takes a CORS"),
    ({"origins": "*", "credentials": True}, "needs the origins listed or a pattern"),
    (["shop.example"], "must look like https://app.example.com"),
    (["https://shop.example/path"], "must look like https://app.example.com"),
    ("https://(", "is not a regular expression"),
    ({"origins": [SHOP], "max_age": -1}, "max_age"),
])
def test_configuration_mistakes(cors: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        make_app(cors=cors)


def test_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BZZLITE_CORS", f"{SHOP}, https://admin.example")
    app = make_app(cors=None)
    assert app.bzz_settings.cors.allows("https://admin.example")
    assert not app.bzz_settings.cors.allows(EVIL)


def test_credentialed_writes_from_an_allowed_origin_pass_the_forgery_check() -> None:
    app = make_app(cors=CORS(origins=[SHOP], credentials=True), auth=True)
    with serve(app) as client:
        signed = client.post("/auth/signin/", json={"provider": "token", "access_token": "good"},
                             headers={"Origin": SHOP, "X-Requested-With": "fetch"})
        assert signed.code == 200
        cookie = signed.headers["Set-Cookie"].split(";")[0]
        headers = {"Cookie": cookie, "X-Requested-With": "fetch"}
        assert client.post("/secret", json={"text": "s"}, headers={**headers, "Origin": SHOP}).code == 201
        refused = client.post("/secret", json={"text": "s"}, headers={**headers, "Origin": EVIL})
        assert refused.code == 403
    app = make_app(cors=CORS(origins=[SHOP]), auth=True)  # without credentials the origin is not trusted
    with serve(app) as client:
        signed = client.post("/auth/signin/", json={"provider": "token", "access_token": "good"})
        headers = {"Cookie": signed.headers["Set-Cookie"].split(";")[0], "X-Requested-With": "fetch", "Origin": SHOP}
        assert client.post("/secret", json={"text": "s"}, headers=headers).code == 403


def test_websocket_feed_accepts_the_allowed_origins_only() -> None:
    with serve(make_app()) as client:
        async def connect(origin: str) -> int:
            url = f"ws://127.0.0.1:{client.port}/order/_changes"
            request = tornado.httpclient.HTTPRequest(url, headers={"Origin": origin})
            try:
                socket = await tornado.websocket.websocket_connect(request)
            except tornado.httpclient.HTTPClientError as exc:
                return exc.code
            socket.close()
            return 101

        assert asyncio.run(connect(SHOP)) == 101
        assert asyncio.run(connect(EVIL)) == 403
        assert asyncio.run(connect(f"http://127.0.0.1:{client.port}")) == 101  # same origin, as before


def test_feed_refusals_carry_the_headers() -> None:
    with serve(make_app()) as client:
        reply = client.get("/order/_changes", headers={"Origin": SHOP, "X-Request-ID": "ws-1"})  # not an upgrade
        assert reply.code == 400
        assert reply.headers["X-Request-ID"] == "ws-1"
        assert reply.headers["Access-Control-Allow-Origin"] == SHOP
