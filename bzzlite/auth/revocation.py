"""Where sign-out is remembered: revoked session ids, kept until their tokens expire.

Why session ids and not token ids: a token is renewed (re-issued with a new expiry) on
each authenticated request, so one browser session goes through many tokens, and an
older one stays valid until its own ``exp``. Every token of a session carries the same
``sid``; revoking the ``sid`` ends all of them at once. No token of that session can
outlive ``sign-out time + lifetime``, so the entry can be forgotten then, which keeps
the list as small as the number of sign-outs in one token lifetime.

Why not a per-user session version: that would sign the user out everywhere (every
browser and device) when they sign out of one; revoking one session is what a user
who clicks "sign out" expects.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Protocol


class Revocations(Protocol):
    """Storage of revoked session ids. Implement it to share sign-outs between servers."""

    async def revoke(self, session_id: str, until: float) -> None:
        """Refuse ``session_id`` until the Unix time ``until``."""

    async def is_revoked(self, session_id: str) -> bool:
        """Whether ``session_id`` was signed out (and its tokens may still be unexpired)."""


class MemoryRevocations:
    """Revoked sessions in this process's memory: right for one server process.

    With several processes (``--workers N``) or servers, a sign-out handled by one must
    be seen by all: use :class:`SQLiteRevocations` on a shared file, or your own store.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    async def revoke(self, session_id: str, until: float) -> None:
        now = time.time()
        if len(self._until) > 1024:  # forget sessions whose every token has expired
            self._until = {sid: t for sid, t in self._until.items() if t > now}
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))

    async def is_revoked(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > time.time()

    def __len__(self) -> int:
        return len(self._until)


class SQLiteRevocations:
    """Revoked sessions in an SQLite file, shared by every process that opens it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS revoked_sessions (sid TEXT PRIMARY KEY, until REAL NOT NULL)")
            self._conn = conn
        return self._conn

    def _revoke(self, session_id: str, until: float) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("DELETE FROM revoked_sessions WHERE until <= ?", (time.time(),))
            conn.execute(
                "INSERT INTO revoked_sessions (sid, until) VALUES (?, ?) "
                "ON CONFLICT(sid) DO UPDATE SET until = max(until, excluded.until)",
                (session_id, until),
            )

    def _is_revoked(self, session_id: str) -> bool:
        with self._lock:
            row = self._connection().execute(
                "SELECT 1 FROM revoked_sessions WHERE sid = ? AND until > ?", (session_id, time.time())
            ).fetchone()
        return row is not None

    async def revoke(self, session_id: str, until: float) -> None:
        await asyncio.to_thread(self._revoke, session_id, until)

    async def is_revoked(self, session_id: str) -> bool:
        return await asyncio.to_thread(self._is_revoked, session_id)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
