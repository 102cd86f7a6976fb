"""Binding an :class:`~bzzlite.auth.Auth` configuration to an app: its policy and its routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..routing import Route
from .handlers import MeHandler, SignInHandler, SignOutHandler
from .policy import AuthPolicy

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .config import Auth


def install(auth: Auth, runtime: Runtime) -> list[Route]:
    """Bind ``auth`` to an app: ``runtime.auth`` becomes its policy; returns the auth routes
    (``/auth/signin/``, ``/auth/signout/``, ``/auth/me/`` under ``auth.prefix``)."""
    policy = AuthPolicy(auth, runtime)
    runtime.auth = policy
    kwargs = {"runtime": runtime, "policy": policy}
    return [Route(f"{auth.prefix}/{name}", handler.ALLOWED, "auth", handler, kwargs)
            for name, handler in (("signin", SignInHandler), ("signout", SignOutHandler), ("me", MeHandler))]
