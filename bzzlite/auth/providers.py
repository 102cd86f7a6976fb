"""Identity providers: who owns an OAuth2 access token.

A provider turns an access token into ``{"id", "email", "name", "provider"}`` or says
the token is not valid (``None``). The built-in ones ask the provider's user-info
endpoint, with the token in an ``Authorization`` header — never in a URL, where proxies
and access logs would keep it. Endpoints and the HTTP client are constructor
arguments, so tests point them at a local fake provider.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("bzzlite.auth")

DEFAULT_TIMEOUT = 5.0  # seconds a provider may take to answer before sign-in fails with 504


class ProviderError(Exception):
    """The provider could not tell whether the token is valid. ``status`` is the HTTP answer."""

    status = 502
    detail = "The identity provider gave an unusable answer."


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached or answers with an error of its own (→ 503)."""

    status = 503
    detail = "The identity provider is unavailable; try again shortly."


class ProviderTimeout(ProviderError):
    """The provider did not answer in time (→ 504)."""

    status = 504
    detail = "The identity provider did not answer in time."


class AuthProvider(ABC):
    """Verifies access tokens of one identity provider. Subclass it for your own.

    Set ``name`` (what clients send as ``"provider"`` and the sender of the auth
    signals) and implement :meth:`authenticate`. Sign-in waits at most ``timeout``
    seconds for it (then 504).
    """

    name: str = ""
    timeout: float = DEFAULT_TIMEOUT

    @abstractmethod
    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        """The user the token belongs to, or None when the token is not valid.

        Returns:
            A dict with at least ``id``; ``email`` and ``name`` when known. ``provider`` is
            set by bzzlite to this provider's name.

        Raises:
            ProviderError: the provider could not be asked (503/504/502 for the client).
        """


@dataclass(frozen=True, slots=True)
class HTTPReply:
    status: int
    body: bytes


class HTTPClient(Protocol):
    """What providers need of an HTTP client: one GET. Inject your own (httpx, a proxy...)."""

    async def get(self, url: str, headers: Mapping[str, str], timeout: float) -> HTTPReply:
        """GET ``url``; raise :class:`ProviderTimeout` or :class:`ProviderUnavailable` when no answer."""


class TornadoHTTPClient:
    """The default client: Tornado's ``AsyncHTTPClient`` of the running loop, no redirects.

    Redirects are not followed so the ``Authorization`` header never travels to a host
    other than the configured endpoint.
    """

    async def get(self, url: str, headers: Mapping[str, str], timeout: float) -> HTTPReply:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
        from tornado.simple_httpclient import HTTPTimeoutError

        request = HTTPRequest(url, method="GET", headers=dict(headers), connect_timeout=timeout,
                              request_timeout=timeout, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (TimeoutError, HTTPTimeoutError):
            raise ProviderTimeout(f"no answer from {_where(url)} in {timeout:g} s") from None
        except HTTPClientError as exc:  # 599: the connection was closed early
            raise ProviderUnavailable(f"{_where(url)}: {exc}") from None
        except OSError as exc:
            raise ProviderUnavailable(f"{_where(url)}: {type(exc).__name__}: {exc.strerror or exc}") from None
        return HTTPReply(response.code, response.body or b"")


def _where(url: str) -> str:
    """The URL without its query string, for log lines."""
    return url.split("?", 1)[0]


class UserInfoProvider(AuthProvider):
    """A provider asked through an OAuth2 user-info endpoint (``GET`` with a Bearer token).

    Args:
        userinfo_url: the endpoint (the real provider's by default).
        http_client: an :class:`HTTPClient` (Tornado's by default).
        timeout: seconds to wait for the endpoint.
    """

    userinfo_url: str = ""

    def __init__(self, *, userinfo_url: str | None = None, http_client: HTTPClient | None = None,
                 timeout: float = DEFAULT_TIMEOUT, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        if userinfo_url is not None:
            self.userinfo_url = userinfo_url
        self.http_client: HTTPClient = http_client if http_client is not None else TornadoHTTPClient()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(userinfo_url={self.userinfo_url!r})"

    def request_headers(self, access_token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token}", "Accept": "application/json",
                "User-Agent": "bzzlite"}

    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        reply = await self.http_client.get(self.userinfo_url, self.request_headers(access_token), self.timeout)
        if reply.status in (400, 401, 403):  # the provider refuses the token
            return None
        if reply.status == 429 or reply.status >= 500:
            raise ProviderUnavailable(f"{_where(self.userinfo_url)} answered {reply.status}")
        if reply.status != 200:
            raise ProviderError(f"{_where(self.userinfo_url)} answered {reply.status}")
        try:
            data = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            raise ProviderError(f"{_where(self.userinfo_url)} answered with something else than JSON") from None
        if not isinstance(data, dict):
            raise ProviderError(f"{_where(self.userinfo_url)} answered with a JSON {type(data).__name__}")
        return self.user_from(data)

    @abstractmethod
    def user_from(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Map the endpoint's JSON to ``{"id", "email", "name"}`` (None: no usable user)."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class GoogleProvider(UserInfoProvider):
    """Google accounts, through the OpenID Connect user-info endpoint."""

    name = "google"
    userinfo_url = "https://openidconnect.googleapis.com/v1/userinfo"

    def user_from(self, data: dict[str, Any]) -> dict[str, Any] | None:
        user_id = data.get("sub", data.get("id"))
        if user_id is None:
            return None
        return {"id": str(user_id), "email": _text(data.get("email")), "name": _text(data.get("name"))}


class GitHubProvider(UserInfoProvider):
    """GitHub accounts, through ``GET /user`` of the REST API."""

    name = "github"
    userinfo_url = "https://api.github.com/user"

    def request_headers(self, access_token: str) -> dict[str, str]:
        headers = super().request_headers(access_token)
        headers["Accept"] = "application/vnd.github+json"
        headers["X-GitHub-Api-Version"] = "2022-11-28"
        return headers

    def user_from(self, data: dict[str, Any]) -> dict[str, Any] | None:
        user_id = data.get("id")
        if user_id is None:
            return None
        return {"id": str(user_id), "email": _text(data.get("email")),
                "name": _text(data.get("name")) or _text(data.get("login"))}


class FacebookProvider(UserInfoProvider):
    """Facebook accounts, through the Graph API's ``/me`` (the token in the header)."""

    name = "facebook"
    userinfo_url = "https://graph.facebook.com/me?fields=id,name,email"

    def user_from(self, data: dict[str, Any]) -> dict[str, Any] | None:
        user_id = data.get("id")
        if user_id is None:
            return None
        return {"id": str(user_id), "email": _text(data.get("email")), "name": _text(data.get("name"))}
