"""Limits both HTTP servers (bzzlite's own and Tornado's) keep."""

from __future__ import annotations

#: How long a stopping server (either) waits for the first request of a connection it accepted
#: just before it stopped (its bytes may be on their way or already in the socket, unread).
FIRST_REQUEST_GRACE = 1.0
