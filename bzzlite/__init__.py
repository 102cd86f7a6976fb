"""bzzlite: a declarative REST microframework on Tornado."""

from __future__ import annotations

from . import signals
from .app import App
from .errors import BzzliteError, ConfigurationError, HTTPError
from .nested import Ref
from .registry import Registry, default_registry, mock, on, resource
from .schema import Unique

__all__ = [
    "App",
    "BzzliteError",
    "ConfigurationError",
    "HTTPError",
    "Ref",
    "Registry",
    "Unique",
    "default_registry",
    "mock",
    "on",
    "resource",
    "signals",
]
__version__ = "0.1.0"
