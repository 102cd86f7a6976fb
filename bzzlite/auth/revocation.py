"""Where sign-out is remembered: revoked session ids, kept until their tokens expire.

Why session ids and not token ids: a token is renewed (re-issued with a new expiry) on
each authenticated request, so one browser session goes through many tokens, and an
older one stays valid until its own ``exp``. Every token of a session carries the same
``sid``; revoking the ``sid`` ends all of them at once. No token of that session can
outlive ``sign-out time + lifetime``, so the entry can be forgotten then, which keeps
the list as small as the number of sign-outs in one token lifetime.

Where: by default in the app's own store (:class:`StoreRevocations`), so that a sign-out
handled by one worker or machine is seen by every other one serving the same data: a table
beside the data in SQLite, a collection with a TTL index in MongoDB. Memory is right only
for one process (tests, ``sqlite:///:memory:``).

Why not a per-user session version: that would sign the user out everywhere (every
browser and device) when they sign out of one; revoking one session is what a user
who clicks "sign out" expects.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StoreUnavailable

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..stores import Store

#: Where the default revocations live in the app's store (a name no resource can take).
TABLE = "_bzzlite_revoked_sessions"


class Revocations(Protocol):
    """Storage of revoked session ids. Implement it to share sign-outs between servers."""

    async def revoke(self, session_id: str, until: float) -> None:
        """Refuse ``session_id`` until the Unix time ``until``."""

    async def is_revoked(self, session_id: str) -> bool:
        """Whether ``session_id`` was signed out (and its tokens may still be unexpired)."""


class MemoryRevocations:
    """Revoked sessions in this process's memory: right for one server process (tests).

    With several processes (``--workers N``) or servers, a sign-out handled by one must
    be seen by all: keep the default (:class:`StoreRevocations`) or use a shared store.
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

    def __init__(self, path: str, table: str = "revoked_sessions") -> None:
        self.path = path
        self.table = '"' + table.replace('"', '""') + '"'
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (sid TEXT PRIMARY KEY, until REAL NOT NULL)")
            self._conn = conn
        return self._conn

    def _revoke(self, session_id: str, until: float) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute(f"DELETE FROM {self.table} WHERE until <= ?", (time.time(),))
            conn.execute(
                f"INSERT INTO {self.table} (sid, until) VALUES (?, ?) "
                "ON CONFLICT(sid) DO UPDATE SET until = max(until, excluded.until)",
                (session_id, until),
            )

    def _is_revoked(self, session_id: str) -> bool:
        with self._lock:
            row = self._connection().execute(
                f"SELECT 1 FROM {self.table} WHERE sid = ? AND until > ?", (session_id, time.time())
            ).fetchone()
        return row is not None

    async def revoke(self, session_id: str, until: float) -> None:
        try:
            await asyncio.to_thread(self._revoke, session_id, until)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot record the sign-out: {exc}") from exc

    async def is_revoked(self, session_id: str) -> bool:
        # A primary-key read under WAL never waits for writers: a few microseconds, less than
        # a hop to a thread, on every authenticated request.
        try:
            return self._is_revoked(session_id)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot check for a sign-out: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class MongoRevocations:
    """Revoked sessions in a MongoDB collection; a TTL index removes them once expired."""

    def __init__(self, database: Any, collection: str = TABLE) -> None:
        self.collection = database[collection]
        self._indexed = False

    async def revoke(self, session_id: str, until: float) -> None:
        from pymongo.errors import PyMongoError

        expires = datetime.datetime.fromtimestamp(until, datetime.UTC)
        try:
            if not self._indexed:
                await self.collection.create_index("expires", expireAfterSeconds=0)
                self._indexed = True
            await self.collection.update_one(
                {"_id": session_id}, {"$max": {"until": until, "expires": expires}}, upsert=True
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"cannot record the sign-out: {exc}") from exc

    async def is_revoked(self, session_id: str) -> bool:
        from pymongo.errors import PyMongoError

        try:
            found = await self.collection.find_one({"_id": session_id}, {"until": 1})
        except PyMongoError as exc:
            raise StoreUnavailable(f"cannot check for a sign-out: {exc}") from exc
        # Compared here, not in the query: the TTL monitor runs only once a minute.
        return found is not None and float(found.get("until", 0)) > time.time()


class StoreRevocations:
    """The default: revoked sessions in the app's own store, seen by every worker and machine
    that serves the same data (``--db`` included, since it is resolved on first use)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._backend: Revocations | None = None
        self._store: Store | None = None

    async def backend(self) -> Revocations:
        store = await self.runtime.ready_store()
        if self._backend is None or self._store is not store:
            self._backend, self._store = revocations_in(store), store
        return self._backend

    async def revoke(self, session_id: str, until: float) -> None:
        await (await self.backend()).revoke(session_id, until)

    async def is_revoked(self, session_id: str) -> bool:
        return await (await self.backend()).is_revoked(session_id)


def revocations_in(store: Store) -> Revocations:
    """Revocations kept beside ``store``'s data: memory only for an in-memory SQLite database."""
    from ..stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return MemoryRevocations() if store.path == ":memory:" else SQLiteRevocations(store.path, TABLE)
    database = getattr(store, "db", None)  # the MongoDB store's database (its driver's object)
    if database is not None:
        return MongoRevocations(database)
    return MemoryRevocations()
