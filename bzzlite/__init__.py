"""bzzlite: a declarative REST microframework on Tornado."""

from __future__ import annotations

from . import signals
from .app import App
from .documents import Documents, Found, etag_of
from .errors import (
    BzzliteError,
    ConfigurationError,
    DuplicateKey,
    HTTPError,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from .handlers.base import BaseHandler as Handler
from .models.nested import Ref
from .models.schema import ReadOnly, Unique, WriteOnly
from .registry import Registry, action, default_registry, mock, on, resource, route

__all__ = [
    "App",
    "BzzliteError",
    "ConfigurationError",
    "Documents",
    "DuplicateKey",
    "Found",
    "HTTPError",
    "Handler",
    "NotFound",
    "ReadOnly",
    "Ref",
    "Registry",
    "Unique",
    "ValidationFailed",
    "VersionConflict",
    "WriteOnly",
    "action",
    "default_registry",
    "etag_of",
    "mock",
    "on",
    "resource",
    "route",
    "signals",
]
__version__ = "0.1.0"
