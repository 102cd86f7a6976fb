"""``Auth``: how an app authenticates users, given to ``App(auth=...)``.

It is plain configuration, checked when it is built; ``install`` binds it to one
app's runtime (an :class:`~bzzlite.auth.policy.AuthPolicy`) and returns the routes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..models.resource import OPERATIONS
from .providers import AuthProvider
from .revocation import Revocations
from .tokens import TokenSigner

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

DEFAULT_COOKIE_NAME = "AUTH_TOKEN"
DEFAULT_LIFETIME = 1200  # seconds, as in bzz
SECRET_ENV = "BZZLITE_AUTH_SECRET"

#: ``require=`` / ``@resource(auth=...)``: True/False for every operation, or a dict per operation.
Requirement = bool | Mapping[str, bool] | None


def required_operations(value: Requirement, base: Mapping[str, bool], where: str) -> dict[str, bool]:
    """Which operations need a signed-in user: ``value`` applied over ``base``.

    Raises:
        ConfigurationError: ``value`` is not a bool or a dict of known operations to bools.
    """
    if value is None:
        return dict(base)
    if isinstance(value, bool):
        return {op: value for op in OPERATIONS}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(OPERATIONS))
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown operation(s) {', '.join(map(repr, unknown))}; "
                f"the operations are {', '.join(OPERATIONS)}"
            )
        if not all(isinstance(v, bool) for v in value.values()):
            raise ConfigurationError(f"{where}: give True (a user is required) or False (public) per operation")
        return {**base, **value}
    raise ConfigurationError(
        f"{where}: expected True, False or a dict such as {{'list': False, 'get': False}}, got {value!r}"
    )


class Auth:
    """Sign-in with identity providers, signed token cookies and per-operation rules.

    Args:
        secret: the key tokens are signed with (HS256), at least 32 bytes; by default the
            ``BZZLITE_AUTH_SECRET`` environment variable.
        providers: :class:`AuthProvider` instances (``GoogleProvider()``, your own...).
        require: which operations need a signed-in user: ``True`` (all, the default),
            ``False`` (none) or a dict such as ``{"get": False, "list": False}``;
            ``@resource(auth=...)`` overrides it per resource in the same forms.
        cookie_name, lifetime: the token cookie's name and the token lifetime in seconds
            (renewed on each authenticated request).
        secure: the cookie's ``Secure`` flag; ``"auto"`` (or ``None``) sets it when the request
            came over HTTPS, which behind a TLS proxy needs the proxy's headers trusted.
        cookie_domain, cookie_path: the cookie's scope.
        prefix: where the sign-in, sign-out and me routes live.
        csrf_header: the header a cookie-authenticated write must carry (any value);
            ``None`` relies on the Origin check alone.
        trusted_origins: other origins (``https://app.example.com``) allowed to send
            cookie-authenticated writes and sign-ins, besides the API's own.
        revocations: where sign-outs are remembered: by default the app's own store, so
            every worker and machine sees them (:class:`StoreRevocations`);
            :class:`MemoryRevocations` for one process only (tests).
        max_session_age: seconds after sign-in when a session ends even if it is renewed
            (``None``: no limit but the token lifetime between requests).
        roles: a user's roles, for ``role(...)`` rules (:mod:`bzzlite.permissions`): a function
            (sync or async) of the user data returning role names, asked at most once per
            request; by default the ``roles`` list of the user data, which a provider or an
            ``authorized_user`` receiver sets at sign-in (it is then signed into the token).
    """

    def __init__(
        self,
        secret: str | bytes | None = None,
        providers: Iterable[AuthProvider] = (),
        *,
        require: Requirement = True,
        cookie_name: str = DEFAULT_COOKIE_NAME,
        lifetime: float = DEFAULT_LIFETIME,
        secure: bool | Literal["auto"] | None = "auto",
        cookie_domain: str | None = None,
        cookie_path: str = "/",
        prefix: str = "/auth",
        csrf_header: str | None = "X-Requested-With",
        trusted_origins: Iterable[str] = (),
        revocations: Revocations | None = None,
        max_session_age: float | None = None,
        roles: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if secret is None:
            secret = os.environ.get(SECRET_ENV)
        if not secret:
            raise ConfigurationError(
                f"Auth needs a secret to sign tokens: pass Auth(secret=...) or set {SECRET_ENV} "
                "(generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            )
        self.signer = TokenSigner(secret, lifetime)
        self.providers: dict[str, AuthProvider] = {}
        for provider in providers:
            if isinstance(provider, type) and issubclass(provider, AuthProvider):
                provider = provider()
            if not isinstance(provider, AuthProvider):
                raise ConfigurationError(f"Auth(providers=...) takes AuthProvider instances, got {provider!r}")
            if not isinstance(provider.name, str) or not provider.name:
                raise ConfigurationError(f"{type(provider).__name__} has no name: set `name = \"...\"` on it")
            if provider.name in self.providers:
                raise ConfigurationError(f"two providers are named {provider.name!r}; give one another name")
            self.providers[provider.name] = provider
        if not self.providers:
            raise ConfigurationError("Auth needs at least one provider, e.g. Auth(secret, [GoogleProvider()])")
        self.require = required_operations(require, {op: True for op in OPERATIONS}, "Auth(require=...)")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", cookie_name):
            raise ConfigurationError(f"cookie_name {cookie_name!r} is not a valid cookie name")
        self.cookie_name = cookie_name
        self.lifetime = float(lifetime)
        if secure not in (True, False, None, "auto"):
            raise ConfigurationError(f"Auth(secure=...) takes True, False or 'auto', got {secure!r}")
        self.secure = None if secure == "auto" else secure
        self.cookie_domain = cookie_domain
        self.cookie_path = cookie_path
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.csrf_header = csrf_header
        self.trusted_origins = frozenset(_origin(o) for o in trusted_origins)
        self.revocations: Revocations | None = revocations  # None: each app's own store (AuthPolicy)
        if max_session_age is not None and max_session_age <= 0:
            raise ConfigurationError("max_session_age must be a positive number of seconds (or None)")
        self.max_session_age = max_session_age
        if roles is not None and not callable(roles):
            raise ConfigurationError("Auth(roles=...) takes a function of the user data returning role names, "
                                     "e.g. roles=lambda user: ['admin'] if user['id'] in ADMINS else []")
        self.roles = roles

    def __repr__(self) -> str:  # never the secret
        return f"Auth(providers={list(self.providers)!r}, require={self.require!r}, prefix={self.prefix!r})"

    def requirements_for(self, spec: ResourceSpec) -> dict[str, bool]:
        """Which operations on ``spec`` need a signed-in user."""
        return required_operations(spec.auth, self.require, f"@resource(auth=...) of {spec.model.__name__}")


def _origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(f"trusted origin {value!r} must look like https://app.example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()
