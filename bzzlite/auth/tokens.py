"""Signed session tokens: PyJWT with the algorithm pinned to HS256.

A token carries only who the user is (``sub``, ``name``, ``email``, ``provider``, and
``roles`` when the user data has them: permission rules read them), when it was issued and
expires (``iat``, ``exp``), and the session it belongs to (``sid``, which sign-out revokes).
Never the provider's access token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from ..errors import ConfigurationError

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
MAX_TOKEN_LENGTH = 4096  # a token is a few hundred bytes; anything longer is not ours
_CACHE_SIZE = 4096  # verified tokens remembered, so a busy client's token is checked once
_REQUIRED_CLAIMS = ("sub", "provider", "sid", "iat", "exp")


class InvalidToken(Exception):
    """The token is malformed, forged, of another algorithm, or expired.

    The message says which, for the log; it never contains the token itself.
    """


@dataclass(frozen=True, slots=True)
class Session:
    """What a valid token says: the user, the session id and the token's expiry."""

    user: Mapping[str, Any]  # {"id", "email", "name", "provider"}, read-only (sessions are cached)
    session_id: str
    issued_at: float
    expires_at: float
    started_at: float  # when the user signed in (renewals keep it)


class TokenSigner:
    """Issues and verifies the app's session tokens with one secret."""

    def __init__(self, secret: str | bytes, lifetime: float) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the auth secret must be at least {MIN_SECRET_BYTES} bytes long; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and pass it as "
                "Auth(secret=...) or the BZZLITE_AUTH_SECRET environment variable."
            )
        if lifetime <= 0:
            raise ConfigurationError("the token lifetime must be a positive number of seconds")
        self._key = key
        self.lifetime = float(lifetime)
        # token -> its Session, for tokens whose signature and claims verified. Only expiry
        # depends on the time, so a hit is re-checked against it and nothing else.
        self._verified: dict[str, Session] = {}

    def __repr__(self) -> str:
        return f"TokenSigner(lifetime={self.lifetime:g})"  # never the key

    def issue(self, user: Mapping[str, Any], *, session_id: str | None = None,
              started_at: float | None = None, now: float | None = None) -> tuple[str, Session]:
        """A new token for ``user``; pass the ``session_id`` of the token being renewed."""
        now = time.time() if now is None else now
        kept = {k: user.get(k) for k in ("id", "email", "name", "provider")}
        roles = _roles(user.get("roles"))
        if roles is not None:
            kept["roles"] = roles
        session = Session(
            user=MappingProxyType(kept),
            session_id=session_id or secrets.token_urlsafe(16),
            issued_at=int(now),
            expires_at=int(now + self.lifetime),
            started_at=int(started_at if started_at is not None else now),
        )
        claims = {
            "sub": str(user["id"]),
            "name": user.get("name"),
            "email": user.get("email"),
            "provider": user["provider"],
            "sid": session.session_id,
            "iat": session.issued_at,
            "exp": session.expires_at,
            "sat": session.started_at,
        }
        if roles is not None:
            claims["roles"] = list(roles)
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), session

    def verify(self, token: str) -> Session:
        """The session a token stands for.

        Raises:
            InvalidToken: anything but an unexpired token this app signed with HS256.
        """
        session = self._verified.get(token)
        if session is not None:
            if session.expires_at <= time.time():
                self._verified.pop(token, None)
                raise InvalidToken("the token has expired")
            return session
        session = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            try:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            except (RuntimeError, StopIteration, KeyError):  # another thread got there first
                self._verified.clear()
        self._verified[token] = session
        return session

    def _verify(self, token: str) -> Session:
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("not a token of this app")
        try:
            # ``algorithms`` pins the verification to HS256: "none", HS512, RS256... are refused
            # whatever the token's header says.
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                options={"require": list(_REQUIRED_CLAIMS)})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken("the token is not signed with HS256") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(f"the token is malformed ({type(exc).__name__})") from None
        for name in ("sub", "provider", "sid"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken(f"the token's {name!r} claim is not a string")
        for name in ("name", "email"):
            if claims.get(name) is not None and not isinstance(claims[name], str):
                raise InvalidToken(f"the token's {name!r} claim is not a string")
        started = claims.get("sat", claims["iat"])
        if not isinstance(started, (int, float)):
            raise InvalidToken("the token's 'sat' claim is not a number")
        user = {"id": claims["sub"], "email": claims.get("email"), "name": claims.get("name"),
                "provider": claims["provider"]}
        if "roles" in claims:
            roles = claims["roles"]
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise InvalidToken("the token's 'roles' claim is not a list of strings")
            user["roles"] = tuple(roles)
        return Session(user=MappingProxyType(user), session_id=claims["sid"], issued_at=claims["iat"],
                       expires_at=claims["exp"], started_at=started)


MAX_ROLES = 64  # roles a token carries at most (a token is sent with every request)


def _roles(value: Any) -> tuple[str, ...] | None:
    """The user data's ``roles`` as a token keeps them: a tuple of names, or None.

    Raises:
        ValueError: roles that are not a list of at most MAX_ROLES names (a provider's or a
            receiver's mistake, found at sign-in).
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"the user data's 'roles' must be a list of role names, not {type(value).__name__}")
    roles = tuple(sorted({str(r) for r in value}))
    if len(roles) > MAX_ROLES:
        raise ValueError(f"the user data holds {len(roles)} roles; a token carries at most {MAX_ROLES}")
    return roles
