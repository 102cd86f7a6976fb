"""Identity providers against a local fake provider: mapping, headers, failures and timeouts."""

from __future__ import annotations

import asyncio

import pytest

from bzzlite import App
from bzzlite.auth import (
    Auth,
    AuthProvider,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    HTTPReply,
    ProviderUnavailable,
    TornadoHTTPClient,
)
from bzzlite.auth.testing import fake_provider
from bzzlite.testing import serve

from .test_auth import SECRET, note_registry, set_cookies

SIGN_IN = "/auth/signin/"


@pytest.fixture
def fake():
    with fake_provider() as provider:
        yield provider


def app_with(sqlite_url: str, *providers: AuthProvider) -> App:
    return App(note_registry(), db=sqlite_url, auth=Auth(SECRET, list(providers)))


def test_google_maps_the_openid_userinfo(fake, sqlite_url):
    fake.tokens["g-token"] = {"sub": "10769150350006150715113082367", "email": "ann@gmail.com",
                              "email_verified": True, "name": "Ann Lee", "picture": "https://x/y.png"}
    with serve(app_with(sqlite_url, GoogleProvider(userinfo_url=fake.url("/v1/userinfo")))) as client:
        response = client.post(SIGN_IN, json={"access_token": "g-token", "provider": "google"})
    assert response.json()["userData"] == {"id": "10769150350006150715113082367", "email": "ann@gmail.com",
                                           "name": "Ann Lee", "provider": "google"}
    [request] = fake.requests
    assert request.path == "/v1/userinfo"
    assert request.headers["Authorization"] == "Bearer g-token"


def test_github_maps_the_user_api_with_its_headers(fake, sqlite_url):
    fake.tokens["gho_abc"] = {"login": "octocat", "id": 583231, "name": None, "email": "octo@github.com"}
    with serve(app_with(sqlite_url, GitHubProvider(userinfo_url=fake.url("/user")))) as client:
        response = client.post(SIGN_IN, json={"access_token": "gho_abc", "provider": "github"})
    assert response.json()["userData"] == {"id": "583231", "email": "octo@github.com", "name": "octocat",
                                           "provider": "github"}
    [request] = fake.requests
    assert request.path == "/user" and "gho_abc" not in request.path
    assert request.headers["Authorization"] == "Bearer gho_abc"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["User-Agent"]


def test_facebook_maps_the_graph_me_with_the_token_in_the_header(fake, sqlite_url):
    fake.tokens["EAAB"] = {"id": "1020", "name": "Zed", "email": "zed@example.com"}
    facebook = FacebookProvider(userinfo_url=fake.url("/me?fields=id,name,email"))
    with serve(app_with(sqlite_url, facebook)) as client:
        response = client.post(SIGN_IN, json={"access_token": "EAAB", "provider": "facebook"})
    assert response.json()["userData"] == {"id": "1020", "email": "zed@example.com", "name": "Zed",
                                           "provider": "facebook"}
    [request] = fake.requests
    assert request.path == "/me?fields=id,name,email"
    assert request.headers["Authorization"] == "Bearer EAAB"


def test_default_endpoints_are_the_real_providers():
    assert GoogleProvider().userinfo_url.startswith("https://")
    assert GitHubProvider().userinfo_url == "https://api.github.com/user"
    assert "access_token" not in FacebookProvider().userinfo_url


def test_several_providers_at_once(fake, sqlite_url):
    fake.tokens["t"] = {"sub": "1", "id": 2, "name": "N"}
    app = app_with(sqlite_url, GoogleProvider(userinfo_url=fake.url("/g")), GitHubProvider(userinfo_url=fake.url("/gh")))
    with serve(app) as client:
        assert client.post(SIGN_IN, json={"access_token": "t", "provider": "google"}).json()["userData"]["id"] == "1"
        assert client.post(SIGN_IN, json={"access_token": "t", "provider": "github"}).json()["userData"]["id"] == "2"


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, b'{"error": "invalid_token"}', 401),
    (403, b"{}", 401),
    (400, b'{"error": {"code": 190}}', 401),  # Facebook's answer to a bad token
    (500, b"oops", 503),
    (503, b"", 503),
    (429, b"slow down", 503),
    (200, b"<html>not json</html>", 502),
    (200, b"[1, 2]", 502),
    (302, b"", 502),  # redirects are not followed: the token stays with the configured host
    (200, b'{"email": "no-id@example.com"}', 401),
])
def test_provider_answers_map_to_statuses(fake, sqlite_url, status, body, expected):
    fake.replies["/userinfo"] = (status, body)
    with serve(app_with(sqlite_url, GoogleProvider(userinfo_url=fake.url()))) as client:
        response = client.post(SIGN_IN, json={"access_token": "t", "provider": "google"})
    assert response.code == expected
    assert response.headers["Content-Type"] == "application/problem+json"
    assert set_cookies(response) == {}
    if expected == 503:
        assert response.headers["Retry-After"]


def test_a_provider_that_is_down_gives_503(sqlite_url):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = GoogleProvider(userinfo_url=f"http://127.0.0.1:{port}/userinfo", timeout=5)
    with serve(app_with(sqlite_url, down)) as client:
        response = client.post(SIGN_IN, json={"access_token": "t", "provider": "google"})
    assert response.code == 503
    assert response.json()["detail"] == "The identity provider is unavailable; try again shortly."


def test_a_provider_that_hangs_gives_504_within_its_timeout(fake, sqlite_url, caplog):
    fake.hanging.add("/userinfo")  # accepts the connection, never answers
    slow = GoogleProvider(userinfo_url=fake.url(), timeout=0.3)
    with serve(app_with(sqlite_url, slow)) as client:
        # the client would give up (an exception, not a response) long before the fake answers
        response = client.post(SIGN_IN, json={"access_token": "t", "provider": "google"}, timeout=20)
    assert response.code == 504
    assert "no answer from http://127.0.0.1" in caplog.text  # the HTTP client's own timeout fired


class Stalling(AuthProvider):
    name = "stalling"
    timeout = 0.2

    async def authenticate(self, access_token):
        await asyncio.sleep(3600)


def test_a_custom_provider_is_bounded_by_its_timeout_too(sqlite_url):
    with serve(app_with(sqlite_url, Stalling())) as client:
        assert client.post(SIGN_IN, json={"access_token": "t", "provider": "stalling"}, timeout=20).code == 504


class Unreachable(AuthProvider):
    name = "ldap"

    async def authenticate(self, access_token):
        raise ProviderUnavailable("the directory server is down")


def test_a_custom_provider_can_report_unavailability(sqlite_url):
    with serve(app_with(sqlite_url, Unreachable())) as client:
        assert client.post(SIGN_IN, json={"access_token": "t", "provider": "ldap"}).code == 503


class Recording:
    """An injected HTTP client: records what it is asked, then really asks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], float]] = []
        self.inner = TornadoHTTPClient()

    async def get(self, url, headers, timeout) -> HTTPReply:
        self.calls.append((url, dict(headers), timeout))
        return await self.inner.get(url, headers, timeout)


def test_the_http_client_is_injectable(fake, sqlite_url):
    fake.tokens["t"] = {"sub": "1"}
    client_ = Recording()
    google = GoogleProvider(userinfo_url=fake.url(), http_client=client_, timeout=2.5)
    with serve(app_with(sqlite_url, google)) as client:
        assert client.post(SIGN_IN, json={"access_token": "t", "provider": "google"}).code == 200
    assert client_.calls == [(fake.url(), {"Authorization": "Bearer t", "Accept": "application/json",
                                           "User-Agent": "bzzlite"}, 2.5)]
