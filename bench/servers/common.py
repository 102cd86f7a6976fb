"""What both hand-written baselines share: the `Item` model, id generation and the SQL.

Keeping this in one place makes the baselines do identical database work, so the
difference between them (and against bzzlite) is the web framework alone.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict


class Item(BaseModel):
    """The benchmark's document; a create sends only the three required fields."""

    model_config = ConfigDict(extra="forbid")  # bzzlite rejects unknown fields too

    name: str
    category: str
    price: float
    qty: int = 0
    tags: list[str] = []
    description: str = ""


_RANDOM = os.urandom(5)
_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_id() -> str:
    """An ObjectId-style id: 4-byte seconds, 5 random bytes, 3-byte counter, as 24 hex chars."""
    seconds = int(time.time()).to_bytes(4, "big")
    counter = (next(_COUNTER) & 0xFFFFFF).to_bytes(3, "big")
    return (seconds + _RANDOM + counter).hex()


def connect(path: str) -> sqlite3.Connection:
    """Open the data file as every stack does: autocommit, WAL, synchronous=NORMAL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


_CATEGORY = "json_extract(doc,'$.category')"  # must match the expression index


class ItemStore:
    """The reads and writes of the three workloads, run synchronously on one connection."""

    def __init__(self, path: str) -> None:
        self._db = connect(path)

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The document with this id as `{"id": ..., **fields}`, or None."""
        row = self._db.execute("SELECT doc FROM item WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else {"id": item_id, **orjson.loads(row[0])}

    def create(self, item: Item) -> dict[str, Any]:
        """Insert a validated item with a fresh id at version 1; return the stored document."""
        item_id = new_id()
        fields = item.model_dump()
        self._db.execute(
            "INSERT INTO item (id, v, doc) VALUES (?, 1, ?)",
            (item_id, orjson.dumps(fields).decode()),
        )
        return {"id": item_id, **fields}

    def page(self, category: str | None, page: int, per_page: int) -> dict[str, Any]:
        """One page in id order, optionally filtered on category, with the total match count."""
        where, params = (f"WHERE {_CATEGORY} = ?", (category,)) if category is not None else ("", ())
        rows = self._db.execute(
            f"SELECT id, doc FROM item {where} ORDER BY id LIMIT ? OFFSET ?",
            (*params, per_page, (page - 1) * per_page),
        ).fetchall()
        (total,) = self._db.execute(f"SELECT count(*) FROM item {where}", params).fetchone()
        items = [{"id": item_id, **orjson.loads(doc)} for item_id, doc in rows]
        return {"items": items, "total": total, "page": page, "per_page": per_page}


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line both baselines take: `--port P --db PATH [--host H]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="path of the SQLite data file")
    return parser.parse_args(argv)
