"""The MongoDB journal: change streams, numbered once, kept in a collection.

MongoDB's change streams see every write to a collection, whoever makes it (any bzzlite
server, any other program), but their resume tokens are opaque, per collection, and
without the document before an update. So one process at a time, the *journal
leader* (a lease in ``_bzzlite_feeds``), follows a change stream per resource
collection and appends each change to ``_bzzlite_journal`` with the next integer id;
every process reads the journal (``_id > last``) for its subscribers, as on SQLite.

- Ids are the same on every server, increase in journal order, and let any server
  resume any client; the journal keeps the latest ``size`` changes.
- The lease lasts ``lease`` seconds (``App(feed_lease=...)``, 2 s by default) and is renewed
  every quarter of it; the other processes with subscribers look every quarter of it too,
  so after a leader dies another takes over within 1.25 leases.
- The leader saves each stream's resume token in the lease document: a new leader
  (after a crash or a shutdown) continues where the last one stopped, and a change
  appended twice is refused by the unique index on its token.
- Two leaders at once (one paused past its lease, or cut off from MongoDB, and back) write
  no change twice and skip none: the unique token refuses a change journaled already, the
  unique ``_id`` a position taken already (the leader that finds one taken steps down), and a
  leader resumes only from tokens of changes it has journaled. A leader finds out that it lost
  the lease at its next renewal, or at its first write after the other's.
- The document before a change comes from the change event (MongoDB's pre-images,
  when the collection enables them), else from the journal's previous entry for that
  document; when neither has it (a document untouched for a whole journal, changed
  by another program) the change is marked ``before_known=False`` and subscribers
  that cannot see the new version get only its id (see :class:`~bzzlite.feeds.events.Decoded`).
- If MongoDB no longer has a stream's history (the server's oplog moved on while no
  leader ran) or the collection is dropped, the leader appends a ``reset`` marker:
  the collection's subscribers are told to reload, never silently left behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from ..errors import StoreUnavailable
from ..models.migrations import MARK
from ..stores.base import Record
from .events import Change
from .journal import Journal, TooOld, Unsupported, stop_if_cancelled

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..stores.mongo import MongoStore

log = logging.getLogger("bzzlite.feeds")

JOURNAL = "_bzzlite_journal"
STATE = "_bzzlite_feeds"
RESET = "reset"  # a marker: the collection's changes since the previous entry are unknown
LEASE = 2.0  # seconds a leader holds the journal without renewing, unless told otherwise
_HISTORY_LOST = (136, 280, 286)  # CappedPositionLost, ChangeStreamFatalError, ChangeStreamHistoryLost
_NO_CHANGE_STREAMS = (40573, 40324)  # a standalone server; an unknown pipeline stage
_TRIM_EVERY = 64
_BATCH = 1000


def _token_key(token: Any) -> str:
    data = token.get("_data") if isinstance(token, dict) else None
    return str(data if data is not None else token)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    return None


class MongoJournal(Journal):
    """The journal of a :class:`~bzzlite.stores.mongo.MongoStore`'s database."""

    def __init__(self, store: MongoStore, *, size: int, poll: float = 0.02, lease: float = LEASE) -> None:
        self.store = store
        self.size = size
        self.poll = max(poll, 0.02)  # every read is a round trip
        self.lease = lease
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.specs: list[ResourceSpec] = []
        self._leading = False
        self._prepared = False  # the journal's indexes exist
        self.wanted = False  # this process has subscribers
        self._lead_task: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._append_lock = asyncio.Lock()
        self._waking = asyncio.Lock()
        self._starting = asyncio.Lock()
        self._next = 0
        self._tokens: dict[str, Any] = {}  # collection path -> resume token to save
        self._last_docs: collections.OrderedDict[tuple[str, str], dict[str, Any] | None] = collections.OrderedDict()

    @property
    def journal(self) -> Any:
        return self.store.db[JOURNAL]

    @property
    def state(self) -> Any:
        return self.store.db[STATE]

    # -- lifecycle -----------------------------------------------------------------------

    async def attach(self, specs: Sequence[ResourceSpec]) -> None:
        """Nothing runs until someone subscribes (see :meth:`wake`)."""
        self.specs = list(specs)

    async def wake(self) -> None:
        """A subscriber arrived in this process: make sure some process leads the journal.

        If the lease is free this process leads at once (resuming every stream from the
        saved tokens, so changes made while nobody led are journaled now, in order).
        """
        self.wanted = True
        # Subscribers arriving together (every EventSource reconnects at once after a restart)
        # wake one at a time: the first leads, the others find it leading.
        async with self._waking:
            if self._lead_task is not None and not self._lead_task.done() and self._leading:
                return
            try:
                if not self._prepared:
                    await self.journal.create_index([("tok", ASCENDING)], name="tok", unique=True)
                    await self.journal.create_index([("c", ASCENDING), ("doc_id", ASCENDING)], name="c_doc_id")
                    self._prepared = True
                await self._want()
                if not self._leading and await self._acquire():
                    await self._start_leading()
            except OperationFailure as exc:
                if exc.code in _NO_CHANGE_STREAMS or "replica set" in str(exc):
                    raise Unsupported(f"MongoDB offers no change streams here ({exc}): feeds need a replica "
                                      "set (a single-node one will do)") from None
                raise StoreUnavailable(f"cannot follow the changes: {exc}") from exc
            except PyMongoError as exc:
                raise StoreUnavailable(f"cannot follow the changes: {exc}") from exc
            if self._lead_task is None or self._lead_task.done():
                self._lead_task = asyncio.ensure_future(self._lead())

    def idle(self) -> None:
        """The last subscriber of this process left."""
        self.wanted = False

    async def close(self) -> None:
        self.wanted = False
        tasks = [t for t in [self._lead_task, *self._watchers] if t is not None]
        self._lead_task, self._watchers = None, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was logged
                await task
        if self._leading:
            await self._release()

    # -- leadership ----------------------------------------------------------------------

    async def _want(self) -> None:
        """Tell the leader, wherever it runs, that this process has subscribers."""
        await self.state.update_one({"_id": "leader"}, {"$max": {"wanted": time.time() + 2 * self.lease}}, upsert=True)

    async def _acquire(self) -> bool:
        now = time.time()
        try:
            found = await self.state.find_one_and_update(
                {"_id": "leader", "$or": [{"owner": self.owner}, {"until": {"$lt": now}}, {"owner": None}]},
                {"$set": {"owner": self.owner, "until": now + self.lease}},
                upsert=True,
            )
        except DuplicateKeyError:  # another process holds a live lease
            return False
        return found is None or found.get("owner") in (self.owner, None) or found.get("until", 0) < now

    async def _release(self) -> None:
        """Stop leading and hand the lease back (with the streams' positions)."""
        await self._stop_leading()
        try:
            await self._save_tokens()
            await self.state.update_one({"_id": "leader", "owner": self.owner}, {"$set": {"until": 0.0}})
        except PyMongoError:
            pass

    async def _lead(self) -> None:
        """While someone subscribes anywhere: hold (or wait for) the lease, renewing it a few
        times per period; then hand it back and stop."""
        while True:
            stop_if_cancelled()
            try:
                await asyncio.sleep(self.lease / 4)
                if self.wanted:
                    await self._want()
                state = await self.state.find_one({"_id": "leader"}) or {}
                needed = self.wanted or state.get("wanted", 0) > time.time()
                if not needed:
                    if self._leading:
                        await self._release()
                    return
                held = await self._acquire()
                if held and not self._leading:
                    await self._start_leading()
                elif not held and self._leading:
                    log.warning("lost the change journal lease; another server leads now")
                    await self._stop_leading()
                if self._leading:
                    await self._save_tokens()
            except asyncio.CancelledError:
                raise
            except PyMongoError as exc:  # the store is away: retry, keeping what we had
                log.warning("change journal lease: %s", exc)
            except Exception:
                log.exception("change journal lease")

    async def _start_leading(self) -> None:
        # wake() and the lease loop both start leading: never twice (two sets of watchers
        # would each append every change, and the orphaned ones would never stop).
        async with self._starting:
            if self._leading:
                return
            state = await self.state.find_one({"_id": "leader"}) or {}
            tokens = state.get("tokens") or {}
            self._next = await self.head() + 1
            self._last_docs.clear()
            streams = []
            for spec in self.specs:
                stream, first = await self._open_stream(spec, tokens.get(self._key(spec)))
                streams.append((stream, first))
                if first is None and stream.resume_token is not None:  # nothing pending: where it starts
                    self._tokens[self._key(spec)] = stream.resume_token
            self._leading = True
            self._watchers = [asyncio.ensure_future(self._watch(spec, s)) for spec, s in zip(self.specs, streams)]
        # Saved now, not at the first renewal: a leader that dies before it would leave its
        # successor no position, and the successor would start from its own "now", skipping
        # every change made in between.
        await self._save_tokens()
        log.info("leading the change journal (%d collections)", len(self.specs))

    async def _stop_leading(self) -> None:
        self._leading = False
        watchers, self._watchers = self._watchers, []
        current = asyncio.current_task()
        for task in watchers:
            task.cancel()
        for task in watchers:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    @staticmethod
    def _key(spec: ResourceSpec) -> str:
        return spec.path.replace(".", "\uff0e")  # a field name in the lease document

    async def _save_tokens(self) -> None:
        if not self._tokens:
            return
        tokens, self._tokens = self._tokens, {}
        update = {f"tokens.{key}": token for key, token in tokens.items()}
        result = await self.state.update_one({"_id": "leader", "owner": self.owner}, {"$set": update})
        if result.matched_count == 0 and self._leading:
            await self._stop_leading()

    # -- following the resource collections ----------------------------------------------

    async def _open_stream(self, spec: ResourceSpec, token: Any) -> Any:
        """A change stream on the resource's collection, opened now (after ``token`` if given)."""
        handle = self.store.collection(spec).handle
        options: dict[str, Any] = {"full_document": "updateLookup", "max_await_time_ms": 500}
        if token is not None:
            options["resume_after"] = token
        watch = self.store.driver.watch
        try:
            stream = await watch(handle, full_document_before_change="whenAvailable", **options)
            first = await stream.try_next()
        except OperationFailure as exc:
            if exc.code in _HISTORY_LOST:
                await self._append_reset(spec, f"the change stream's history is gone ({exc.code})")
                return await self._open_stream(spec, None)
            if "fullDocumentBeforeChange" not in str(exc):
                raise
            stream = await watch(handle, **options)  # a server without pre-images
            first = await stream.try_next()
        return (stream, first)

    async def _watch(self, spec: ResourceSpec, opened: tuple[Any, Any]) -> None:
        stream, change = opened
        key = self._key(spec)
        failures = 0
        while True:
            try:
                stop_if_cancelled()
                if change is None:
                    change = await stream.try_next()
                if change is None:
                    self._tokens[key] = stream.resume_token
                    await asyncio.sleep(self.poll)
                    continue
                await self._record(spec, change)
                self._tokens[key] = change["_id"]  # saved with the lease's renewal
                change = None
                failures = 0
            except asyncio.CancelledError:
                await _close(stream)
                raise
            except OperationFailure as exc:
                await _close(stream)
                change = None
                if exc.code in _HISTORY_LOST:
                    await self._append_reset(spec, f"the change stream's history is gone ({exc.code})")
                    stream, change = await self._open_stream(spec, None)
                else:
                    failures += 1
                    log.warning("change stream on %s failed: %s", spec.path, exc)
                    await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                    stream, change = await self._open_stream(spec, self._tokens.get(key))
            except PyMongoError as exc:
                failures += 1
                if failures == 1:
                    log.warning("change stream on %s interrupted (%s); resuming", spec.path, exc)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                try:
                    await _close(stream)
                    stream, change = await self._open_stream(spec, self._tokens.get(key) or stream.resume_token)
                except PyMongoError:
                    change = None

    async def _record(self, spec: ResourceSpec, event: dict[str, Any]) -> None:
        kind = event.get("operationType")
        coll = self.store.collection(spec)
        if kind in ("insert", "update", "replace", "delete"):
            full = event.get("fullDocument")
            before_raw = event.get("fullDocumentBeforeChange")
            key = (event.get("documentKey") or {}).get("_id")
            if key is None and full is not None:
                key = full.get("_id")
            doc_id = str(key)
            if full is not None:
                full = {**full, "_id": key}
            if before_raw is not None:
                before_raw = {**before_raw, "_id": key}
            after = coll.decode(dict(full)) if full is not None and kind != "delete" else None
            before: Record | None = coll.decode(dict(before_raw)) if before_raw is not None else None
            if kind == "delete" and before is None and full is not None:
                before = coll.decode(dict(full))  # servers that send the deleted document
            if kind == "update" and after is None:  # deleted since: a deletion event follows
                return
            changed = (event.get("updateDescription") or {}).get("updatedFields") or {}
            if kind == "update" and MARK in changed and "_v" not in changed:
                # `bzzlite migrate` wrote the document in its model's current form, keeping its
                # version: what is served did not change, so no one is told (docs/changing-models.md)
                self._remember(spec.path, doc_id, after.doc if after is not None else None)
                return
            entry: dict[str, Any] = {"c": spec.path, "doc_id": doc_id, "tok": _token_key(event["_id"]),
                                     "at": _iso(event.get("wallTime") or event.get("clusterTime"))}
            if kind == "insert":
                entry.update(op="created", doc=after.doc if after else {})
            else:
                old = before.doc if before is not None else await self._previous(spec, doc_id)
                if kind == "delete":
                    entry.update(op="deleted", doc=old if old is not None else {})
                else:
                    entry.update(op="updated", doc=after.doc if after else {}, old=old)
                if old is None:
                    entry["u"] = True  # the document before is unknown
            await self._append(entry)
            self._remember(spec.path, doc_id, None if kind == "delete" else entry["doc"])
        elif kind in ("drop", "rename", "dropDatabase", "invalidate"):
            await self._append_reset(spec, f"the collection was {kind}ped" if kind == "drop" else f"{kind} event",
                                     tok=_token_key(event["_id"]))

    async def _previous(self, spec: ResourceSpec, doc_id: str) -> dict[str, Any] | None:
        """The document as last journaled, if the journal still has it."""
        key = (spec.path, doc_id)
        if key in self._last_docs:
            return self._last_docs[key]
        entry = await self.journal.find_one({"c": spec.path, "doc_id": doc_id}, sort=[("_id", DESCENDING)])
        if entry is None or entry.get("op") in ("deleted", RESET):
            return None
        return entry.get("doc")

    def _remember(self, path: str, doc_id: str, doc: dict[str, Any] | None) -> None:
        self._last_docs[(path, doc_id)] = doc
        self._last_docs.move_to_end((path, doc_id))
        while len(self._last_docs) > self.size:
            self._last_docs.popitem(last=False)

    async def _append_reset(self, spec: ResourceSpec, reason: str, tok: str | None = None) -> None:
        log.warning("change journal: %s: %s; its subscribers will be told to reload", spec.path, reason)
        await self._append({"c": spec.path, "op": RESET, "doc_id": "", "doc": {"reason": reason},
                            "tok": tok or f"reset-{uuid.uuid4().hex}", "at": _iso(datetime.datetime.now(datetime.UTC))})
        self._last_docs.clear()

    async def _append(self, entry: dict[str, Any]) -> None:
        async with self._append_lock:
            seq = self._next
            try:
                await self.journal.insert_one({"_id": seq, **entry})
            except DuplicateKeyError:
                if await self.journal.find_one({"tok": entry["tok"]}, {"_id": 1}) is not None:
                    return  # journaled before (a resumed stream repeats what it last saw)
                log.warning("another server wrote change %d: stepping down from the journal", seq)
                await self._stop_leading()  # the lease decides who leads next
                raise asyncio.CancelledError() from None
            self._next = seq + 1
            if seq % _TRIM_EVERY == 0 and seq > self.size:
                await self.journal.delete_many({"_id": {"$lte": seq - self.size}})

    # -- reading -------------------------------------------------------------------------

    async def head(self) -> int:
        try:
            last = await self.journal.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB error: {exc}") from exc
        return int(last["_id"]) if last else 0

    async def _read(self, after: int, limit: int, collection: str | None = None) -> list[Change]:
        selector: dict[str, Any] = {"_id": {"$gt": after}}
        if collection is not None:
            selector["c"] = collection
        raws = await self.journal.find(selector, sort=[("_id", ASCENDING)], limit=limit).to_list(None)
        return [
            Change(int(raw["_id"]), raw["c"], raw["op"], raw.get("doc_id", ""), raw.get("doc") or {},
                   raw.get("old"), raw.get("at"), before_known=not raw.get("u"))
            for raw in raws
        ]

    async def replay(self, after: int, limit: int, collection: str | None = None) -> list[Change]:
        try:
            first = await self.journal.find_one({}, {"_id": 1}, sort=[("_id", ASCENDING)])
            high = await self.head()
            low = int(first["_id"]) if first else None
            if after > high or (low is not None and after < low - 1):
                raise TooOld(after)
            return await self._read(after, limit, collection)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB error: {exc}") from exc

    async def follow(self, after: int) -> AsyncIterator[list[Change]]:  # type: ignore[override]
        position = after
        failures = 0
        while True:
            stop_if_cancelled()
            try:
                batch = await self._read(position, _BATCH)
                failures = 0
            except PyMongoError as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot read the change journal (%s); retrying", exc)
                await asyncio.sleep(min(2.0, self.poll * 2**failures))
                continue
            if batch:
                position = batch[-1].seq
                yield batch
                if len(batch) == _BATCH:
                    continue
            await asyncio.sleep(self.poll)


async def _close(stream: Any) -> None:
    with contextlib.suppress(PyMongoError):
        await stream.close()
