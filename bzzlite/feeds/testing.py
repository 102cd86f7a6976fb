"""A blocking Server-Sent Events reader for tests of change feeds.

    from bzzlite.testing import serve
    from bzzlite.feeds.testing import EventStream

    with serve(app) as client, EventStream(client, "/todo_item?done=false") as feed:
        feed.wait_ready()
        client.post("/todo_item", json={"title": "x"})
        event = feed.next()
        assert event.type == "created" and event.data["doc"]["title"] == "x"
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any, Self


@dataclass
class SSEEvent:
    """One event: its ``event:`` type (``message`` when absent), ``id:`` and decoded ``data``."""

    type: str
    id: str | None
    data: Any
    raw: str = ""


@dataclass
class EventStream:
    """Opens ``GET path`` with ``Accept: text/event-stream`` on a raw socket and reads events.

    ``client`` is a :class:`bzzlite.testing.Client` (or anything with ``host`` and ``port``).
    ``receive_buffer`` shrinks the socket's receive buffer (to test slow consumers).
    """

    client: Any
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    receive_buffer: int | None = None
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    last_id: str | None = None
    comments: list[str] = field(default_factory=list)
    ended: bool = False

    def __post_init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.settimeout(self.timeout)
        sock.connect((self.client.host, self.client.port))
        self.sock = sock
        self._raw = b""  # bytes received, not yet de-chunked
        self._text = ""  # de-chunked event-stream text not yet parsed
        self._chunked = False
        headers = {"Host": f"{self.client.host}:{self.client.port}", "Accept": "text/event-stream", **self.headers}
        request = f"GET {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(request.encode("latin-1"))
        self._read_head()

    # -- plumbing ------------------------------------------------------------------------

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self._raw += data
        return True

    def _read_head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            if not self._recv():
                raise ConnectionError("the server closed the connection before answering")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        self._chunked = self.response_headers.get("transfer-encoding", "").lower() == "chunked"
        if self.status != 200 or "text/event-stream" not in self.response_headers.get("content-type", ""):
            length = int(self.response_headers.get("content-length", "0") or 0)
            while len(self._raw) < length and self._recv():
                pass
            self.body = self._raw[:length]
            self.ended = True

    def _dechunk(self) -> bool:
        """Move complete chunks from the raw buffer to the text buffer; False at the end."""
        if not self._chunked:
            self._text += self._raw.decode("utf-8")
            self._raw = b""
            return True
        while b"\r\n" in self._raw:
            size_line, rest = self._raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self._raw = b""
                return False
            if len(rest) < size + 2:
                break
            self._text += rest[:size].decode("utf-8")
            self._raw = rest[size + 2:]
        return True

    def _next_block(self) -> str | None:
        while True:
            if "\n\n" in self._text:
                block, self._text = self._text.split("\n\n", 1)
                return block
            if self.ended:
                return None
            if self._dechunk() and "\n\n" not in self._text and not self._recv():
                self.ended = True

    # -- reading events ------------------------------------------------------------------

    def next(self, *, quiet: bool = False) -> SSEEvent | None:
        """The next event; None when the server ended the stream. Blocks without data
        (comments, id-only heartbeats) are recorded and skipped, or returned as events of
        type ``""`` with ``quiet=True``. Raises ``socket.timeout`` after ``timeout``."""
        while True:
            block = self._next_block()
            if block is None:
                return None
            kind, data, event_id = "message", [], None
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
            if event_id is not None:
                self.last_id = event_id
            if data:
                text = "\n".join(data)
                try:
                    decoded = json.loads(text)
                except ValueError:
                    decoded = text
                return SSEEvent(kind, event_id, decoded, block)
            if quiet:
                return SSEEvent("", event_id, None, block)

    def wait_ready(self) -> SSEEvent:
        """Read up to the ``ready`` event (after any replay); returns it."""
        while True:
            event = self.next()
            if event is None:
                raise ConnectionError("the stream ended before it was ready")
            if event.type == "ready":
                return event

    def take(self, count: int) -> list[SSEEvent]:
        """The next ``count`` events."""
        events: list[SSEEvent] = []
        for _ in range(count):
            event = self.next()
            if event is None:
                raise ConnectionError(f"the stream ended after {len(events)} of {count} events")
            events.append(event)
        return events

    def rest(self) -> list[SSEEvent]:
        """Every event until the server ends the stream."""
        events: list[SSEEvent] = []
        while (event := self.next()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
