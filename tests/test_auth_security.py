"""Auth against an attacker: forged and expired tokens, cross-site requests, sign-out, logs."""

from __future__ import annotations

import base64
import json
import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bzzlite import App
from bzzlite.auth import (
    Auth,
    AuthProvider,
    GoogleProvider,
    SQLiteRevocations,
    TokenSigner,
)
from bzzlite.auth.testing import fake_provider
from bzzlite.testing import serve

from .test_auth import (
    ANN,
    SECRET,
    bearer,
    browser,
    claims,
    make_app,
    note_registry,
    set_cookies,
    sign_in,
)

USER = {"id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google"}


@pytest.fixture
def fake():
    with fake_provider() as provider:
        provider.tokens["ann-token"] = ANN
        yield provider


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def valid_claims(**changes) -> dict:
    now = int(time.time())
    return {"sub": "ann-1", "name": "Ann", "email": "ann@example.com", "provider": "google", "sid": "s-1",
            "iat": now, "exp": now + 1200, "sat": now, **changes}


def forged_tokens() -> dict[str, str]:
    good, _ = TokenSigner(SECRET, 1200).issue(USER)
    header, _, signature = good.split(".")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(valid_claims())}.",
        "alg none, upper case": f"{b64({'alg': 'NONE', 'typ': 'JWT'})}.{b64(valid_claims())}.",
        "HS512 with the right secret": jwt.encode(valid_claims(), SECRET, algorithm="HS512"),
        "RS256": jwt.encode(valid_claims(), rsa_key, algorithm="RS256"),
        "wrong secret": jwt.encode(valid_claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
        "tampered payload": f"{header}.{b64({**claims(good), 'sub': 'admin'})}.{signature}",
        "expired": TokenSigner(SECRET, 1200).issue(USER, now=time.time() - 1300)[0],
        "no session id": jwt.encode({k: v for k, v in valid_claims().items() if k != "sid"}, SECRET,
                                    algorithm="HS256"),
        "sub not a string": jwt.encode(valid_claims(sub=["admin"]), SECRET, algorithm="HS256"),
        "issued in the future": jwt.encode(valid_claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256"),
        "garbage": "not-a-jwt",
        "three dots of garbage": "a.b.c",
        "huge": "a" * 10_000,
        "non-ascii": "ééé.ééé.ééé",
    }


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the HS512 forgery reuses the 49-byte secret
def test_forged_or_expired_tokens_get_401_never_500(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        for name, token in forged_tokens().items():
            as_bearer = client.get("/note", headers=bearer(token))
            assert as_bearer.code == 401, name
            assert as_bearer.headers["Content-Type"] == "application/problem+json", name
            if not token.isascii():
                continue  # a header value http.client cannot send as a cookie
            as_cookie = client.get("/note", headers={"Cookie": f"AUTH_TOKEN={token}"})
            assert as_cookie.code == 401, name
            assert set_cookies(as_cookie)["AUTH_TOKEN"].value == ""  # the bad cookie is cleared
            me = client.get("/auth/me/", headers={"Cookie": f"AUTH_TOKEN={token}"})
            assert me.code == 200 and me.json() == {"authenticated": False}, name


def test_malformed_authorization_headers_get_401(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        for header in ("Bearer", "Bearer ", "bearer x.y.z", "Basic YWxhZGRpbjpvcGVu"):
            assert client.get("/note", headers={"Authorization": header}).code == 401, header


def test_the_cookie_never_carries_the_provider_token(fake, sqlite_url):
    fake.tokens["ya29.provider-secret-token"] = ANN
    with serve(make_app(fake, sqlite_url)) as client:
        response = client.post("/auth/signin/", json={"access_token": "ya29.provider-secret-token",
                                                      "provider": "google"})
        assert response.code == 200
        for header in response.headers.get_all("Set-Cookie"):
            assert "provider-secret-token" not in header
        cookie = set_cookies(response)["AUTH_TOKEN"].value
        decoded = json.dumps(claims(cookie))
        assert "provider-secret-token" not in decoded and "ya29" not in decoded
        assert "provider-secret-token" not in response.text


# -- cross-site request forgery ---------------------------------------------------------


def test_forged_cross_site_writes_with_the_cookie_are_refused(fake, sqlite_url):
    app = make_app(fake, sqlite_url)
    with serve(app) as client:
        token = sign_in(client)
        created = client.post("/note", json={"text": "mine"}, headers=bearer(token)).json()
        item = f"/note/{created['id']}"
        cookie = {"Cookie": f"AUTH_TOKEN={token}"}
        attacks = {
            # an auto-submitted <form> on evil.test (a modern browser sends Origin and Sec-Fetch-Site)
            "form from another site": {**cookie, "Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"},
            # a sibling subdomain is same-site but not same-origin
            "sibling subdomain": {**cookie, "Sec-Fetch-Site": "same-site", "X-Requested-With": "x"},
            # fetch() from another origin that somehow got a CORS preflight approved
            "cross-origin fetch with the header": {**cookie, "Origin": "https://evil.test", "X-Requested-With": "x"},
            "opaque origin (sandboxed iframe)": {**cookie, "Origin": "null", "X-Requested-With": "x"},
            # an old browser that sends neither Origin nor fetch metadata, and a form cannot add headers
            "form from an old browser": dict(cookie),
        }
        for name, headers in attacks.items():
            for method, path, body in (("POST", "/note", {"text": "forged"}), ("PUT", item, {"text": "forged"}),
                                       ("PATCH", item, {"text": "forged"}), ("DELETE", item, None)):
                response = client.request(method, path, json=body, headers=headers)
                assert response.code == 403, (name, method)
                assert response.headers["Content-Type"] == "application/problem+json"
                assert "Cross-site request refused" in response.json()["detail"]
        listing = client.get("/note", headers=bearer(token)).json()
        assert [n["text"] for n in listing["items"]] == ["mine"]  # nothing was written


def test_a_same_origin_browser_request_passes(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        created = client.post("/note", json={"text": "mine"}, headers=browser(token, client))
        assert created.code == 201
        item = f"/note/{created.json()['id']}"
        edited = client.patch(item, json={"text": "edited"}, headers=browser(token, client))
        assert edited.code == 200 and edited.json()["text"] == "edited"
        assert client.get(item, headers=bearer(token)).json()["text"] == "edited"  # read back: it was written
        # the header alone (an older browser, no Origin sent) is enough
        just_header = {"Cookie": f"AUTH_TOKEN={token}", "X-Requested-With": "XMLHttpRequest"}
        again = client.put(item, json={"text": "again"}, headers=just_header)
        assert again.code == 200 and again.json()["text"] == "again"
        assert client.get(item, headers=bearer(token)).json()["text"] == "again"
        assert client.delete(item, headers=browser(token, client)).code == 204
        # reading is not a write: a cross-site GET with the cookie (a link) works
        assert client.get("/note", headers={"Cookie": f"AUTH_TOKEN={token}", "Sec-Fetch-Site": "cross-site"}).code == 200


def test_bearer_requests_need_no_csrf_header(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        response = client.post("/note", json={"text": "api"}, headers={**bearer(token), "Origin": "https://other.test"})
        assert response.code == 201
        spaced = client.get(f"/note/{response.json()['id']}", headers={"Authorization": f"bearer  {token}"})
        assert spaced.code == 200 and spaced.json()["text"] == "api"  # the scheme in any case, more spaces


def test_trusted_origins_and_a_custom_csrf_header(fake, sqlite_url):
    app = make_app(fake, sqlite_url, trusted_origins=["https://app.example.com"], csrf_header="X-CSRF")
    with serve(app) as client:
        token = sign_in(client)
        from_app = {"Cookie": f"AUTH_TOKEN={token}", "Origin": "https://app.example.com",
                    "Sec-Fetch-Site": "same-site", "X-CSRF": "1"}
        assert client.post("/note", json={"text": "x"}, headers=from_app).code == 201
        without = {**from_app}
        del without["X-CSRF"]
        assert client.post("/note", json={"text": "x"}, headers={**without, "X-Requested-With": "x"}).code == 403


def _browser_request(**headers: str):
    """What AuthPolicy.cross_site reads of a handler: a POST to https://api.example.com."""
    from types import SimpleNamespace

    from tornado.httputil import HTTPHeaders

    request = SimpleNamespace(headers=HTTPHeaders(headers), protocol="https", host="api.example.com", method="POST")
    return SimpleNamespace(request=request)


def test_what_the_cross_site_check_calls_another_site(fake, sqlite_url):
    from bzzlite.cors import CORS

    google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
    pages = CORS(origins=["https://pages.example.com"], credentials=True)
    policy = App(note_registry(), db=sqlite_url, auth=Auth(SECRET, [google]), cors=pages).runtime.auth
    no_cookies = CORS(origins=["https://pages.example.com"])
    strict = App(note_registry(), db=sqlite_url, auth=Auth(SECRET, [google]), cors=no_cookies).runtime.auth

    def other(origin: str) -> str:
        return f"the Origin {origin!r} is not this API's (add it to trusted_origins if it is yours)"

    long_origin = "https://" + "e" * 120 + ".test"
    cases = [
        ({}, None),  # an old browser, or not a browser: the CSRF header decides
        ({"Origin": "https://api.example.com"}, None),
        ({"Origin": " HTTPS://API.Example.com "}, None),
        ({"Origin": "http://api.example.com"}, other("http://api.example.com")),  # the scheme counts
        ({"Origin": "https://pages.example.com"}, None),  # a page CORS lets send cookies
        ({"Origin": "null"}, other("null")),
        ({"Origin": long_origin}, other(long_origin[:100])),
        ({"Sec-Fetch-Site": " Same-Origin "}, None),
        ({"Sec-Fetch-Site": "none"}, None),  # typed in the address bar
        ({"Sec-Fetch-Site": "same-site"}, "the browser reports a same-site request"),
        ({"Sec-Fetch-Site": "cross-site-of-a-future-kind"}, "the browser reports a cross-site-of-a-futu request"),
    ]
    assert [policy.cross_site(_browser_request(**headers)) for headers, _ in cases] == [why for _, why in cases]
    assert strict.cross_site(_browser_request(Origin="https://pages.example.com")) == \
        other("https://pages.example.com")  # CORS without credentials: its pages send no cookie


def test_max_session_age_ends_a_session_after_exactly_that_long(fake, sqlite_url, monkeypatch):
    import asyncio
    from types import SimpleNamespace

    from tornado.httputil import HTTPHeaders

    from bzzlite.auth import policy as policy_module
    from bzzlite.auth.policy import BadCredentials

    class NoneRevoked:
        async def is_revoked(self, session_id):
            return False

    policy = make_app(fake, sqlite_url, max_session_age=3600, revocations=NoneRevoked()).runtime.auth
    now = int(time.time())
    signer = policy.auth.signer

    def identify(started_at: float, cookie: bool):
        token = signer.issue(USER, started_at=started_at, now=now)[0]
        headers = HTTPHeaders({} if cookie else {"Authorization": f"Bearer {token}"})
        handler = SimpleNamespace(request=SimpleNamespace(headers=headers),
                                  get_cookie=lambda name: token if cookie and name == "AUTH_TOKEN" else None)
        return asyncio.run(policy.identify(handler))

    monkeypatch.setattr(policy_module.time, "time", lambda: now)
    for cookie in (False, True):
        identity = identify(now - 3600, cookie)  # an hour old: still this session
        assert identity.session.user["id"] == "ann-1" and identity.via == ("cookie" if cookie else "bearer")
        with pytest.raises(BadCredentials) as caught:
            identify(now - 3601, cookie)
        assert (caught.value.reason, caught.value.via) == ("the session is older than max_session_age",
                                                          "cookie" if cookie else "bearer")


def test_a_feed_asks_whether_its_token_still_stands_for_its_user(fake, sqlite_url):
    """AuthPolicy.still_signed_in, what the change feeds ask of a long-lived subscription."""
    import asyncio
    from types import SimpleNamespace

    from tornado.httputil import HTTPHeaders

    from bzzlite.auth.policy import BadCredentials

    signed_out: set[str] = set()

    class Revoked:
        async def is_revoked(self, session_id):
            return session_id in signed_out

    policy = make_app(fake, sqlite_url, revocations=Revoked()).runtime.auth
    token, session = policy.auth.signer.issue(USER)

    def handler(headers):
        return SimpleNamespace(request=SimpleNamespace(headers=HTTPHeaders(headers)), get_cookie=lambda name: None)

    def still(headers, user):
        return asyncio.run(policy.still_signed_in(handler(headers), user))

    assert still(bearer(token), {"id": "ann-1"}) is True
    assert still(bearer(token), {"id": "bob-2"}) is False  # the token stands for someone else now
    assert still({}, {"id": "ann-1"}) is False  # no token any more
    signed_out.add(session.session_id)
    assert still(bearer(token), {"id": "ann-1"}) is False
    with pytest.raises(BadCredentials) as caught:
        asyncio.run(policy.identify(handler(bearer(token))))
    assert (caught.value.reason, caught.value.via) == ("the session was signed out", "bearer")


def test_a_token_says_what_its_session_says():
    signer = TokenSigner(SECRET, 1200)
    for user in (USER, {**USER, "roles": ["editor", "admin", "editor"]}, {"id": "7", "provider": "github"}):
        token, session = signer.issue(user)
        assert TokenSigner(SECRET, 1200).verify(token) == session  # what sign-in keeps is what a request reads
    assert dict(session.user) == {"id": "7", "email": None, "name": None, "provider": "github"}
    assert signer.issue({**USER, "roles": ["b", "a"]})[1].user["roles"] == ("a", "b")
    assert len(signer.issue({**USER, "roles": [f"r{n}" for n in range(64)]})[1].user["roles"]) == 64
    for roles, reason in ((5, "the user data's 'roles' must be a list of role names, not int"),
                          ("admin", "the user data's 'roles' must be a list of role names, not str"),
                          ([f"r{n}" for n in range(65)], "the user data holds 65 roles; a token carries at most 64")):
        with pytest.raises(ValueError) as caught:
            signer.issue({**USER, "roles": roles})
        assert str(caught.value) == reason
    ids = {signer.issue(USER)[1].session_id for _ in range(3)}
    assert len(ids) == 3 and all(len(sid) == 22 for sid in ids)  # 128 random bits each, URL-safe


def test_the_cookie_is_secure_over_https_unless_told_otherwise(fake, sqlite_url):
    from types import SimpleNamespace

    def options(protocol: str, **auth_options):
        policy = make_app(fake, sqlite_url, **auth_options).runtime.auth
        return policy._cookie_options(SimpleNamespace(request=SimpleNamespace(protocol=protocol)))

    assert options("https") == {"path": "/", "domain": None, "httponly": True, "secure": True, "samesite": "Lax"}
    assert options("http")["secure"] is False  # auto: as the request came
    assert options("https", secure=False)["secure"] is False and options("http", secure=True)["secure"] is True


def test_sign_in_cannot_be_forged_cross_site(fake, sqlite_url):
    body = {"access_token": "ann-token", "provider": "google"}
    with serve(make_app(fake, sqlite_url)) as client:
        response = client.post("/auth/signin/", json=body, headers={"Origin": "https://evil.test"})
        assert response.code == 403 and set_cookies(response) == {}
        # an HTML form can only send form fields or text/plain, never application/json
        as_text = client.post("/auth/signin/", body=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert as_text.code == 415 and set_cookies(as_text) == {}
        assert client.post("/auth/signin/", json=body, headers={"Origin": client.base_url}).code == 200


def test_sign_out_cannot_be_forged_cross_site(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        forged = client.post("/auth/signout/", headers={"Cookie": f"AUTH_TOKEN={token}", "Origin": "https://evil.test"})
        assert forged.code == 403
        assert client.get("/auth/me/", headers={"Cookie": f"AUTH_TOKEN={token}"}).json()["authenticated"] is True


# -- sign-out ends the session ------------------------------------------------------------


def test_sign_out_ends_the_session_for_that_cookie_and_its_renewals(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        other_session = sign_in(client)  # the same user in another browser
        renewed = set_cookies(client.get("/note", headers={"Cookie": f"AUTH_TOKEN={token}"}))["AUTH_TOKEN"].value
        assert client.post("/auth/signout/", headers=browser(token, client)).json() == {"loggedOut": True}
        for stale in (token, renewed):
            assert client.get("/note", headers={"Cookie": f"AUTH_TOKEN={stale}"}).code == 401
            assert client.get("/note", headers=bearer(stale)).code == 401
            assert client.get("/auth/me/", headers={"Cookie": f"AUTH_TOKEN={stale}"}).json() == {"authenticated": False}
        assert client.get("/note", headers=bearer(other_session)).code == 200


def test_a_bearer_client_can_sign_out_too(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        token = sign_in(client)
        assert client.post("/auth/signout/", headers=bearer(token)).code == 200
        assert client.get("/note", headers=bearer(token)).code == 401


def test_sign_out_is_shared_between_processes_with_sqlite_revocations(fake, tmp_path):
    revoked = str(tmp_path / "revoked.db")
    google = GoogleProvider(userinfo_url=fake.url())
    workers = [App(note_registry(), db=f"sqlite:///{tmp_path}/data.db",
                   auth=Auth(SECRET, [google], revocations=SQLiteRevocations(revoked))) for _ in range(2)]
    with serve(workers[0]) as first, serve(workers[1]) as second:
        token = sign_in(first)
        assert second.get("/note", headers=bearer(token)).code == 200
        assert first.post("/auth/signout/", headers=bearer(token)).code == 200
        assert second.get("/note", headers=bearer(token)).code == 401


# -- nothing secret in the logs -----------------------------------------------------------


class Leaky(AuthProvider):
    """A buggy custom provider whose exception message contains the token."""

    name = "leaky"

    async def authenticate(self, access_token):
        raise RuntimeError(f"could not parse {access_token}")


def test_secrets_and_tokens_never_reach_the_logs(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.tokens["tok-ann-SECRET-1"] = ANN
    fake.replies["/broken"] = (500, b"oops")
    closed_port = fake_port_that_refuses()
    registry = note_registry()
    providers = [GoogleProvider(userinfo_url=fake.url()),
                 GoogleProvider(name="broken", userinfo_url=fake.url("/broken")),
                 GoogleProvider(name="down", userinfo_url=f"http://127.0.0.1:{closed_port}/userinfo"),
                 Leaky()]
    app = App(registry, db=f"sqlite:///{tmp_path}/t.db", auth=Auth(SECRET, providers), debug=False)
    tokens = []
    with serve(app) as client:
        response = client.post("/auth/signin/", json={"access_token": "tok-ann-SECRET-1", "provider": "google"})
        token = set_cookies(response)["AUTH_TOKEN"].value
        tokens.append(token)
        renewed = client.get("/note", headers={"Cookie": f"AUTH_TOKEN={token}"})
        tokens.append(set_cookies(renewed)["AUTH_TOKEN"].value)
        for provider, status in (("google", 401), ("broken", 503), ("down", 503), ("leaky", 502), ("nope", 401)):
            refused = client.post("/auth/signin/", json={"access_token": "tok-bad-SECRET-2", "provider": provider})
            assert refused.code == status, provider
        tampered = token[:-4] + "AAAA"
        assert client.get("/note", headers=bearer(tampered)).code == 401
        assert client.post("/note", json={"text": "x"}, headers={"Cookie": f"AUTH_TOKEN={token}"}).code == 403
        client.post("/auth/signout/", headers=bearer(token))
        assert client.get("/note", headers=bearer(token)).code == 401
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "sign-in with broken failed" in logged and "provider leaky raised" in logged  # the logs did speak
    assert "[redacted]" in logged
    for secret in (SECRET, "tok-ann-SECRET-1", "tok-bad-SECRET-2", *tokens, tampered):
        assert secret not in logged
    assert "SECRET-" not in logged


def fake_port_that_refuses() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_remembered_token_still_expires(monkeypatch):
    from bzzlite.auth import tokens

    signer = TokenSigner(SECRET, 1200)
    now = time.time()
    token, _ = signer.issue(USER, now=now - 1190)  # ten seconds left
    assert signer.verify(token).user["id"] == "ann-1"  # verified, and remembered
    assert signer.verify(token).user["id"] == "ann-1"  # from memory
    monkeypatch.setattr(tokens.time, "time", lambda: now + 20)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        signer.verify(token)


def _signed(**changes) -> str:
    claims_ = {k: v for k, v in valid_claims(**changes).items() if v is not None}
    return jwt.encode(claims_, SECRET, algorithm="HS256")


@pytest.mark.filterwarnings("ignore:The HMAC key")
@pytest.mark.parametrize("make, reason", [
    (lambda: "", "not a token of this app"),
    (lambda: "a" * 4097, "not a token of this app"),
    (lambda: "a" * 4096, "the token is malformed (DecodeError)"),  # as long as a token may be: decoded
    (lambda: "ééé", "not a token of this app"),
    (lambda: "a.b.c", "the token is malformed (DecodeError)"),
    (lambda: TokenSigner(SECRET, 1200).issue(USER, now=time.time() - 1300)[0], "the token has expired"),
    (lambda: jwt.encode(valid_claims(), SECRET, algorithm="HS512"), "the token is not signed with HS256"),
    (lambda: jwt.encode(valid_claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
     "the token's signature does not verify"),
    (lambda: _signed(sid=None), "the token is malformed (MissingRequiredClaimError)"),
    (lambda: _signed(exp=None), "the token is malformed (MissingRequiredClaimError)"),
    (lambda: _signed(sub=["admin"]), "the token is malformed (InvalidSubjectError)"),  # PyJWT's own check
    (lambda: _signed(sub=""), "the token's 'sub' claim is not a string"),
    (lambda: _signed(provider=["google"]), "the token's 'provider' claim is not a string"),
    (lambda: _signed(provider=""), "the token's 'provider' claim is not a string"),
    (lambda: _signed(name=5), "the token's 'name' claim is not a string"),
    (lambda: _signed(email=["a@b.c"]), "the token's 'email' claim is not a string"),
    (lambda: _signed(sat="yesterday"), "the token's 'sat' claim is not a number"),
    (lambda: _signed(roles="admin"), "the token's 'roles' claim is not a list of strings"),
    (lambda: _signed(roles=["admin", 1]), "the token's 'roles' claim is not a list of strings"),
], ids=["empty", "too long", "longest", "non-ascii", "garbage", "expired", "HS512", "wrong secret", "no sid",
        "no exp", "sub a list", "sub empty", "provider a list", "provider empty", "name a number", "email a list",
        "sat a word", "roles a word", "roles not all words"])
def test_the_signer_refuses_each_bad_token_saying_why(make, reason):
    from bzzlite.auth.tokens import InvalidToken

    with pytest.raises(InvalidToken) as caught:
        TokenSigner(SECRET, 1200).verify(make())
    assert str(caught.value) == reason


def test_the_signer_reads_back_what_the_token_says():
    session = TokenSigner(SECRET, 1200).verify(_signed(sat=None, roles=["editor", "admin"]))
    now = session.issued_at
    assert dict(session.user) == {"id": "ann-1", "email": "ann@example.com", "name": "Ann", "provider": "google",
                                  "roles": ("editor", "admin")}
    assert (session.session_id, session.expires_at, session.started_at) == ("s-1", now + 1200, now)  # no sat: iat
    plain = TokenSigner(SECRET, 1200).verify(_signed(name=None, email=None))
    assert dict(plain.user) == {"id": "ann-1", "email": None, "name": None, "provider": "google"}


def test_a_remembered_token_expires_at_its_exp_and_is_forgotten(monkeypatch):
    from bzzlite.auth import tokens

    signer = TokenSigner(SECRET, 1200)
    token, session = signer.issue(USER)
    signer.verify(token)
    monkeypatch.setattr(tokens.time, "time", lambda: session.expires_at)  # exp is the first second it is not valid
    with pytest.raises(tokens.InvalidToken) as caught:
        signer.verify(token)
    assert str(caught.value) == "the token has expired"
    assert token not in signer._verified


def test_the_signer_remembers_a_bounded_number_of_tokens(monkeypatch):
    from bzzlite.auth import tokens

    monkeypatch.setattr(tokens, "_CACHE_SIZE", 2)
    signer = TokenSigner(SECRET, 1200)
    issued = [signer.issue({**USER, "id": f"u{n}"})[0] for n in range(3)]
    for token in issued:
        signer.verify(token)
    assert list(signer._verified) == issued[1:]  # the oldest went


# -- what each refusal says, and to whom ---------------------------------------------------------


def test_refusals_say_why_to_the_client_and_more_to_the_log(fake, sqlite_url, caplog):
    caplog.set_level(logging.INFO)
    with serve(make_app(fake, sqlite_url)) as client:
        for body in ({"access_token": "unknown-token", "provider": "google"},
                     {"access_token": "ann-token", "provider": "nope"}):
            refused = client.post("/auth/signin/", json=body)
            assert refused.code == 401
            assert refused.json()["detail"] == "Sign-in failed: unknown provider or invalid access token."
        expired = TokenSigner(SECRET, 1200).issue(USER, now=time.time() - 1300)[0]
        assert client.get("/note", headers=bearer(expired)).code == 401
        assert client.get("/note", headers={"Authorization": "Bearer"}).code == 401
        token = sign_in(client)
        forged = client.post("/auth/signout/", headers={"Cookie": f"AUTH_TOKEN={token}", "Origin": "https://evil.test"})
        assert forged.code == 403 and forged.json()["detail"].startswith("Cross-site request refused: ")
    logged = [r.getMessage() for r in caplog.records]
    assert "POST /auth/signin/: sign-in refused: the provider does not accept the access token" in logged
    assert "GET /note: auth refused: the token has expired" in logged
    assert "GET /note: auth refused: empty Bearer token" in logged


def test_signing_out_with_a_token_that_no_longer_stands_still_signs_out(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        out = client.post("/auth/signout/", headers=bearer("not-a-jwt"))
        assert out.code == 200 and out.json() == {"loggedOut": True}
        assert set_cookies(out)["AUTH_TOKEN"].value == ""  # the cookie cleared


def test_a_sign_out_is_remembered_until_the_last_token_of_its_session_expires(fake, sqlite_url):
    revoked: list[tuple[str, float]] = []

    class Recorded:
        async def revoke(self, session_id, until):
            revoked.append((session_id, until))

        async def is_revoked(self, session_id):
            return any(sid == session_id for sid, _ in revoked)

    app = make_app(fake, sqlite_url, revocations=Recorded())
    with serve(app) as client:
        token = sign_in(client)
        assert client.post("/auth/signout/", headers=bearer(token)).code == 200
        [(session_id, until)] = revoked
        latest = app.runtime.auth.auth.signer.issue(USER, session_id=session_id)[0]  # a renewal issued now
        assert session_id == claims(token)["sid"] and until > claims(latest)["exp"]


def test_a_renewed_cookie_keeps_the_sessions_start(fake, sqlite_url):
    with serve(make_app(fake, sqlite_url)) as client:
        started = time.time() - 600
        old, _ = TokenSigner(SECRET, 1200).issue(USER, now=time.time() - 60, started_at=started)
        renewed = set_cookies(client.get("/note", headers={"Cookie": f"AUTH_TOKEN={old}"}))["AUTH_TOKEN"].value
        assert renewed != old and claims(renewed)["sid"] == claims(old)["sid"]
        assert claims(renewed)["sat"] == int(started)


class _LeakyEight(AuthProvider):
    name = "leaky"

    async def authenticate(self, access_token):
        raise RuntimeError(f"could not parse {access_token}")


def test_a_token_of_eight_characters_is_redacted_too(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    app = App(note_registry(), db=f"sqlite:///{tmp_path}/t.db", auth=Auth(SECRET, [_LeakyEight()]))
    with serve(app) as client:
        assert client.post("/auth/signin/", json={"access_token": "8chars!!", "provider": "leaky"}).code == 502
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "8chars!!" not in logged and "could not parse [redacted]" in logged
