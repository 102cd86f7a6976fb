"""The MongoDB store: one collection per resource, through PyMongo's asyncio API (or motor).

A document is stored as ``{"_id": ObjectId(id), "_v": version, **fields}``. Fields are
kept in JSON mode (dates as ISO-8601 strings, decimals as strings), exactly as the
SQLite store keeps them, so one query value compares the same way on both stores;
only ids are ObjectIds, and for ODMantic models their references and ObjectId fields
too (the layout ODMantic's own engine reads). Values read back are turned into JSON
mode again (ObjectIds to hex, BSON dates to ISO strings), so documents written by
other tools still render.

The driver is PyMongo's ``AsyncMongoClient`` unless the app asks for motor
(``App(mongo_driver="motor")``; see :mod:`bzzlite.stores._mongo_drivers`). ODMantic models
are read for their collection names, ObjectId fields and indexes only: every call to MongoDB
is the store's own, whichever driver it runs on (ODMantic's engine is motor's).

Every operation is bounded by the client's timeouts (see :data:`DEFAULT_OPTIONS`;
options in the URL win) and a server that cannot be reached is ``StoreUnavailable``.
Updates and deletes are single conditional writes on ``{_id, _v}``. A bulk insert is
all or nothing without transactions: the documents are validated before, inserted in
order, and the ones inserted are deleted again if a later one fails (readers may see
them for that instant; nothing stays).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from bson import ObjectId
from bson.errors import BSONError, InvalidId
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.uri_parser import parse_uri

from ..errors import (
    ConfigurationError,
    ConstraintBroken,
    DuplicateKey,
    NotFound,
    QueryTimeout,
    StoreUnavailable,
    TransactionIncomplete,
    VersionConflict,
)
from ..models import odmantic
from ..models.migrations import MARK
from ..models.schema import canonical_time
from ..query import Condition, Query
from ._mongo_drivers import DRIVERS, Driver, driver
from .base import Page, Record, Rewrite, Rewritten, Store, Write, table_name

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

log = logging.getLogger("bzzlite")

#: Client options unless the URL sets them: nothing waits long for a server that is away.
DEFAULT_OPTIONS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 2000,  # no reachable server: fail after 2 s
    "connectTimeoutMS": 2000,
    "socketTimeoutMS": 10000,  # a server that stops answering mid-operation
}
#: BSON types a unique field's index covers: all but null, so None never conflicts with None.
_NOT_NULL = ["double", "string", "object", "array", "binData", "objectId", "bool", "date", "int",
             "long", "decimal", "timestamp"]
_VERSION = "_v"
_NEVER: dict[str, Any] = {"_id": {"$in": []}}
_INDEX_IN_MESSAGE = re.compile(r"index:? '?([\w.$-]+)")
_INDEX_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
#: An index to create: name, keys, options, and the field(s) a unique one guards.
_IndexPlan = tuple[str, list[tuple[str, int]], dict[str, Any], "str | None"]


def database_name(url: str) -> str:
    """The database a URL names (``mongodb://host/dbname``), ``bzzlite`` if none."""
    rest = url.split("://", 1)[1] if "://" in url else url
    _, slash, tail = rest.partition("/")
    name = unquote(tail.split("?", 1)[0]) if slash else ""
    return name or "bzzlite"


def collection_name(spec: ResourceSpec) -> str:
    """An ODMantic model's own collection; otherwise the SQLite store's table name."""
    if spec.is_odmantic:
        return str(spec.model.__collection__)  # type: ignore[attr-defined]
    return table_name(spec)


def escape_regex(text: str) -> str:
    """Client text as a regex matching itself literally, in PCRE and Python alike."""
    return "".join(c if c.isalnum() or c == "_" or ord(c) > 127 else f"\\x{ord(c):02x}" for c in text)


def _plain(value: Any) -> Any:
    """A value read from MongoDB in JSON mode: ObjectIds as hex, dates as the text the
    store would have written (:func:`~bzzlite.models.schema.canonical_time`)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime.datetime):  # BSON dates are UTC
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return canonical_time(value) or value.isoformat()
    return value


class MongoCollection:
    """What the store knows about one resource's collection."""

    __slots__ = ("handle", "name", "objectid_fields", "unique_indexes", "versions")

    def __init__(self, spec: ResourceSpec, handle: Any) -> None:
        self.name = collection_name(spec)
        self.handle = handle
        self.versions = spec.versions
        self.objectid_fields = odmantic.objectid_fields(spec.model)
        self.unique_indexes: dict[str, str] = {}  # index name -> field(s), for DuplicateKey

    # -- values in and out --------------------------------------------------------

    def to_objectid(self, path: str, value: Any) -> Any:
        if value is None or (path != "_id" and path not in self.objectid_fields):
            return value
        if isinstance(value, list):
            return [self.to_objectid(path, v) for v in value]
        return ObjectId(value)

    def encode(self, id_: str, version: int, doc: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = {"_id": ObjectId(id_), _VERSION: version}
        stored.update(doc)
        stored[MARK] = self.versions.mark  # the model that wrote it (bzzlite/models/migrations.py)
        for name in self.objectid_fields:
            if stored.get(name) is not None:
                stored[name] = self.to_objectid(name, stored[name])
        return stored

    def decode(self, raw: dict[str, Any]) -> Record:
        """A stored document as it is (its model mark included)."""
        id_ = raw.pop("_id")
        version = raw.pop(_VERSION, None)
        return Record(str(id_), version if isinstance(version, int) else 0, _plain(raw))

    def load(self, raw: dict[str, Any]) -> Record:
        """A stored document as its model says (InvalidDocument when it cannot be)."""
        record = self.decode(raw)
        return Record(record.id, record.version, self.versions.load(record.id, record.doc))


def _path(path: str) -> str:
    # "lines[].product": MongoDB's dotted paths already reach into every element of a list
    return "_id" if path == "id" else path.replace("[]", "")


def _version_predicate(version: int) -> Any:
    return version if version else None  # a document written by another tool has no _v: version 0


class MongoStore(Store):
    """Documents in MongoDB, through an asyncio driver: ``pymongo`` (PyMongo's
    ``AsyncMongoClient``, the default) or ``motor``.

    Raises:
        ConfigurationError: an invalid URL, an unknown driver, or motor asked for and not installed.
    """

    def __init__(self, url: str, driver_name: str = DRIVERS[0]) -> None:
        self.url = url
        self.driver: Driver = driver(driver_name)
        self.db_name = database_name(url)
        options = {}
        if not url.startswith("mongodb+srv://"):  # +srv would resolve DNS here
            try:
                options = parse_uri(url)["options"]
            except (PyMongoConfigurationError, ValueError) as exc:
                raise ConfigurationError(f"invalid MongoDB URL: {exc}") from None
        given = {k.lower() for k in options}
        self.options = {k: v for k, v in DEFAULT_OPTIONS.items() if k.lower() not in given}
        self.client: Any = None  # the driver's client, made on first use
        self._collections: dict[str, MongoCollection] = {}
        self._ready = False
        self.broken = []

    def check_resource(self, spec: ResourceSpec) -> None:
        """Every pydantic and ODMantic model can be served (ODMantic ones were checked at @resource)."""

    # -- connection -----------------------------------------------------------------

    def _client(self) -> Any:
        if self.client is None:
            self.client = self.driver.client(self.url, tz_aware=True, uuidRepresentation="standard", **self.options)
        return self.client

    @property
    def db(self) -> Any:
        """The database, as the driver's database object (its collections by ``db[name]``)."""
        return self._client()[self.db_name]

    async def open(self, specs: Sequence[ResourceSpec]) -> None:
        """Connect and create the indexes; safe to call again after a failure."""
        db = self.db
        with self._errors():
            await db.command("ping")
            collections = {spec.path: MongoCollection(spec, db[collection_name(spec)]) for spec in specs}
            for spec in specs:
                await self._create_indexes(spec, collections[spec.path])
        self._collections = collections
        self._ready = True

    async def _create_indexes(self, spec: ResourceSpec, coll: MongoCollection) -> None:
        wanted: list[_IndexPlan] = []
        for field in spec.schema.unique:
            name = f"ux_{coll.name}_{field}"
            options = {"unique": True, "partialFilterExpression": {field: {"$type": _NOT_NULL}}}
            wanted.append((name, [(field, ASCENDING)], options, field))
        for fields in spec.indexes:
            keys = [(f.lstrip("-"), DESCENDING if f.startswith("-") else ASCENDING) for f in fields]
            wanted.append(("ix_" + coll.name + "_" + "_".join(k for k, _ in keys), keys, {}, None))
        if spec.is_odmantic:
            wanted.extend(self._odmantic_indexes(spec))
        for name, keys, options, guarded in wanted:
            if guarded is not None:
                coll.unique_indexes[name] = guarded
            try:
                await coll.handle.create_index(keys, name=name, **options)  # type: ignore[arg-type]
            except OperationFailure as exc:
                if guarded is not None and exc.code not in _INDEX_CONFLICT and "," not in guarded:
                    breach = await self._duplicates(spec, coll, guarded)
                    if breach is not None:  # the stored documents share values: say which
                        self.constraint_broken(breach)
                        continue
                if exc.code not in _INDEX_CONFLICT:
                    raise
                # An index on the same keys exists with other options (made by another tool):
                # keep it, it still answers queries (and a unique one still rejects duplicates).
                log.warning("MongoDB collection %s: keeping the existing index on %s (%s)", coll.name, keys, exc)

    async def _duplicates(self, spec: ResourceSpec, coll: MongoCollection, field: str) -> ConstraintBroken | None:
        """The values of a unique field more than one stored document holds (a few, with ids)."""
        shared = [{"$match": {field: {"$ne": None}}},
                  {"$group": {"_id": f"${field}", "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
                  {"$match": {"n": {"$gt": 1}}}]
        cursor = await self.driver.aggregate(coll.handle, [*shared, {"$sort": {"n": -1, "_id": 1}}])
        groups = await cursor.to_list(None)
        if not groups:
            return None
        found = [(_plain(g["_id"]), sorted(str(i) for i in g["ids"])[:4]) for g in groups[:3]]
        return ConstraintBroken(spec.path, field, found, len(groups))

    def _odmantic_indexes(self, spec: ResourceSpec) -> list[_IndexPlan]:
        """The model's ``Field(index=True)``, ``Field(unique=True)`` and ``model_config["indexes"]``;
        single-field unique ones are already made partial from the schema above."""
        found: list[_IndexPlan] = []
        for index in spec.model.__indexes__():  # type: ignore[attr-defined]
            document = dict(index.get_pymongo_index().document)
            keys = list(document.pop("key").items())
            name = document.pop("name", None) or "_".join(f"{k}_{d}" for k, d in keys)
            unique = document.get("unique", False)
            if unique and len(keys) == 1 and keys[0][0] in spec.schema.unique:
                continue
            found.append((name, keys, document, ",".join(k for k, _ in keys) if unique else None))
        return found

    async def close(self) -> None:
        self._ready = False
        if self.client is not None:
            client, self.client = self.client, None
            await self.driver.close(client)

    async def ping(self) -> dict[str, Any]:
        with self._errors():
            await self.db.command("ping")
            info = await self.db.command("buildInfo")
        client = self._client()
        return {
            "store": "mongodb",
            "database": self.db_name,
            "servers": sorted(f"{host}:{port}" for host, port in client.nodes),  # type: ignore[attr-defined]
            "version": info.get("version"),
            "topology": client.topology_description.topology_type_name,  # type: ignore[attr-defined]
        }

    # -- errors ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, coll: MongoCollection | None = None) -> Iterator[None]:
        """Driver errors as store errors: duplicates, and everything else is unavailability."""
        try:
            yield
        except DuplicateKeyError as exc:
            raise DuplicateKey(self._duplicate_field(coll, dict(exc.details or {}), str(exc))) from None
        except ConnectionFailure as exc:  # unreachable, timed out, connection lost
            reason = str(exc).split(", Timeout: ")[0].split(" (configured timeouts")[0]
            raise StoreUnavailable(f"MongoDB is unreachable: {reason}") from exc
        except (PyMongoError, BSONError) as exc:
            log.error("MongoDB error: %r", exc)
            raise StoreUnavailable(f"MongoDB error: {exc}") from exc

    def _duplicate_field(self, coll: MongoCollection | None, details: dict[str, Any], message: str) -> str | None:
        pattern = details.get("keyPattern")
        if isinstance(pattern, dict) and pattern:
            return ",".join(pattern)
        if coll is None:
            return None
        found = _INDEX_IN_MESSAGE.search(details.get("errmsg") or message)
        if found:
            name = found.group(1)
            if name in coll.unique_indexes:
                return coll.unique_indexes[name]
            for field in dict.fromkeys(coll.unique_indexes.values()):  # servers that rename indexes
                if name.endswith("_" + field.replace(",", "_")):
                    return field
        fields = set(coll.unique_indexes.values())
        return fields.pop() if len(fields) == 1 else None

    def collection(self, spec: ResourceSpec) -> MongoCollection:
        """The open collection of a resource (its driver's handle, and how documents decode)."""
        if not self._ready:
            raise StoreUnavailable("the store is not open")
        return self._collections[spec.path]

    # -- writes ---------------------------------------------------------------------

    async def insert(self, spec: ResourceSpec, docs: Sequence[tuple[str, dict[str, Any]]]) -> list[Record]:
        coll = self.collection(spec)
        stored = [coll.encode(id_, 1, doc) for id_, doc in docs]
        if len(stored) == 1:
            with self._errors(coll):
                await coll.handle.insert_one(stored[0])
        else:
            try:
                with self._errors(coll):
                    try:
                        await coll.handle.insert_many(stored, ordered=True)
                    except BulkWriteError as exc:
                        errors = exc.details.get("writeErrors") or [{}]
                        if errors[0].get("code") == 11000:
                            raise DuplicateKeyError(errors[0].get("errmsg", ""), 11000, errors[0]) from None
                        raise
            except (DuplicateKey, StoreUnavailable):
                await self._undo_insert(coll, [d["_id"] for d in stored])
                raise
        return [Record(id_, 1, doc) for id_, doc in docs]

    async def _undo_insert(self, coll: MongoCollection, ids: list[ObjectId]) -> None:
        """Delete what a failed bulk insert wrote: the ids are new, so they are only ours."""
        try:
            await coll.handle.delete_many({"_id": {"$in": ids}})
        except PyMongoError as exc:  # unreachable now: the documents stay; say so loudly
            log.error("MongoDB: could not undo a failed bulk insert into %s of ids %s: %r",
                      coll.name, [str(i) for i in ids], exc)

    async def get(self, spec: ResourceSpec, id: str) -> Record:
        coll = self.collection(spec)
        with self._errors(coll):
            raw = await coll.handle.find_one({"_id": ObjectId(id)})
        if raw is None:
            raise NotFound(id)
        return coll.load(raw)

    async def replace(
        self, spec: ResourceSpec, id: str, doc: dict[str, Any], expected_version: int | None
    ) -> Record:
        coll = self.collection(spec)
        if expected_version is None:  # unconditional: condition on what is there now
            for _ in range(16):
                try:
                    return await self.replace(spec, id, doc, (await self.get(spec, id)).version)
                except VersionConflict:
                    continue
            raise StoreUnavailable(f"{id} keeps changing; the replace did not get through")
        version = expected_version + 1
        with self._errors(coll):
            result = await coll.handle.replace_one(
                {"_id": ObjectId(id), _VERSION: _version_predicate(expected_version)},
                coll.encode(id, version, doc),
            )
        if result.matched_count == 0:
            raise await self._missing_or_stale(coll, id)
        return Record(id, version, doc)

    async def delete(self, spec: ResourceSpec, id: str, expected_version: int | None) -> None:
        coll = self.collection(spec)
        selector: dict[str, Any] = {"_id": ObjectId(id)}
        if expected_version is not None:
            selector[_VERSION] = _version_predicate(expected_version)
        with self._errors(coll):
            result = await coll.handle.delete_one(selector)
        if result.deleted_count == 0:
            raise await self._missing_or_stale(coll, id)

    async def apply(self, writes: Sequence[Write]) -> None:
        """Every write in one multi-document transaction (a replica set or a sharded cluster).

        A standalone server has no transactions: the writes are then made one by one, each
        conditioned on its version, and when one fails those already made are undone (each
        undo conditioned on the version it wrote). What an undo cannot take back (someone
        changed the document in between, or the server went away) is logged as an error
        and the failure raised names it (TransactionIncomplete)."""
        try:
            async with self.driver.transaction(self._client()) as session:
                for write in writes:
                    await self._apply_one(write, session)
            return
        except OperationFailure as exc:
            if exc.code != 20 and "Transaction numbers" not in str(exc):  # 20: IllegalOperation
                raise StoreUnavailable(f"MongoDB error: {exc}") from exc
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB error: {exc}") from exc
        done: list[Write] = []
        try:
            for write in writes:
                await self._apply_one(write, None)
                done.append(write)
        except Exception:
            left = await self._undo(done)
            if left:
                raise TransactionIncomplete(left) from None
            raise

    async def _apply_one(self, write: Write, session: Any) -> None:
        coll = self.collection(write.spec)
        oid = ObjectId(write.id)
        with self._errors(coll):
            if write.kind == "insert":
                assert write.doc is not None
                await coll.handle.insert_one(coll.encode(write.id, 1, write.doc), session=session)
                return
            selector = {"_id": oid, _VERSION: _version_predicate(write.expected_version or 0)}
            if write.kind == "replace":
                assert write.doc is not None
                version = (write.expected_version or 0) + 1
                result = await coll.handle.replace_one(selector, coll.encode(write.id, version, write.doc),
                                                       session=session)
                changed = result.matched_count
            else:
                changed = (await coll.handle.delete_one(selector, session=session)).deleted_count
        if changed == 0:
            raise await self._missing_or_stale(coll, write.id)

    async def _undo(self, done: Sequence[Write]) -> list[str]:
        """Take back writes made without a transaction, newest first; the ids it could not."""
        left = []
        for write in reversed(done):
            coll = self.collection(write.spec)
            oid = ObjectId(write.id)
            try:
                with self._errors(coll):
                    if write.kind == "insert":
                        undone = (await coll.handle.delete_one({"_id": oid, _VERSION: 1})).deleted_count
                    elif write.kind == "replace" and write.previous is not None:
                        mine = (write.expected_version or 0) + 1
                        result = await coll.handle.replace_one(
                            {"_id": oid, _VERSION: mine},
                            coll.encode(write.id, mine + 1, write.previous))
                        undone = result.matched_count
                    elif write.previous is not None:
                        await coll.handle.insert_one(coll.encode(write.id, (write.expected_version or 0) + 1,
                                                                 write.previous))
                        undone = 1
                    else:
                        undone = 0
            except (StoreUnavailable, DuplicateKey):
                undone = 0
            if not undone:
                log.error("MongoDB: could not undo the %s of %s %s after a failed transaction",
                          write.kind, write.spec.path, write.id)
                left.append(f"{write.spec.path}/{write.id}")
        return left

    async def _missing_or_stale(self, coll: MongoCollection, id: str) -> Exception:
        with self._errors(coll):
            exists = await coll.handle.find_one({"_id": ObjectId(id)}, {"_id": 1})
        return VersionConflict(id) if exists is not None else NotFound(id)

    # -- reads ----------------------------------------------------------------------

    async def find(self, spec: ResourceSpec, query: Query) -> Page:
        coll = self.collection(spec)
        selector = compile_filter(coll, query.conditions)
        if query.after is not None:
            selector = {"$and": [selector, _keyset(coll, query)]} if selector else _keyset(coll, query)
        order = [(_path(k.path), DESCENDING if k.descending else ASCENDING) for k in query.order]
        budget = self.budget(spec)
        # maxTimeMS: the server itself stops the query past the budget (ExecutionTimeout);
        # the page and the count each get the whole budget.
        limits: dict[str, Any] = {"maxTimeMS": max(1, round(budget * 1000))} if budget else {}
        with self._errors(coll):
            try:
                raws = await coll.handle.find(
                    selector, sort=order, skip=query.offset, limit=query.per_page + 1, max_time_ms=limits.get("maxTimeMS")
                ).to_list(None)
                total = None if query.keyset else await coll.handle.count_documents(selector, **limits)
            except ExecutionTimeout:
                raise QueryTimeout(budget or 0) from None
        records = [coll.load(raw) for raw in raws[: query.per_page]]
        return Page(records, total, len(raws) > query.per_page)

    # -- bringing stored documents to the model --------------------------------------

    async def count(self, spec: ResourceSpec) -> int:
        coll = self.collection(spec)
        with self._errors(coll):
            return int(await coll.handle.count_documents({}))

    async def scan(self, spec: ResourceSpec, after: str | None, limit: int) -> list[Record]:
        coll = self.collection(spec)
        selector = {"_id": {"$gt": ObjectId(after)}} if after else {}
        with self._errors(coll):
            raws = await coll.handle.find(selector, sort=[("_id", ASCENDING)], limit=limit).to_list(None)
        return [coll.decode(raw) for raw in raws]

    async def rewrite(self, spec: ResourceSpec, rewrites: Sequence[Rewrite]) -> Rewritten:
        """One unordered bulk of updates, each conditioned on ``_v``, which it leaves as it is. An
        update (not a replace) that sets the mark and not ``_v``: the change feed's leader tells it
        from a user's write by that (bzzlite/feeds/mongo.py)."""
        coll = self.collection(spec)
        done = Rewritten()
        if not rewrites:
            return done
        operations = []
        for rewrite in rewrites:
            encoded = coll.encode(rewrite.id, rewrite.version, rewrite.doc)
            del encoded["_id"], encoded[_VERSION]
            update: dict[str, Any] = {"$set": encoded}
            gone = [key for key in rewrite.stored if key not in encoded]
            if gone:
                update["$unset"] = dict.fromkeys(gone, "")
            selector = {"_id": ObjectId(rewrite.id), _VERSION: _version_predicate(rewrite.version)}
            operations.append(UpdateOne(selector, update))
        failed: set[int] = set()
        with self._errors(coll):
            try:
                result = await coll.handle.bulk_write(operations, ordered=False)
                matched = result.matched_count
            except BulkWriteError as exc:
                matched = exc.details.get("nMatched", 0)
                for error in exc.details.get("writeErrors") or []:
                    index = error.get("index")
                    if error.get("code") != 11000 or not isinstance(index, int):
                        raise
                    failed.add(index)
                    done.duplicates[rewrites[index].id] = self._duplicate_field(coll, error, error.get("errmsg", ""))
        done.written = matched
        if matched + len(failed) < len(rewrites):  # some changed or went away meanwhile: which ones
            left = [r for i, r in enumerate(rewrites) if i not in failed]
            with self._errors(coll):
                current = await coll.handle.find({"_id": {"$in": [ObjectId(r.id) for r in left]}},
                                                 {_VERSION: 1, MARK: 1}).to_list(None)
            marks = {str(raw["_id"]): (raw.get(_VERSION), raw.get(MARK)) for raw in current}
            done.conflicts = [r.id for r in left
                              if marks.get(r.id) != (_version_predicate(r.version), coll.versions.mark)]
        return done


# -- query compilation --------------------------------------------------------------------


def _value(coll: MongoCollection, path: str, value: Any) -> Any:
    try:
        return coll.to_objectid(path, value)
    except (InvalidId, TypeError):
        return _Invalid


class _InvalidValue:
    """An id that cannot be an ObjectId: it equals no stored value."""


_Invalid = _InvalidValue()


def _condition(coll: MongoCollection, cond: Condition) -> dict[str, Any]:
    """One condition with MongoDB's null semantics, which the query language follows."""
    path, op, value = _path(cond.path), cond.op, cond.value
    if op == "exists":
        return {path: {"$exists": True, "$ne": None}} if value else {path: {"$eq": None}}
    if op in ("in", "nin"):
        values = [v for v in (_value(coll, path, v) for v in value) if v is not _Invalid]
        return {path: {"$" + op: values}}
    if path == "_id" and op in ("contains", "startswith"):
        op = "eq"  # an id is 24 characters: the only 24-character substring is the id itself
    converted = _value(coll, path, value)
    if converted is _Invalid:
        return {} if op == "ne" else _NEVER
    if op == "eq":
        return {path: {"$eq": converted}}
    if op == "ne":
        return {path: {"$ne": converted}}
    if converted is None:  # ordering and text operators never match null
        return _NEVER
    if op in ("gt", "gte", "lt", "lte"):
        return {path: {"$" + op: converted}}
    if op == "contains":
        return {path: {"$regex": escape_regex(converted)}}
    if op == "startswith":
        return {path: {"$regex": "^" + escape_regex(converted)}}
    raise ValueError(op)  # unreachable: operators are validated by the query parser


def compile_filter(coll: MongoCollection, conditions: Sequence[Condition]) -> dict[str, Any]:
    """A MongoDB filter for ANDed conditions (``{}`` for none).

    Paths are model field names and operators come from the query language's allowlist;
    client values only ever appear as operands (and as escaped regex text).
    """
    parts = [c for c in (_condition(coll, cond) for cond in conditions) if c]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _keyset(coll: MongoCollection, query: Query) -> dict[str, Any]:
    """Documents strictly after the cursor in the query's order (nulls first ascending,
    last descending, which is MongoDB's order and the SQLite store's)."""
    assert query.after is not None
    keys = query.order
    values = [_value(coll, _path(k.path), v) for k, v in zip(keys, (*query.after.values, query.after.id))]
    if any(v is _Invalid for v in values):
        return _NEVER
    branches: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        path, value = _path(key.path), values[i]
        parts: list[dict[str, Any]] = [{_path(keys[j].path): {"$eq": values[j]}} for j in range(i)]
        if value is None:
            if key.descending:
                continue  # nothing comes after null in descending order
            parts.append({path: {"$ne": None}})
        elif key.descending:
            parts.append({"$or": [{path: {"$lt": value}}, {path: {"$eq": None}}]})
        else:
            parts.append({path: {"$gt": value}})
        branches.append(parts[0] if len(parts) == 1 else {"$and": parts})
    if not branches:
        return _NEVER
    return branches[0] if len(branches) == 1 else {"$or": branches}


__all__ = ["MongoStore", "collection_name", "compile_filter", "database_name", "escape_regex"]
