"""``AuthPolicy``: one app's auth at run time — who is asking, and may they?

Credentials come from ``Authorization: Bearer <token>`` or from the token cookie. A
cookie is sent by the browser on its own, so a cookie-authenticated write must also
prove it comes from the app's own pages (see :meth:`AuthPolicy.forgery`): a custom
header, which a cross-site form cannot send and a cross-site script cannot add
without a CORS preflight this app never approves, and an ``Origin`` (or
``Sec-Fetch-Site``) that is not another site's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import tornado.web

from ..errors import HTTPError
from ..permissions import ANONYMOUS, Caller
from ..signals import send, send_after_commit
from .providers import ProviderError
from .revocation import Revocations, StoreRevocations
from .tokens import InvalidToken, Session

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..runtime import Runtime
    from .config import Auth

log = logging.getLogger("bzzlite.auth")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ACCESS_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII: no header injection, no giant tokens
_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="bzzlite"'}


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified session and how its token came (``"cookie"`` or ``"bearer"``)."""

    session: Session
    via: str
    token: str


class BadCredentials(Exception):
    """A token was presented but does not stand (``reason`` is for the log only)."""

    def __init__(self, reason: str, via: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.via = via


class AuthPolicy:
    """:class:`~bzzlite.auth.Auth` bound to one app's runtime (its signals, its resources)."""

    def __init__(self, auth: Auth, runtime: Runtime) -> None:
        self.auth = auth
        self.runtime = runtime
        self.signals = runtime.signals
        # Sign-outs: where the app says, else beside this app's data (every worker sees them).
        self.revocations: Revocations = auth.revocations or StoreRevocations(runtime)
        self._requirements = {path: auth.requirements_for(spec) for path, spec in runtime.registry.resources.items()}

    def required(self, spec: ResourceSpec, operation: str) -> bool:
        """Whether ``operation`` on ``spec`` needs a signed-in user: its permission rule says
        so when it has one (``anyone`` does not, ``role(...)`` does), else the app's and the
        resource's ``auth`` requirements."""
        rule = spec.permissions.rule(operation)
        if rule is not None:
            return rule.needs_user
        requirements = self._requirements.get(spec.path)
        if requirements is None:
            requirements = self._requirements[spec.path] = self.auth.requirements_for(spec)
        return requirements.get(operation, True)

    async def caller(self, handler: tornado.web.RequestHandler) -> Caller:
        """Who the request comes from, with their roles (``Auth(roles=...)``, else the user
        data's ``roles``), for permission rules; asked once per request. The user must have
        been resolved (:meth:`authorize` or :meth:`resolve_user`) before."""
        known: Caller | None = getattr(handler, "_bzz_caller", None)
        user = handler.current_user
        if known is not None and known.user is user:
            return known
        if user is None:
            caller = ANONYMOUS
        else:
            found: Any = self.auth.roles(dict(user)) if self.auth.roles is not None else user.get("roles")
            if inspect.isawaitable(found):
                found = await found
            if isinstance(found, str):
                found = (found,)
            caller = Caller(user, frozenset(str(r) for r in found or ()))
        handler._bzz_caller = caller  # type: ignore[attr-defined]
        return caller

    # -- the hooks handlers call ---------------------------------------------------------

    async def authorize(self, handler: tornado.web.RequestHandler, spec: ResourceSpec, operation: str) -> None:
        """Resource handlers' check before any ``pre_*`` signal; sets ``handler.current_user``.

        Raises:
            HTTPError: 401 when the operation needs a user and there is none (or the token
                is invalid, expired or signed out); 403 for a forged cross-site write.
        """
        await self.resolve_user(handler, required=self.required(spec, operation))

    async def resolve_user(self, handler: tornado.web.RequestHandler, *, required: bool) -> dict[str, Any] | None:
        """The signed-in user (also set as ``handler.current_user``), or None when not required."""
        try:
            identity = await self.identify(handler)
        except BadCredentials as exc:
            if exc.via == "cookie":
                self.clear_cookie(handler)
            if required:
                raise HTTPError(401, "The session token is invalid or has expired; sign in again.",
                                headers=_WWW_AUTHENTICATE, log_message=f"auth refused: {exc.reason}") from None
            identity = None
        if identity is not None and identity.via == "cookie":
            forgery = self.forgery(handler)
            if forgery is not None:
                if required:
                    raise HTTPError(403, f"Cross-site request refused: {forgery}")
                identity = None  # a public operation runs, but not as the user
        if identity is None:
            handler.current_user = None
            if required:
                raise HTTPError(401, "Sign in first: this operation needs an authenticated user.",
                                headers=_WWW_AUTHENTICATE)
            return None
        if identity.via == "cookie":
            self.renew(handler, identity)
        user = dict(identity.session.user)
        handler.current_user = user
        return user

    async def still_signed_in(self, handler: tornado.web.RequestHandler, user: dict[str, Any]) -> bool:
        """Whether the request's token still stands for ``user`` (not signed out, not expired):
        what the change feeds ask of a long-lived subscription."""
        try:
            identity = await self.identify(handler)
        except BadCredentials:
            return False
        return identity is not None and identity.session.user.get("id") == user.get("id")

    async def identify(self, handler: tornado.web.RequestHandler) -> Identity | None:
        """Who the request's token says it is: the Bearer token wins over the cookie.

        Raises:
            BadCredentials: a token was presented but is invalid, expired or signed out.
        """
        token, via = None, "bearer"
        header = handler.request.headers.get("Authorization")
        if header:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
                if not token:
                    raise BadCredentials("empty Bearer token", via)
        if token is None:
            token, via = handler.get_cookie(self.auth.cookie_name), "cookie"
            if not token:
                return None
        try:
            session = self.auth.signer.verify(token)
        except InvalidToken as exc:
            raise BadCredentials(str(exc), via) from None
        now = time.time()
        if self.auth.max_session_age is not None and now - session.started_at > self.auth.max_session_age:
            raise BadCredentials("the session is older than max_session_age", via)
        if await self.revocations.is_revoked(session.session_id):
            raise BadCredentials("the session was signed out", via)
        return Identity(session, via, token)

    # -- cross-site request forgery ------------------------------------------------------

    def cross_site(self, handler: tornado.web.RequestHandler) -> str | None:
        """Why the browser says this request comes from another site, or None."""
        headers = handler.request.headers
        origin = headers.get("Origin")
        if origin is not None:
            origin = origin.strip().lower()
            if origin in self.auth.trusted_origins:
                return None
            cors = self.runtime.settings.cors  # pages the app lets send credentials are its own
            if cors is not None and cors.credentials and cors.allows(origin):
                return None
            own = f"{handler.request.protocol}://{handler.request.host}".lower()
            if origin == "null" or _origin_of(origin) != own:  # the scheme counts: http:// is another site
                return f"the Origin {origin[:100]!r} is not this API's (add it to trusted_origins if it is yours)"
            return None
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return f"the browser reports a {site.strip()[:20]} request"
        return None

    def forgery(self, handler: tornado.web.RequestHandler) -> str | None:
        """Why a cookie-authenticated request may be forged, or None (safe methods pass)."""
        if handler.request.method in SAFE_METHODS:
            return None
        reason = self.cross_site(handler)
        if reason is not None:
            return reason
        header = self.auth.csrf_header
        if header is not None and not handler.request.headers.get(header):
            return f"a cookie-authenticated {handler.request.method} must carry the {header} header"
        return None

    # -- cookies -------------------------------------------------------------------------

    def _cookie_options(self, handler: tornado.web.RequestHandler) -> dict[str, Any]:
        secure = self.auth.secure if self.auth.secure is not None else handler.request.protocol == "https"
        return {"path": self.auth.cookie_path, "domain": self.auth.cookie_domain, "httponly": True,
                "secure": secure, "samesite": "Lax"}

    def set_cookie(self, handler: tornado.web.RequestHandler, token: str) -> None:
        handler.set_cookie(self.auth.cookie_name, token, max_age=int(self.auth.lifetime),
                           **self._cookie_options(handler))
        # A per-user answer: no shared cache may keep it (Tornado has no public getter for this).
        if "Cache-Control" not in handler._headers:
            handler.set_header("Cache-Control", "private")

    def clear_cookie(self, handler: tornado.web.RequestHandler) -> None:
        handler.clear_cookie(self.auth.cookie_name, **self._cookie_options(handler))

    def renew(self, handler: tornado.web.RequestHandler, identity: Identity) -> None:
        """A fresh cookie for the same session: the lifetime counts from this request."""
        session = identity.session
        if session.issued_at == int(time.time()):
            token = identity.token  # issued this second: a new one would be the same bytes
        else:
            token, _ = self.auth.signer.issue(session.user, session_id=session.session_id,
                                              started_at=session.started_at)
        self.set_cookie(handler, token)

    # -- sign-in and sign-out ------------------------------------------------------------

    async def sign_in(self, handler: tornado.web.RequestHandler, provider_name: str, access_token: str) -> dict[str, Any]:
        """Verify ``access_token`` with the provider, fire the signals, set the cookie.

        Returns:
            The user data, with what ``authorized_user`` receivers added.
        Raises:
            HTTPError: 401 bad provider or token, 403 cross-site, 502/503/504 provider trouble.
        """
        forgery = self.cross_site(handler)
        if forgery is not None:
            raise HTTPError(403, f"Cross-site sign-in refused: {forgery}")
        provider = self.auth.providers.get(provider_name)
        if provider is None:
            return await self._refuse(handler, provider_name, f"unknown provider {provider_name[:50]!r}")
        if not _ACCESS_TOKEN.fullmatch(access_token):
            await self._refuse(handler, provider_name, "the access token is not printable ASCII of up to 4096 characters")
        try:
            # The provider's own timeout should fire first; this bounds custom providers too.
            user = await asyncio.wait_for(provider.authenticate(access_token), provider.timeout + 1.0)
        except ProviderError as exc:
            log.warning("sign-in with %s failed: %s", provider_name, _redact(str(exc), access_token))
            headers = {"Retry-After": "5"} if exc.status == 503 else None
            raise HTTPError(exc.status, exc.detail, headers=headers) from None
        except TimeoutError:
            log.warning("sign-in with %s failed: no answer in %g s", provider_name, provider.timeout + 1.0)
            raise HTTPError(504, "The identity provider did not answer in time.") from None
        except HTTPError:
            raise
        except Exception as exc:  # noqa: BLE001 (a provider's bug must not become a 500)
            # A provider's bug: log where it happened, with the access token blanked out.
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            log.error("provider %s raised an exception:\n%s", provider_name, _redact(text, access_token))
            raise HTTPError(502, "The identity provider gave an unusable answer.") from None
        if user is None:
            await self._refuse(handler, provider_name, "the provider does not accept the access token")
        if not isinstance(user, dict) or user.get("id") in (None, ""):
            log.error("provider %s returned %s instead of a dict with an 'id'", provider_name, type(user).__name__)
            raise HTTPError(502, "The identity provider gave an unusable answer.")
        user_data = {**user, "id": str(user["id"]), "email": user.get("email"), "name": user.get("name"),
                     "provider": provider_name}
        await send(self.signals.authorized_user, provider_name, user_data=user_data, handler=handler)
        if user_data.get("id") in (None, "") or user_data.get("provider") != provider_name:
            raise HTTPError(500, "Internal server error.", log_message="an authorized_user receiver removed the id "
                            "or changed the provider of the user data")
        try:
            token, session = self.auth.signer.issue(user_data)
        except ValueError as exc:  # roles that are no list of names: the provider's or a receiver's bug
            raise HTTPError(500, "Internal server error.", log_message=f"sign-in with {provider_name}: {exc}") from None
        self.set_cookie(handler, token)
        handler.current_user = dict(session.user)
        return user_data

    async def _refuse(self, handler: tornado.web.RequestHandler, provider_name: str, reason: str) -> NoReturn:
        await send_after_commit(self.signals.unauthorized_user, provider_name, handler=handler)
        raise HTTPError(401, "Sign-in failed: unknown provider or invalid access token.",
                        log_message=f"sign-in refused: {reason}")

    async def sign_out(self, handler: tornado.web.RequestHandler) -> None:
        """End the request's session for good (its id is revoked) and clear the cookie.

        Raises:
            HTTPError: 403 for a forged cross-site sign-out.
        """
        try:
            identity = await self.identify(handler)
        except BadCredentials:
            identity = None
        if identity is not None:
            if identity.via == "cookie":
                forgery = self.forgery(handler)
                if forgery is not None:
                    raise HTTPError(403, f"Cross-site request refused: {forgery}")
            # No token of this session can expire later than one lifetime from now.
            await self.revocations.revoke(identity.session.session_id, time.time() + self.auth.lifetime + 1)
        handler.current_user = None
        self.clear_cookie(handler)


def _origin_of(value: str) -> str:
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.netloc}"


def _redact(text: str, secret: str) -> str:
    """``text`` without ``secret``: for messages a custom provider may have built from the token.

    Real access tokens are long; blanking a 3-letter test token would garble every word.
    """
    return text.replace(secret, "[redacted]") if len(secret) >= 8 else text
