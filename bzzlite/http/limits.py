"""Limits both HTTP servers (bzzlite's own and Tornado's) keep."""

from __future__ import annotations

#: How long a stopping server (either) waits for a request on a connection it still has open:
#: the first one of a connection accepted just before the stop (its bytes may be on their way or
#: already in the socket, unread), the next one on an idle keep-alive connection (its client may
#: be sending it now). Such a request is answered with ``Connection: close``; a connection still
#: idle after this long is closed as :data:`LINGER` says.
REQUEST_GRACE = 1.0

#: How long a server that closes a connection between requests keeps reading (and dropping)
#: what the client still sends. It shuts down its side first, so the client reads a clean end of
#: stream (FIN), which HTTP clients answer by retrying an idempotent request (RFC 9112 9.3.1);
#: closing a socket with unread bytes in its buffer would send a reset instead, which they do not.
LINGER = 2.0
