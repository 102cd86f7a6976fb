"""``python -m bzzlite`` and the ``bzzlite`` command: serve, routes, openapi.

``main`` parses the command line and runs a command; ``process`` starts, watches and
replaces worker processes (``--workers``, ``--reload``).
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
