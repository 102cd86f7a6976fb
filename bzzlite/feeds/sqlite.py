"""The SQLite journal: a table filled by triggers, in the same transaction as each write.

Why triggers rather than a call from the request handlers: the journal row commits
atomically with the write it records (no change is lost between the two, and none is
journaled for a write that rolled back); ids follow commit order even with several
worker processes writing the same file (SQLite serializes write transactions); every
write path is covered, including bulk inserts, nested routes and other programs
writing the file; and the cost is one row insert inside a transaction the write opens
anyway. Readers poll ``seq > last`` (an index range on the primary key) every few
milliseconds, and only while someone subscribes.

The journal keeps the latest ``size`` changes (trimmed in batches by another trigger).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import StoreUnavailable
from ..stores.base import table_name
from ..stores.sqlite import immediate
from .events import Change
from .journal import Journal, TooOld

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..stores.sqlite import SQLiteStore

log = logging.getLogger("bzzlite.feeds")

TABLE = "_bzzlite_journal"
_TRIM_EVERY = 64  # the trim trigger runs on one insert in this many
_BATCH = 1000
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def trigger_sql(spec: ResourceSpec) -> dict[str, str]:
    """The three triggers that journal one resource table: name -> CREATE statement."""
    name = table_name(spec)
    table, collection = _q(name), _literal(spec.path)
    insert = f"INSERT INTO {TABLE} (collection, op, doc_id, doc, old, at) VALUES"
    # An update that keeps the version is no user's change: `bzzlite migrate` writing a document in
    # its model's current form (what is served stays the same), or the store filling a new column.
    bodies = {
        "created": ("INSERT", f"{insert} ({collection}, 'created', NEW.id, NEW.doc, NULL, {_NOW})"),
        "updated": ("UPDATE", f"{insert} ({collection}, 'updated', NEW.id, NEW.doc, OLD.doc, {_NOW})"),
        "deleted": ("DELETE", f"{insert} ({collection}, 'deleted', OLD.id, OLD.doc, NULL, {_NOW})"),
    }
    when = {"created": "", "updated": " WHEN NEW.v != OLD.v", "deleted": ""}
    statements = {}
    for op, (event, body) in bodies.items():
        trigger = f"{TABLE}_{name}_{op}"
        statements[trigger] = f"CREATE TRIGGER {_q(trigger)} AFTER {event} ON {table}{when[op]} BEGIN {body}; END"
    return statements


def trim_sql(size: int) -> str:
    return (
        f"CREATE TRIGGER {_q(TABLE + '_trim')} AFTER INSERT ON {TABLE} WHEN NEW.seq % {_TRIM_EVERY} = 0 "
        f"BEGIN DELETE FROM {TABLE} WHERE seq <= NEW.seq - {int(size)}; END"
    )


class SQLiteJournal(Journal):
    """The journal table of an :class:`~bzzlite.stores.sqlite.SQLiteStore`'s file."""

    def __init__(self, store: SQLiteStore, *, size: int, poll: float) -> None:
        self.store = store
        self.size = size
        self.poll = poll

    def _conn(self) -> sqlite3.Connection:
        if self.store.conn is None:
            raise StoreUnavailable("the store is not open")
        return self.store.conn

    async def attach(self, specs: Sequence[ResourceSpec]) -> None:
        """Create the table and (re)create triggers whose text differs from what is wanted,
        so workers opening the same file with the same settings leave the schema alone."""
        conn = self._conn()
        wanted = {f"{TABLE}_trim": trim_sql(self.size)}
        for spec in specs:
            wanted.update(trigger_sql(spec))
        try:
            # seq is the rowid, max(seq) + 1 on insert: the trim trigger never deletes the newest
            # row, so a seq is never reused. Not AUTOINCREMENT, which makes every write update
            # sqlite_sequence too (one more page per commit: ~5 µs of a create, bench/README.md).
            # A file journaled by an older bzzlite keeps its AUTOINCREMENT table; both work.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (seq INTEGER PRIMARY KEY, "
                "collection TEXT NOT NULL, op TEXT NOT NULL, doc_id TEXT NOT NULL, doc TEXT NOT NULL, "
                "old TEXT, at TEXT NOT NULL)"
            )
            present = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
            stale = {name: sql for name, sql in wanted.items() if present.get(name) != sql}
            if stale:
                with immediate(conn):
                    for name, sql in stale.items():
                        conn.execute(f"DROP TRIGGER IF EXISTS {_q(name)}")
                        conn.execute(sql)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot create the change journal: {exc}") from exc

    def _bounds(self) -> tuple[int | None, int]:
        low, high = self._conn().execute(f"SELECT min(seq), max(seq) FROM {TABLE}").fetchone()
        return low, high or 0

    async def head(self) -> int:
        try:
            return self._bounds()[1]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite error: {exc}") from exc

    def _read(self, after: int, limit: int, collection: str | None = None) -> list[Change]:
        columns = f"SELECT seq, collection, op, doc_id, doc, old, at FROM {TABLE} WHERE seq > ?"
        if collection is None:
            rows = self._conn().execute(f"{columns} ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        else:
            rows = self._conn().execute(f"{columns} AND collection = ? ORDER BY seq LIMIT ?",
                                        (after, collection, limit)).fetchall()
        return [
            Change(seq, collection, op, doc_id, orjson.loads(doc), orjson.loads(old) if old else None, at)
            for seq, collection, op, doc_id, doc, old, at in rows
        ]

    async def replay(self, after: int, limit: int, collection: str | None = None) -> list[Change]:
        try:
            low, high = self._bounds()
            if after > high or (low is not None and after < low - 1) or (low is None and after != high):
                raise TooOld(after)
            return self._read(after, limit, collection)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite error: {exc}") from exc

    async def follow(self, after: int) -> AsyncIterator[list[Change]]:  # type: ignore[override]
        position = after
        failures = 0
        while True:
            try:
                batch = self._read(position, _BATCH)
                failures = 0
            except (sqlite3.Error, StoreUnavailable) as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot read the change journal (%s); retrying", exc)
                await asyncio.sleep(min(1.0, self.poll * 2**failures))
                continue
            if batch:
                position = batch[-1].seq
                yield batch
                if len(batch) == _BATCH:
                    continue  # more are waiting: read on without sleeping
            await asyncio.sleep(self.poll)


def rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every journal row, oldest first (for tests and debugging)."""
    return conn.execute(f"SELECT seq, collection, op, doc_id FROM {TABLE} ORDER BY seq").fetchall()
