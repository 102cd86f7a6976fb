"""The OpenAPI 3.1 document of an app, generated from its declarations: no I/O, no Tornado.

    from bzzlite.openapi import build_document
    document = build_document(app)
"""

from __future__ import annotations

from .document import build, build_document

__all__ = ["build", "build_document"]
