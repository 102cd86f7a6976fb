"""The embedded store: one SQLite file, one table of JSON documents per resource.

Each table is ``(id TEXT PRIMARY KEY, v INTEGER, doc TEXT)``; queries compile to
``json_extract`` expressions over ``doc`` with bound parameters, and unique and
declared indexes are expression indexes on the same expressions.

Where the work runs (a file database, in WAL mode): on the event loop's thread whenever it is
short, in a thread when it would keep the loop waiting. Every hop to a thread costs a wake-up
each way and two GIL hand-offs, and with a free core beside the loop, the thread and the loop
contend for the GIL: unpinned, that doubled the CPU of a list or a create (bench/README.md,
"Fast as deployed"). So:

- reads of one document by id on the loop's own connection: an index lookup of a few
  microseconds;
- list queries on the loop's connection too, for at most :data:`READ_SLICE_STEPS` steps of
  SQLite's virtual machine (about a millisecond): one that does more is stopped and run again
  on a small pool of read connections in threads
  (:mod:`._sqlite_threads`), at a lower CPU priority and bounded by the query budget, so a slow
  query never stalls other requests;
- writes on one writer connection: the writes of one turn of the loop together, at the end of
  the turn, in one transaction (a savepoint each, so one that fails is undone alone) with one
  commit: pages that several writes change (the table's last leaf, the journal's) go to the WAL
  once, not once per write. The batch runs on the loop when the writer's thread is idle and the
  file's write lock is free (tens of microseconds; with ``synchronous=normal``, a commit waits
  for no disk), in the writer's thread otherwise, so a batch waiting for another worker
  process's lock, or for the disk (``synchronous=full``), does not stall the loop either. The
  writer checkpoints nothing itself: a reader thread copies the WAL back into the file every
  :data:`CHECKPOINT_EVERY` writes, off the loop.

WAL lets the readers run beside the writer and beside other worker processes; updates
and deletes are single conditional statements (``... AND v = ?``), so they stay correct
whichever connection or process read the version. An in-memory database is one
connection, so there everything runs on the loop, bounded by a progress handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

import orjson

from ..errors import (
    ConfigurationError,
    ConstraintBroken,
    DuplicateKey,
    NotFound,
    QueryTooComplex,
    StoreUnavailable,
    VersionConflict,
)
from ..models.migrations import MARK
from ..query import Query, get_path
from ._sqlite_threads import ConnectionPool, Overran, run_inline, run_slice
from .base import Page, Record, Rewrite, Rewritten, Store, Write, table_name
from .sqlite_query import compile_conditions, json_expr, keyset_parts, order_by, pinned_values, quote

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

T = TypeVar("T")
READERS = 4  # read connections (and threads) per process: slow queries beyond this many wait their turn
#: SQLite's page cache of each pooled connection (the writer's, the readers'), in KiB. SQLite's
#: default is 2 MiB per connection; five of them cache the same file the operating system
#: already holds, and under writes they fill over a minute (bench --mixed: +6 MiB of RSS). The
#: connection on the loop, which answers reads by id, keeps the default.
POOL_CACHE_KIB = 256
#: How long a write waits for another process's (as SQLite's busy_timeout), and how often it
#: looks: after BUSY_RETRY, then twice as long each time up to BUSY_RETRY_MAX (a long write
#: elsewhere is not polled 20,000 times a second).
BUSY_TIMEOUT = 5.0
BUSY_RETRY = 0.00005
BUSY_RETRY_MAX = 0.002
READER_NICE = 10  # the readers' CPU priority below the loop's (see ConnectionPool)
#: How much a list query may do on the event loop before it is stopped and handed to a reader
#: thread: SQLite virtual-machine steps (15-150 ns each: about 1 ms; a page of 20 of the
#: benchmark with its total takes 1,800), and a time for a query whose few steps are long. A slow
#: query costs the others that much waiting, once.
READ_SLICE_STEPS = 10_000
READ_SLICE = 0.05
#: Writes between two checkpoints, which a reader thread runs (SQLite's own, every 1,000 WAL
#: pages, would run in the committing write, on the loop): a write adds a few pages.
CHECKPOINT_EVERY = 250

# "UNIQUE constraint failed: todo_item.$.owner": the generated column of the field
_UNIQUE_FAILED = re.compile(r"\$\.([\w.]+)")
# SQLite's answers to a query too big to compile: the query's fault, not the store's.
_TOO_COMPLEX = re.compile(
    r"expression tree is too large|too many SQL variables|too many terms|parser stack overflow"
    r"|too many arguments|pattern too complex", re.IGNORECASE)


_SYNCHRONOUS = ("normal", "full", "extra")


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db`` (options apart)."""
    if not url.startswith("sqlite:///"):
        raise ConfigurationError(f"{url!r}: a SQLite URL is sqlite:///relative.db or sqlite:////absolute.db")
    path = url[len("sqlite:///"):].partition("?")[0]
    if not path:
        raise ConfigurationError(f"{url!r} names no file; use sqlite:///bzzlite.db or sqlite:///:memory:")
    return path


def sqlite_synchronous(url: str) -> str:
    """``?synchronous=full`` in the URL: each commit waits for the disk (survives a power loss);
    the default ``normal`` survives a crash of the process, not of the machine (docs/security.md)."""
    options = parse_qs(url.partition("?")[2], keep_blank_values=True)
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise ConfigurationError(f"{url!r}: unknown SQLite option(s) {', '.join(unknown)}; the one option is synchronous")
    value = options.get("synchronous", ["normal"])[-1].lower()
    if value not in _SYNCHRONOUS:
        raise ConfigurationError(f"{url!r}: synchronous is one of {', '.join(_SYNCHRONOUS)}")
    return value.upper()


def _ensure_index(conn: sqlite3.Connection, name: str, sql: str) -> None:
    """Create an index, replacing one of that name defined differently (an older layout)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
    if row is not None and row[0] != sql:
        conn.execute(f"DROP INDEX {quote(name)}")
        row = None
    if row is None:
        conn.execute(sql)


class _WouldWait(Exception):
    """A write tried on the event loop found the file's write lock taken before it changed
    anything: it goes to the writer's thread, which waits for the lock."""


class _WriterConnection(sqlite3.Connection):
    """The writer's connection: a statement that finds the file's write lock taken (another
    worker process is writing) is tried again after :data:`BUSY_RETRY` seconds, then twice as
    long each time up to :data:`BUSY_RETRY_MAX`, for up to :data:`BUSY_TIMEOUT`, as SQLite's busy
    handler would; but that handler sleeps 1, 2, 5, 10 ms and longer between tries while the
    other process's write takes tens of microseconds.
    A statement refused with SQLITE_BUSY has changed nothing, so trying it again is safe, in a
    transaction or not (SQLite's handler does the same).

    While a job runs on the event loop (``on_loop_from`` holds the connection's
    ``total_changes`` when it started), a refusal before the job changed anything raises
    :class:`_WouldWait` instead of waiting: nothing is written yet, so the job can start again
    in the thread."""

    on_loop_from: int | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return _retried(self, super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return _retried(self, super().executemany, sql, parameters)


def _retried(
    conn: _WriterConnection, run: Callable[[str, Any], sqlite3.Cursor], sql: str, parameters: Any
) -> sqlite3.Cursor:
    deadline: float | None = None
    pause = BUSY_RETRY
    while True:
        try:
            return run(sql, parameters)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            if conn.on_loop_from == conn.total_changes and not conn.in_transaction:
                raise _WouldWait from None
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + BUSY_TIMEOUT
            if now >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, BUSY_RETRY_MAX)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back if it
    raises. IMMEDIATE takes the write lock at once, so processes sharing the file take turns.
    Inside a transaction already (a batch of writes), a savepoint: undone alone if the block
    raises, committed with the batch."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT immediate")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO immediate")
            conn.execute("RELEASE immediate")
            raise
        conn.execute("RELEASE immediate")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _sql_value(value: Any) -> Any:
    """A document value as json_extract would give it (objects and arrays as JSON text)."""
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value


class SQLiteStore(Store):
    """Documents as JSON in SQLite, via the standard library's ``sqlite3``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.synchronous = sqlite_synchronous(url)
        self.conn: sqlite3.Connection | None = None  # the loop's own: reads by id, the change journal
        self._writer: ConnectionPool | None = None  # None for :memory: (one connection, on the loop)
        self._readers: ConnectionPool | None = None
        self._tables: dict[str, str] = {}  # collection path -> quoted table name
        self._stored: dict[str, tuple[str, ...]] = {}  # collection path -> paths kept in plain columns
        self._insert_sql: dict[str, str] = {}  # built once per table, not per request
        self._update_sql: dict[str, str] = {}
        self._rewrite_sql: dict[str, str] = {}
        self._writes_on_loop = False  # synchronous=normal: a commit waits for no disk (_open)
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._unchecked = 0  # writes since the last checkpoint
        self.broken = []

    def check_resource(self, spec: ResourceSpec) -> None:
        if spec.is_odmantic:
            raise ConfigurationError(
                f"{spec.model.__name__} is an ODMantic model: it needs a MongoDB store "
                "(--db mongodb://host:port/dbname); declare it as a pydantic BaseModel to use SQLite."
            )

    def _connect(self, cache_kib: int | None = None, writer: bool = False) -> sqlite3.Connection:
        # timeout is SQLite's busy timeout; the writer's is 0: it waits in _retried instead
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=0 if writer else BUSY_TIMEOUT,
                               factory=_WriterConnection if writer else sqlite3.Connection)
        conn.execute(f"PRAGMA synchronous={self.synchronous}")  # one of _SYNCHRONOUS (the URL's ?synchronous=)
        if cache_kib is not None:
            conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        return conn

    def _pooled(self) -> sqlite3.Connection:
        return self._connect(POOL_CACHE_KIB)

    def _pooled_writer(self) -> sqlite3.Connection:
        conn = self._connect(POOL_CACHE_KIB, writer=True)
        if self._writes_on_loop:  # its commits may run on the loop: the checkpoints go to a reader
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    async def open(self, specs: Sequence[ResourceSpec]) -> None:
        """Open the file, switch it to WAL and create what the resources need. Processes
        opening one file at the same moment can find it locked (switching the journal mode
        does not wait for the busy timeout): they try again for up to 5 s."""
        for attempt in range(100):
            try:
                return self._open(specs)
            except StoreUnavailable as exc:
                if isinstance(exc, ConstraintBroken) or "locked" not in str(exc) or attempt == 99:
                    raise
                await asyncio.sleep(0.05)

    def _open(self, specs: Sequence[ResourceSpec]) -> None:
        if self.conn is not None:
            return
        pools: list[ConnectionPool] = []
        conn: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                directory = os.path.dirname(os.path.abspath(self.path))
                if not os.path.isdir(directory):
                    raise StoreUnavailable(f"the directory of {self.path} does not exist")
            conn = self._connect()
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            with immediate(conn):  # workers opening the same file at once take turns
                for spec in specs:
                    self._create(conn, spec)
            if self.path != ":memory:":
                self._writes_on_loop = self.synchronous == "NORMAL"
                pools.append(ConnectionPool(self._pooled_writer, 1, "bzzlite-sqlite-writer"))
                pools.append(ConnectionPool(self._pooled, READERS, "bzzlite-sqlite-reader", READER_NICE))
        except (sqlite3.Error, ConstraintBroken) as exc:
            for pool in pools:
                pool.close()
            if conn is not None:
                conn.close()
            if isinstance(exc, ConstraintBroken):
                raise
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self.conn = conn
        if pools:
            self._writer, self._readers = pools

    def _create(self, conn: sqlite3.Connection, spec: ResourceSpec) -> None:
        self.check_resource(spec)
        name = table_name(spec)
        table = self._tables[spec.path] = quote(name)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, v INTEGER NOT NULL, doc TEXT NOT NULL) "
            "WITHOUT ROWID"
        )
        stored = sorted({*spec.schema.unique, *(f.lstrip("-") for fields in spec.indexes for f in fields)})
        self._stored[spec.path] = tuple(stored)
        self._columns(conn, table, name, spec, set(stored))
        extra = "".join(f", {json_expr(p)}" for p in stored)
        sets = "".join(f", {json_expr(p)} = ?" for p in stored)
        self._insert_sql[spec.path] = f"INSERT INTO {table} (id, v, doc{extra}) VALUES (?, 1, ?{', ?' * len(stored)})"
        self._update_sql[spec.path] = f"UPDATE {table} SET v = v + 1, doc = ?{sets} WHERE id = ?"
        self._rewrite_sql[spec.path] = f"UPDATE {table} SET doc = ?{sets} WHERE id = ? AND v = ?"
        for field in spec.schema.unique:
            index = f"ux_{name}_{field}"
            try:
                _ensure_index(conn, index, f"CREATE UNIQUE INDEX {quote(index)} ON {table}({json_expr(field)})")
            except sqlite3.IntegrityError:  # stored documents share values: say which, not SQLite's words
                self.constraint_broken(_duplicates(conn, spec, table, field))
        for fields in spec.indexes:
            # The id last, in the direction of the last field, as the query's tie-break is:
            # then the index alone gives the order of a sorted page, both ways.
            cols = [json_expr(f.lstrip("-")) + (" DESC" if f.startswith("-") else "") for f in fields]
            cols.append("id DESC" if fields[-1].startswith("-") else "id")
            index = "ix_" + name + "_" + "_".join(f.lstrip("-") for f in fields) + "__id"
            _ensure_index(conn, index, f"CREATE INDEX {quote(index)} ON {table}({', '.join(cols)})")

    def _columns(self, conn: sqlite3.Connection, table: str, name: str, spec: ResourceSpec, stored: set[str]) -> None:
        """Give every queryable path its column: plain (filled by writes) or virtual."""
        # table_xinfo's "hidden": 0 a plain column, 2 a virtual generated one
        existing = {row[1]: row[6] for row in conn.execute(f"PRAGMA table_xinfo({table})")}
        wanted = {f"$.{path}": (0 if path in stored else 2) for path in spec.schema.paths}
        changed = [column for column, kind in wanted.items() if column in existing and existing[column] != kind]
        if changed:  # a field became (or stopped being) indexed: rebuild its column and the indexes
            for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                         "AND sql IS NOT NULL", (name,)).fetchall():
                conn.execute(f"DROP INDEX {quote(index)}")
            for column in changed:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {quote(column)}")
                del existing[column]
        for column, kind in wanted.items():
            if column in existing:
                continue
            source = f"json_extract(doc, '{column}')"
            if kind == 0:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)}")
                conn.execute(f"UPDATE {table} SET {quote(column)} = {source}")
            else:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} GENERATED ALWAYS AS ({source}) VIRTUAL")

    def _stored_values(self, spec: ResourceSpec, doc: dict[str, Any]) -> list[Any]:
        return [_sql_value(get_path(doc, path)) for path in self._stored[spec.path]]

    @staticmethod
    def _text(spec: ResourceSpec, doc: dict[str, Any]) -> str:
        """A document as stored: JSON, with the mark of the model that wrote it."""
        return orjson.dumps(spec.versions.stamp(doc)).decode()

    async def close(self) -> None:
        for pool in (self._readers, self._writer):
            if pool is not None:
                pool.close()
        self._readers = self._writer = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def ping(self) -> dict[str, Any]:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {"store": "sqlite", "path": self.path}

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StoreUnavailable("the store is not open")
        return self.conn

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """``job`` on the writer connection, with the other writes of this turn of the loop
        (:meth:`_commit_batch`); in the writer's thread when the loop must not wait for it.

        A job that raises must leave nothing written, since it shares a transaction with the
        turn's other writes: it writes with one statement, or inside :func:`immediate`."""
        writer = self._writer
        if writer is None:
            return job(self._conn())
        self._unchecked += 1
        if self._unchecked >= CHECKPOINT_EVERY and self._writes_on_loop and self._readers is not None:
            self._unchecked = 0
            self._readers.post(_checkpoint)
        if not self._writes_on_loop:
            return await writer.run(job)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._batch.append((job, future))
        if len(self._batch) == 1:
            loop.call_soon(self._commit_batch)
        return await future

    def _commit_batch(self) -> None:
        """The writes queued in this turn of the loop, in one transaction: here when the writer's
        thread is idle and nothing has to wait for the lock, else as one job of that thread."""
        batch, self._batch = self._batch, []
        jobs = [job for job, _ in batch]
        futures = [future for _, future in batch]
        writer = self._writer
        if writer is None:
            _settle_all(futures, None, StoreUnavailable("the store is closed"))
            return
        if not writer.pending:
            conn = writer.connections[0]
            conn.on_loop_from = conn.total_changes
            try:
                outcomes = _run_batch(conn, jobs)
            except _WouldWait:  # another process holds the write lock: the thread waits for it
                pass
            except BaseException as exc:  # noqa: BLE001 (the transaction failed: each write's error)
                _settle_all(futures, None, exc)
                return
            else:
                _settle_all(futures, outcomes, None)
                return
            finally:
                conn.on_loop_from = None
        done = writer.submit(lambda conn: _run_batch(conn, jobs))
        done.add_done_callback(lambda d: _settle_all(futures, None if d.exception() else d.result(), d.exception()))

    async def _checked_write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_write`, with SQLite's errors as store errors (a unique index: DuplicateKey)."""
        try:
            return await self._write(job)
        except sqlite3.IntegrityError as exc:
            raise self._duplicate(exc) from None
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    async def _read(
        self, job: Callable[[sqlite3.Connection], T], budget: float | None, first_on_loop: bool = False
    ) -> T:
        """``job`` on a free read connection, in its thread, stopped past ``budget`` seconds;
        ``first_on_loop``: tried on the loop's connection first, within :data:`READ_SLICE_STEPS`."""
        if self._readers is None:
            return run_inline(self._conn(), job, budget)
        if first_on_loop:
            seconds = READ_SLICE if budget is None else min(READ_SLICE, budget)
            try:
                return run_slice(self._conn(), job, READ_SLICE_STEPS, seconds)
            except Overran:
                pass
        return await self._readers.run(job, budget)

    def trace(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback(sql)`` for every statement any connection runs (None: stop)."""
        connections = [self._conn()]
        for pool in (self._writer, self._readers):
            connections += pool.connections if pool is not None else []
        for conn in connections:
            conn.set_trace_callback(callback)

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable | QueryTooComplex:
        if isinstance(exc, sqlite3.OperationalError) and _TOO_COMPLEX.search(str(exc)):
            return QueryTooComplex(f"SQLite error: {exc}")
        return StoreUnavailable(f"SQLite error: {exc}")

    def _duplicate(self, exc: sqlite3.IntegrityError) -> DuplicateKey:
        match = _UNIQUE_FAILED.search(str(exc))
        return DuplicateKey(match.group(1) if match else None)

    # -- writes ------------------------------------------------------------------

    async def insert(self, spec: ResourceSpec, docs: Sequence[tuple[str, dict[str, Any]]]) -> list[Record]:
        sql = self._insert_sql[spec.path]
        rows = [(id_, self._text(spec, doc), *self._stored_values(spec, doc)) for id_, doc in docs]

        def job(conn: sqlite3.Connection) -> None:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                with immediate(conn):  # a bulk create is all or nothing
                    conn.executemany(sql, rows)

        await self._checked_write(job)
        return [Record(id_, 1, doc) for id_, doc in docs]

    async def get(self, spec: ResourceSpec, id: str) -> Record:
        # On the loop: a primary-key lookup costs less than handing it to a thread.
        try:
            row = self._conn().execute(f"SELECT v, doc FROM {self._tables[spec.path]} WHERE id = ?", (id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        if row is None:
            raise NotFound(id)
        return Record(id, row[0], spec.versions.load(id, orjson.loads(row[1])))

    async def replace(
        self, spec: ResourceSpec, id: str, doc: dict[str, Any], expected_version: int | None
    ) -> Record:
        table = self._tables[spec.path]
        values = (self._text(spec, doc), *self._stored_values(spec, doc), id)
        sql = self._update_sql[spec.path]

        def job(conn: sqlite3.Connection) -> int:
            if expected_version is None:
                row = conn.execute(sql + " RETURNING v", values).fetchone()
            else:
                row = conn.execute(sql + " AND v = ? RETURNING v", (*values, expected_version)).fetchone()
            if row is None:
                raise _missing_or_stale(conn, table, id)
            return int(row[0])

        version = await self._checked_write(job)
        return Record(id, version, doc)

    async def delete(self, spec: ResourceSpec, id: str, expected_version: int | None) -> None:
        table = self._tables[spec.path]

        def job(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                cursor = conn.execute(f"DELETE FROM {table} WHERE id = ?", (id,))
            else:
                cursor = conn.execute(f"DELETE FROM {table} WHERE id = ? AND v = ?", (id, expected_version))
            if cursor.rowcount == 0:
                raise _missing_or_stale(conn, table, id)

        try:
            await self._write(job)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    async def apply(self, writes: Sequence[Write]) -> None:
        """Every write in one ``BEGIN IMMEDIATE`` transaction on the writer connection: all
        commit or none does."""
        rows = []
        for write in writes:
            doc = write.doc or {}
            rows.append((write, self._text(write.spec, doc), self._stored_values(write.spec, doc) if write.doc else []))

        def job(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                for write, text, stored in rows:
                    table = self._tables[write.spec.path]
                    if write.kind == "insert":
                        conn.execute(self._insert_sql[write.spec.path], (write.id, text, *stored))
                        continue
                    if write.kind == "replace":
                        changed = conn.execute(self._update_sql[write.spec.path] + " AND v = ?",
                                               (text, *stored, write.id, write.expected_version)).rowcount
                    else:
                        changed = conn.execute(f"DELETE FROM {table} WHERE id = ? AND v = ?",
                                               (write.id, write.expected_version)).rowcount
                    if changed == 0:
                        raise _missing_or_stale(conn, table, write.id)  # rolls the whole transaction back

        await self._checked_write(job)

    # -- reads -------------------------------------------------------------------

    async def find(self, spec: ResourceSpec, query: Query) -> Page:
        table = self._tables[spec.path]
        where, params = compile_conditions(query.conditions)
        constants = pinned_values(query.conditions)
        parts = keyset_parts(query, constants) if query.after is not None else [("", [], frozenset())]
        limit = query.per_page + 1

        # Tried on the loop first; in a thread, it only runs SQLite (the GIL released) and fetches
        # rows: the documents are decoded on the loop, so a low-priority reader holds the GIL as
        # little as it can.
        def job(conn: sqlite3.Connection) -> tuple[list[Any], int | None]:
            rows: list[Any] = []
            for clause, extra, pinned in parts:  # run in turn until the page is full
                clauses = [*where, clause] if clause else where
                sql_where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
                sql = f"SELECT id, v, doc FROM {table}{sql_where}{order_by(query, constants, pinned)} LIMIT ? OFFSET ?"
                rows += conn.execute(sql, (*params, *extra, limit - len(rows), query.offset)).fetchall()
                if len(rows) >= limit:
                    break
            total = None
            if not query.keyset:
                sql_where = (" WHERE " + " AND ".join(where)) if where else ""
                total = conn.execute(f"SELECT count(*) FROM {table}{sql_where}", params).fetchone()[0]
            return rows, total

        try:
            rows, total = await self._read(job, self.budget(spec), first_on_loop=True)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        versions = spec.versions
        trusted = versions.trusted
        records = []
        for id_, version, text in rows[: query.per_page]:  # versions.load, inlined: a list reads many
            doc = orjson.loads(text)
            mark = doc.pop(MARK, None)
            records.append(Record(id_, version, doc if mark == trusted else versions.fitted(id_, doc, mark)))
        return Page(records, total, len(rows) > query.per_page)

    # -- bringing stored documents to the model --------------------------------------

    async def count(self, spec: ResourceSpec) -> int:
        table = self._tables[spec.path]
        try:
            return int(await self._read(lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0], None))
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    async def scan(self, spec: ResourceSpec, after: str | None, limit: int) -> list[Record]:
        table = self._tables[spec.path]

        def job(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(f"SELECT id, v, doc FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                (after or "", limit)).fetchall()

        try:
            rows = await self._read(job, None)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return [Record(r[0], r[1], orjson.loads(r[2])) for r in rows]

    async def rewrite(self, spec: ResourceSpec, rewrites: Sequence[Rewrite]) -> Rewritten:
        """One transaction per batch; the version is kept, so the journal's trigger (which fires on
        a new version) records nothing, and a writer holding the version read still wins."""
        sql = self._rewrite_sql[spec.path]
        rows = [(r.id, (self._text(spec, r.doc), *self._stored_values(spec, r.doc), r.id, r.version))
                for r in rewrites]

        def job(conn: sqlite3.Connection) -> Rewritten:
            done = Rewritten()
            with immediate(conn):
                for id_, values in rows:
                    try:
                        changed = conn.execute(sql, values).rowcount
                    except sqlite3.IntegrityError as exc:  # only this statement is undone
                        done.duplicates[id_] = self._duplicate(exc).field
                        continue
                    if changed:
                        done.written += 1
                    else:
                        done.conflicts.append(id_)
            return done

        try:
            return await self._write(job)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc


def _duplicates(conn: sqlite3.Connection, spec: ResourceSpec, table: str, field: str) -> ConstraintBroken:
    """The values of a unique field that more than one stored document holds (a few, with ids)."""
    column = json_expr(field)
    shared = f"SELECT {column} AS value, count(*) AS n FROM {table} WHERE {column} IS NOT NULL GROUP BY 1 HAVING n > 1"
    values = conn.execute(f"SELECT count(*) FROM ({shared})").fetchone()[0]
    groups = []
    for value, _ in conn.execute(f"{shared} ORDER BY n DESC, value LIMIT 3").fetchall():
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} WHERE {column} = ? ORDER BY id LIMIT 4", (value,))]
        groups.append((value, ids))
    return ConstraintBroken(spec.path, field, groups, values)


def _run_batch(conn: sqlite3.Connection, jobs: Sequence[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
    """Each job's result, or the exception it raised, after one commit of them all.

    Several jobs share one transaction. A job that raises has left nothing written, as every
    job of ``SQLiteStore._write`` is one statement (SQLite undoes a failed statement alone,
    its triggers' rows included) or several inside :func:`immediate` (a savepoint undone when
    the block raises): so no savepoint per job, which cost two statements per write.
    Raises what makes the transaction itself fail (the lock, the commit): then none was written.
    """
    if len(jobs) == 1:  # its own transaction, or none: a single statement commits by itself
        try:
            return [jobs[0](conn)]
        except _WouldWait:
            raise
        except Exception as exc:  # noqa: BLE001 (the job's own error, for its caller)
            return [exc]
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[Any] = []
    try:
        for job in jobs:
            try:
                outcomes.append(job(conn))
            except Exception as exc:  # noqa: BLE001 (the job's own error, for its caller)
                if not conn.in_transaction:  # the error ended the whole transaction (SQLite's I/O errors)
                    raise
                outcomes.append(exc)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return outcomes


def _settle_all(futures: Sequence[asyncio.Future[Any]], outcomes: Sequence[Any] | None,
                error: BaseException | None) -> None:
    """Each future its outcome (a result, or an exception raised by its job), or all ``error``."""
    for n, future in enumerate(futures):
        if future.cancelled():
            continue
        outcome = error if outcomes is None else outcomes[n]
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds back into the database file, as far as readers allow."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _missing_or_stale(conn: sqlite3.Connection, table: str, id: str) -> Exception:
    """Why a conditional write matched no row (asked on the connection that wrote)."""
    exists = conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (id,)).fetchone()
    return VersionConflict(id) if exists else NotFound(id)


__all__ = ["SQLiteStore", "compile_conditions", "sqlite_path"]
