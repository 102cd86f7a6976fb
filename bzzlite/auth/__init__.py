"""Authentication (bzz's AuthHive): identity providers, signed token cookies, per-operation rules.

    from bzzlite.auth import Auth, GoogleProvider
    app = App(auth=Auth(secret=..., providers=[GoogleProvider()], require={"list": False}))
"""

from __future__ import annotations

from .config import Auth
from .handlers import authenticated
from .policy import AuthPolicy
from .providers import (
    AuthProvider,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    HTTPClient,
    HTTPReply,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    TornadoHTTPClient,
    UserInfoProvider,
)
from .revocation import (
    MemoryRevocations,
    MongoRevocations,
    Revocations,
    SQLiteRevocations,
    StoreRevocations,
)
from .tokens import InvalidToken, TokenSigner

__all__ = [
    "Auth",
    "AuthPolicy",
    "AuthProvider",
    "FacebookProvider",
    "GitHubProvider",
    "GoogleProvider",
    "HTTPClient",
    "HTTPReply",
    "InvalidToken",
    "MemoryRevocations",
    "MongoRevocations",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "Revocations",
    "SQLiteRevocations",
    "StoreRevocations",
    "TokenSigner",
    "TornadoHTTPClient",
    "UserInfoProvider",
    "authenticated",
]
