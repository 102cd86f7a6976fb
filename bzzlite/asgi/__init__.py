"""Serve a bzzlite ``App`` under any ASGI server (uvicorn, hypercorn, granian, gunicorn).

    from bzzlite.asgi import ASGIAdapter
    asgi_app = ASGIAdapter(app)

``adapter`` turns each ASGI request into the Tornado request the app's handlers expect,
``connection`` carries one HTTP exchange, ``websocket`` the WebSocket change feed.
"""

from __future__ import annotations

from .adapter import ASGIAdapter

__all__ = ["ASGIAdapter"]
