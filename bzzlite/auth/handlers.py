"""The auth routes (sign-in, sign-out, me) and ``@authenticated`` for your own handlers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.web

from ..errors import ConfigurationError, HTTPError, ValidationFailed
from ..handlers.base import PROBLEM_JSON, BaseHandler, problem
from ..http import jsoncodec as _json
from ..signals import send

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .policy import AuthPolicy

F = TypeVar("F", bound=Callable[..., Any])


class AuthHandler(BaseHandler):
    """What the auth routes share: the policy, and answers no cache keeps."""

    def initialize(self, runtime: Runtime, policy: AuthPolicy, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.policy = policy

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object: sign-in takes JSON only (a cross-site HTML form cannot send it)."""
        media = self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise HTTPError(415, "Send the sign-in as application/json.")
        if not self.body.strip():
            raise HTTPError(400, "The request body is empty; send a JSON object.")
        data = _json.loads(self.body)
        if not isinstance(data, dict):
            raise HTTPError(400, "Send a JSON object: {\"access_token\": ..., \"provider\": ...}.")
        return data


class SignInHandler(AuthHandler):
    """``POST /auth/signin/`` ``{"access_token", "provider"}`` → ``{"authenticated": true}`` + cookie."""

    ALLOWED = ("POST",)

    async def post(self) -> None:
        data = self.json_object()
        errors = [
            {"loc": [key], "msg": "Field required" if key not in data else "Input should be a valid string",
             "type": "missing" if key not in data else "string_type"}
            for key in ("access_token", "provider")
            if not isinstance(data.get(key), str)
        ]
        if errors:
            raise ValidationFailed(errors)
        user_data = await self.policy.sign_in(self, data["provider"], data["access_token"])
        self.write_json({"authenticated": True, "userData": user_data})


class SignOutHandler(AuthHandler):
    """``POST /auth/signout/`` → ``{"loggedOut": true}``; the session is revoked, the cookie cleared."""

    ALLOWED = ("POST",)

    async def post(self) -> None:
        await self.policy.sign_out(self)
        self.write_json({"loggedOut": True})


class MeHandler(AuthHandler):
    """``GET /auth/me/`` → who is signed in, with ``pre_get_user_details`` receivers' additions."""

    ALLOWED = ("GET",)

    async def get(self) -> None:
        user = await self.policy.resolve_user(self, required=False)
        if user is None:
            self.write_json({"authenticated": False})
            return
        user_data = dict(user)
        await send(self.runtime.signals.pre_get_user_details, user["provider"], user_data=user_data, handler=self)
        self.write_json({"authenticated": True, "userData": user_data})


def policy_of(handler: tornado.web.RequestHandler) -> AuthPolicy:
    """The auth policy of the app serving ``handler``."""
    runtime = getattr(handler, "runtime", None) or getattr(handler.application, "runtime", None)
    policy = getattr(runtime, "auth", None)
    if policy is None:
        raise ConfigurationError(
            f"@authenticated on {type(handler).__name__} needs an app built with App(auth=Auth(...))"
        )
    return policy  # type: ignore[no-any-return]


def authenticated(method: F) -> F:
    """Require a signed-in user for a method of your own Tornado handler.

    Without one the request gets 401 (403 for a forged cross-site write) as
    problem+json; with one, ``self.current_user`` is the user data dict.
    """

    @functools.wraps(method)
    async def wrapper(self: tornado.web.RequestHandler, *args: Any, **kwargs: Any) -> Any:
        try:
            await policy_of(self).resolve_user(self, required=True)
        except HTTPError as exc:
            if isinstance(self, BaseHandler):
                raise  # rendered by BaseHandler.write_error
            _write_problem(self, exc)
            return None
        result = method(self, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    return wrapper  # type: ignore[return-value]


def _write_problem(handler: tornado.web.RequestHandler, error: HTTPError) -> None:
    """Answer a plain Tornado handler's request with a problem+json body."""
    handler.set_status(error.status)
    for name, value in error.headers.items():
        handler.set_header(name, value)
    handler.set_header("Content-Type", PROBLEM_JSON)
    handler.finish(_json.dumps(problem(error.status, error.message)))
