"""The data file every stack serves: the shared schema, filled with deterministic records."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.servers.common import new_id

# bzzlite's own store creates exactly this table, and this index under this name (IF NOT EXISTS),
# so every stack serves the file with the same single index.
SCHEMA = (
    "CREATE TABLE item (id TEXT PRIMARY KEY, v INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX ix_item_category__id ON item (json_extract(doc,'$.category'), id)",
)
CATEGORIES = tuple(f"cat{n:02d}" for n in range(20))
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")
_DOC_BYTES = 200  # target size of one record's JSON


@dataclass(frozen=True)
class Dataset:
    """A pristine data file plus what the load scripts and answer checks need to know."""

    path: Path
    ids_file: Path  # one id per line, read by the GET-by-id Lua script
    first_id: str
    category_counts: dict[str, int]


def _record(rng: random.Random, n: int) -> dict[str, object]:
    """One `Item` whose JSON is about `_DOC_BYTES` long."""
    doc: dict[str, object] = {
        "name": f"item-{n:06d}",
        "category": rng.choice(CATEGORIES),
        "price": round(rng.uniform(1, 500), 2),
        "qty": rng.randrange(1000),
        "tags": rng.sample(_WORDS, 3),
        "description": "",
    }
    words: list[str] = []
    while len(orjson.dumps(doc)) < _DOC_BYTES:
        words.append(rng.choice(_WORDS))
        doc["description"] = " ".join(words)
    return doc


def build_dataset(directory: Path, records: int, seed: int = 1) -> Dataset:
    """Create `item.db` in `directory` with `records` rows, checkpointed so one file holds it all."""
    rng = random.Random(seed)
    rows = [(new_id(), 1, _record(rng, n)) for n in range(records)]
    path = directory / "item.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN")
        for statement in SCHEMA:
            db.execute(statement)
        db.executemany(
            "INSERT INTO item (id, v, doc) VALUES (?, ?, ?)",
            ((i, v, orjson.dumps(doc).decode()) for i, v, doc in rows),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    ids_file = directory / "ids.txt"
    ids_file.write_text("".join(f"{i}\n" for i, _, _ in rows))
    counts = Counter(str(doc["category"]) for _, _, doc in rows)
    return Dataset(path, ids_file, rows[0][0], {c: counts[c] for c in CATEGORIES})
