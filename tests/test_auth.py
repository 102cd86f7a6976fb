"""Auth end to end: sign-in/out/me, per-operation rules, the current user in receivers, signals.

Every test talks HTTP to a real app, whose Google provider asks a real fake provider
served on 127.0.0.1 (bzzlite.auth.testing).
"""

from __future__ import annotations

import base64
import json
import time
from http.cookies import SimpleCookie
from typing import Any

import pytest
import tornado.web
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, HTTPError, Registry
from bzzlite.auth import Auth, AuthProvider, GoogleProvider, TokenSigner, authenticated
from bzzlite.auth.testing import fake_provider
from bzzlite.handlers.base import BaseHandler
from bzzlite.testing import record, serve

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ANN = {"sub": "ann-1", "email": "ann@example.com", "name": "Ann"}
BOB = {"sub": "bob-2", "email": "bob@example.com", "name": "Bob"}


@pytest.fixture
def fake():
    with fake_provider() as provider:
        provider.tokens["ann-token"] = ANN
        provider.tokens["bob-token"] = BOB
        yield provider


def note_registry(**resource_options: Any) -> Registry:
    registry = Registry()

    @registry.resource(**resource_options)
    class Note(BaseModel):
        text: str
        owner: str | None = None

    return registry


def make_app(fake, sqlite_url: str, registry: Registry | None = None, **auth_options: Any) -> App:
    google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
    return App(registry or note_registry(), db=sqlite_url, auth=Auth(SECRET, [google], **auth_options))


def set_cookies(response) -> dict[str, Any]:
    """The response's Set-Cookie headers, parsed: name -> Morsel."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return dict(jar)


def sign_in(client, token: str = "ann-token", provider: str = "google") -> str:
    response = client.post("/auth/signin/", json={"access_token": token, "provider": provider})
    assert response.code == 200, response.text
    return set_cookies(response)["AUTH_TOKEN"].value


def browser(cookie: str, client) -> dict[str, str]:
    """The headers a same-origin page's fetch() sends with the cookie."""
    return {"Cookie": f"AUTH_TOKEN={cookie}", "X-Requested-With": "fetch",
            "Origin": client.base_url, "Sec-Fetch-Site": "same-origin"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- sign-in, me, sign-out ------------------------------------------------------------------


def test_sign_in_sets_an_httponly_lax_cookie_and_me_answers_with_the_user(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        response = client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "google"})
        assert response.code == 200
        assert response.json() == {"authenticated": True, "userData": {
            "id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google"}}
        assert response.headers["Cache-Control"] == "no-store"
        cookie = set_cookies(response)["AUTH_TOKEN"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        assert cookie["max-age"] == "1200"
        assert not cookie["secure"]  # served over plain HTTP and secure=None (auto)
        assert cookie["domain"] == ""  # no Domain: the cookie goes back to this host only

        me = client.get("/auth/me/", headers={"Cookie": f"AUTH_TOKEN={cookie.value}"})
        assert me.code == 200
        assert me.json() == {"authenticated": True, "userData": {
            "id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google"}}
        assert client.get("/auth/me").json() == {"authenticated": False}
        assert client.get("/auth/me/", headers=bearer(cookie.value)).json()["userData"]["id"] == "ann-1"
        renewed = client.get("/note", headers={"Cookie": f"AUTH_TOKEN={cookie.value}"})
        assert "AUTH_TOKEN" in set_cookies(renewed)  # a renewed cookie: no shared cache may keep the answer
        assert renewed.headers["Cache-Control"] == "private"


def test_the_provider_gets_the_token_in_the_authorization_header_never_in_the_url(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        sign_in(client)
    [request] = fake.requests
    assert request.headers["Authorization"] == "Bearer ann-token"
    assert request.path == "/userinfo"
    assert "ann-token" not in request.path


def test_token_claims_are_only_who_and_when(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
    payload = claims(token)
    assert set(payload) == {"sub", "name", "email", "provider", "iat", "exp", "sid", "sat"}
    assert payload["sub"] == "ann-1" and payload["provider"] == "google"
    assert payload["exp"] - payload["iat"] == 1200
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {"alg": "HS256", "typ": "JWT"}


def test_cookie_name_lifetime_secure_and_prefix_are_configurable(fake, sqlite_url):
    app = make_app(fake, sqlite_url, cookie_name="SESSION", lifetime=60, secure=True, prefix="/api/auth")
    with serve(app) as client:
        assert client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "google"}).code == 404
        response = client.post("/api/auth/signin", json={"access_token": "ann-token", "provider": "google"})
        assert response.code == 200
        cookie = set_cookies(response)["SESSION"]
        assert cookie["secure"] is True and cookie["max-age"] == "60"
        assert claims(cookie.value)["exp"] - claims(cookie.value)["iat"] == 60
        assert client.get("/api/auth/me", headers={"Cookie": f"SESSION={cookie.value}"}).json()["authenticated"]


def test_sign_in_refuses_a_bad_token_or_provider_with_401_and_fires_unauthorized_user(fake, sqlite_url):
    app = make_app(fake, sqlite_url)
    with serve(app) as client, record(app.registry.signals.unauthorized_user) as refused:
        bad_token = client.post("/auth/signin/", json={"access_token": "stolen?", "provider": "google"})
        bad_provider = client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "myspace"})
        not_a_token = client.post("/auth/signin/", json={"access_token": "two\r\nlines", "provider": "google"})
    for response in (bad_token, bad_provider, not_a_token):
        assert response.code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == 401
        assert set_cookies(response) == {}
    assert [call["sender"] for call in refused] == ["google", "myspace", "google"]
    assert all(isinstance(call["handler"], tornado.web.RequestHandler) for call in refused)
    assert len(fake.requests) == 1  # neither the unknown provider nor the malformed token reached it


def test_sign_in_body_must_be_a_json_object_with_both_strings(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        missing = client.post("/auth/signin/", json={"provider": "google"})
        assert missing.code == 422
        assert missing.json()["errors"] == [{"loc": ["access_token"], "msg": "Field required", "type": "missing"}]
        assert client.post("/auth/signin/", json={"access_token": 12, "provider": "google"}).code == 422
        assert client.post("/auth/signin/", body=b"{nope", headers={"Content-Type": "application/json"}).code == 400
        assert client.post("/auth/signin/", json=["ann-token"]).code == 400
        form = client.post("/auth/signin/", data={"access_token": "ann-token", "provider": "google"})
        assert form.code == 415
        assert client.get("/auth/signin/").code == 405


def test_sign_out_answers_logged_out_and_clears_the_cookie(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        response = client.post("/auth/signout/", headers=browser(token, client))
        assert response.code == 200
        assert response.json() == {"loggedOut": True}
        cleared = set_cookies(response)["AUTH_TOKEN"]
        assert cleared.value == "" and cleared["expires"]
        assert cleared["httponly"] is True and cleared["path"] == "/"
        assert client.post("/auth/signout/").json() == {"loggedOut": True}  # signed out already: still fine


# -- who may do what --------------------------------------------------------------------


def test_every_operation_needs_a_user_by_default(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        created = client.post("/note", json={"text": "mine"}, headers=bearer(token))
        assert created.code == 201
        item = f"/note/{created.json()['id']}"
        for response in (client.get("/note"), client.get(item), client.post("/note", json={"text": "x"}),
                         client.put(item, json={"text": "y"}), client.patch(item, json={"text": "z"}),
                         client.delete(item)):
            assert response.code == 401
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="bzzlite"'
        assert client.get(item, headers=bearer(token)).json()["text"] == "mine"


def test_unauthenticated_comes_before_body_and_id_checks(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        assert client.get("/note/not-an-id").code == 401
        assert client.put("/note/0123456789abcdef01234567", json={"unknown": 1}).code == 401
        assert client.post("/note", json={"text": 1, "unknown": True}).code == 401


def test_app_level_requirements_per_operation(fake, sqlite_url):
    app = make_app(fake, sqlite_url, require={"list": False, "get": False})
    with serve(app) as client:
        token = sign_in(client)
        assert client.post("/note", json={"text": "x"}).code == 401
        created = client.post("/note", json={"text": "x"}, headers=bearer(token))
        assert client.get("/note").json()["total"] == 1
        assert client.get(f"/note/{created.json()['id']}").code == 200
        assert client.delete(f"/note/{created.json()['id']}").code == 401


def test_resource_level_override_public_or_per_operation(fake, sqlite_url):
    registry = Registry()

    @registry.resource(auth=False)
    class Public(BaseModel):
        text: str

    @registry.resource(auth={"create": True})  # applied over the app's rules
    class Post(BaseModel):
        text: str

    @registry.resource(auth=True)
    class Secret(BaseModel):
        text: str

    app = make_app(fake, sqlite_url, registry, require=False)
    with serve(app) as client:
        assert client.post("/public", json={"text": "anyone"}).code == 201
        assert client.get("/public").json()["total"] == 1
        assert client.get("/post").code == 200
        assert client.post("/post", json={"text": "x"}).code == 401  # app says public, Post says not
        assert client.get("/secret").code == 401
        assert client.get("/secret", headers=bearer(sign_in(client))).code == 200


def test_public_operations_still_see_a_signed_in_user(fake, sqlite_url):
    registry = note_registry(auth=False)
    seen: list[Any] = []

    @registry.on("pre_create_instance")
    def remember(sender, arguments, handler):
        seen.append(handler.current_user)

    with serve(make_app(fake, sqlite_url, registry)) as client:
        token = sign_in(client)
        client.post("/note", json={"text": "anonymous"})
        client.post("/note", json={"text": "ann"}, headers=browser(token, client))
        client.post("/note", json={"text": "bad"}, headers=bearer("not.a.token"))  # public: anonymous
    assert seen == [None, {"id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google"}, None]


def test_bad_requirements_are_configuration_errors(fake, sqlite_url):
    google = GoogleProvider(userinfo_url=fake.url())
    with pytest.raises(ConfigurationError, match="unknown operation"):
        Auth(SECRET, [google], require={"read": False})
    with pytest.raises(ConfigurationError, match="give True"):
        Auth(SECRET, [google], require={"get": "no"})
    with pytest.raises(ConfigurationError, match="unknown operation"):
        App(note_registry(auth={"lsit": False}), db=sqlite_url, auth=Auth(SECRET, [google]))
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        Auth("short", [google])
    with pytest.raises(ConfigurationError, match="at least one provider"):
        Auth(SECRET, [])
    with pytest.raises(ConfigurationError, match="two providers"):
        Auth(SECRET, [google, GoogleProvider()])
    assert SECRET not in repr(Auth(SECRET, [google]))


def test_the_secret_can_come_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("BZZLITE_AUTH_SECRET", SECRET)
    assert Auth(providers=[GoogleProvider(userinfo_url=fake.url())]).signer is not None
    monkeypatch.delenv("BZZLITE_AUTH_SECRET")
    with pytest.raises(ConfigurationError, match="BZZLITE_AUTH_SECRET"):
        Auth(providers=[GoogleProvider()])


# -- renewal ----------------------------------------------------------------------------


def test_each_authenticated_request_renews_the_cookie(fake, sqlite_url):
    old, _ = TokenSigner(SECRET, 1200).issue(
        {"id": "ann-1", "email": None, "name": "Ann", "provider": "google"}, now=time.time() - 600)
    with serve(make_app(fake, sqlite_url)) as client:
        response = client.get("/note", headers={"Cookie": f"AUTH_TOKEN={old}"})
        assert response.code == 200
        renewed = set_cookies(response)["AUTH_TOKEN"]
        assert renewed["httponly"] is True and renewed["max-age"] == "1200"
        assert claims(renewed.value)["exp"] >= claims(old)["exp"] + 599
        assert claims(renewed.value)["sid"] == claims(old)["sid"]  # the same session
        me = client.get("/auth/me/", headers={"Cookie": f"AUTH_TOKEN={old}"})
        assert "AUTH_TOKEN" in set_cookies(me)
        # a Bearer client keeps its token: no cookie is pushed on it
        assert set_cookies(client.get("/note", headers=bearer(old))) == {}


def test_max_session_age_ends_a_session_however_often_it_is_renewed(fake, sqlite_url):
    signer = TokenSigner(SECRET, 1200)
    user = {"id": "ann-1", "email": None, "name": "Ann", "provider": "google"}
    long_ago = time.time() - 7200
    renewed, _ = signer.issue(user, session_id="s1", started_at=long_ago)  # fresh token, old session
    with serve(make_app(fake, sqlite_url, max_session_age=3600)) as client:
        assert client.get("/note", headers=bearer(renewed)).code == 401
        assert client.get("/note", headers=bearer(sign_in(client))).code == 200


# -- the current user in receivers, signals ---------------------------------------------


def test_receivers_scope_lists_and_forbid_others_documents(fake, store_url):
    registry = note_registry()

    @registry.on("pre_create_instance")
    def stamp_owner(sender, arguments, handler):
        arguments["data"]["owner"] = handler.current_user["id"]

    @registry.on("pre_get_list")
    def only_mine(sender, arguments, handler):
        arguments["filters"]["owner"] = handler.current_user["id"]

    @registry.on("pre_delete_instance")
    async def only_owner_deletes(sender, arguments, handler):
        store = await handler.runtime.ready_store()
        record_ = await store.get(handler.spec, arguments["id"])
        if record_.doc.get("owner") != handler.current_user["id"]:
            raise HTTPError(403, "Only the owner may delete this note.")

    with serve(make_app(fake, store_url, registry)) as client:
        ann, bob = sign_in(client, "ann-token"), sign_in(client, "bob-token")
        anns = client.post("/note", json={"text": "ann's"}, headers=bearer(ann)).json()
        client.post("/note", json={"text": "bob's"}, headers=bearer(bob))
        listing = client.get("/note", headers=bearer(ann)).json()
        assert [n["text"] for n in listing["items"]] == ["ann's"] and listing["total"] == 1
        asking_for_anns = client.get("/note", params={"owner": "ann-1"}, headers=bearer(bob)).json()
        assert [n["text"] for n in asking_for_anns["items"]] == ["bob's"]  # the receiver's filter wins
        forbidden = client.delete(f"/note/{anns['id']}", headers=bearer(bob))
        assert forbidden.code == 403 and forbidden.json()["detail"] == "Only the owner may delete this note."
        assert client.delete(f"/note/{anns['id']}", headers=bearer(ann)).code == 204


def test_authorized_user_receivers_add_to_the_user_data_and_may_refuse(fake, sqlite_url):
    registry = note_registry()

    @registry.on("authorized_user", sender="google")
    async def add_role(sender, user_data, handler):
        user_data["roles"] = ["editor"]

    @registry.on("authorized_user")
    def only_example_com(sender, user_data, handler):
        if not (user_data["email"] or "").endswith("@example.com"):
            raise HTTPError(403, "This app is for example.com accounts.")

    fake.tokens["eve-token"] = {"sub": "eve", "email": "eve@evil.test", "name": "Eve"}
    app = make_app(fake, sqlite_url, registry)
    with serve(app) as client, record(registry.signals.authorized_user) as calls:
        response = client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "google"})
        assert response.json()["userData"]["roles"] == ["editor"]
        refused = client.post("/auth/signin/", json={"access_token": "eve-token", "provider": "google"})
        assert refused.code == 403 and set_cookies(refused) == {}
    # the recorder, connected last, did not hear the refused sign-in: a raising receiver stops the send
    assert [c["sender"] for c in calls] == ["google"]
    assert calls[0]["user_data"]["id"] == "ann-1"
    # the token stays minimal: who the user is, and the roles permission rules read (bzzlite.permissions)
    token = claims(set_cookies(response)["AUTH_TOKEN"].value)
    assert set(token) == {"sub", "name", "email", "provider", "roles", "sid", "iat", "exp", "sat"}
    assert token["roles"] == ["editor"]


def test_an_authorized_user_receiver_can_map_to_a_local_user_id(fake, sqlite_url):
    registry = note_registry()

    @registry.on("authorized_user")
    def local_id(sender, user_data, handler):
        user_data["id"] = f"local-{user_data['id']}"

    with serve(make_app(fake, sqlite_url, registry)) as client:
        token = sign_in(client)
        assert client.get("/auth/me/", headers=bearer(token)).json()["userData"]["id"] == "local-ann-1"


def test_pre_get_user_details_additions_appear_in_me(fake, sqlite_url):
    registry = note_registry()

    @registry.on("pre_get_user_details", sender="google")
    def add_username(sender, user_data, handler):
        user_data["username"] = user_data["email"].split("@")[0]

    @registry.on("pre_get_user_details", sender="github")
    def never(sender, user_data, handler):  # another provider's receiver is not called
        user_data["username"] = "wrong"

    app = make_app(fake, sqlite_url, registry)
    with serve(app) as client, record(registry.signals.pre_get_user_details) as calls:
        token = sign_in(client)
        me = client.get("/auth/me/", headers=bearer(token)).json()
        client.get("/auth/me/")  # not signed in: no signal
    assert me["userData"] == {"id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google",
                              "username": "ann"}
    assert [c["sender"] for c in calls] == ["google"]


# -- @authenticated on the user's own handlers ------------------------------------------


class Plain(tornado.web.RequestHandler):
    @authenticated
    def get(self):
        self.write({"hello": self.current_user["name"]})

    @authenticated
    async def post(self):
        self.write({"posted_by": self.current_user["id"]})


class Based(BaseHandler):
    ALLOWED = ("GET",)

    @authenticated
    async def get(self):
        self.write_json({"hello": self.current_user["name"]})


def test_authenticated_protects_the_users_own_handlers(fake, sqlite_url):
    app = make_app(fake, sqlite_url)
    app.add_handlers(r".*", [(r"/plain", Plain), (r"/based", Based, {"runtime": app.runtime})])
    with serve(app) as client:
        token = sign_in(client)
        for path in ("/plain", "/based"):
            refused = client.get(path)
            assert refused.code == 401
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert refused.json()["status"] == 401
            assert client.get(path, headers=bearer(token)).json() == {"hello": "Ann"}
        assert client.post("/plain", body=b"", headers=bearer(token)).json() == {"posted_by": "ann-1"}
        forged = {"Cookie": f"AUTH_TOKEN={token}", "Origin": "https://evil.test"}
        assert client.post("/plain", body=b"", headers=forged).code == 403
        assert client.post("/plain", body=b"", headers=browser(token, client)).code == 200


def test_authenticated_without_auth_configured_is_a_clear_error(sqlite_url):
    app = App(note_registry(), db=sqlite_url)
    app.add_handlers(r".*", [(r"/plain", Plain)])
    with serve(app) as client:
        assert client.get("/plain").code == 500


class FixedProvider(AuthProvider):
    name = "fixed"

    async def authenticate(self, access_token):
        return {"id": 7, "name": "Seven", "team": "blue"} if access_token == "let-me-in" else None


def test_a_custom_provider_signs_users_in(sqlite_url):
    app = App(note_registry(), db=sqlite_url, auth=Auth(SECRET, [FixedProvider()]))
    with serve(app) as client:
        response = client.post("/auth/signin/", json={"access_token": "let-me-in", "provider": "fixed"})
        assert response.json()["userData"] == {"id": "7", "name": "Seven", "email": None, "provider": "fixed",
                                               "team": "blue"}
        token = set_cookies(response)["AUTH_TOKEN"].value
        assert "team" not in claims(token)
        assert client.get("/note", headers=browser(token, client)).code == 200
        assert client.post("/auth/signin/", json={"access_token": "nope", "provider": "fixed"}).code == 401


def test_unauthenticated_comes_before_malformed_bodies(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        malformed = {"body": b"{nope", "headers": {"Content-Type": "application/json"}}
        assert client.post("/note", **malformed).code == 401
        assert client.put("/note/0123456789abcdef01234567", **malformed).code == 401
        assert client.post("/note", body=b"x", headers={"Content-Type": "text/csv"}).code == 401
        assert client.post("/note", json=[]).code == 401
