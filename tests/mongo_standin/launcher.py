"""TEST INFRASTRUCTURE ONLY -- a stand-in for MongoDB in tests, never for production.

Runs the nx-27017 MongoDB wire-protocol server (SQLite via neosqlite) on 127.0.0.1 and
closes the gaps measured in it (note "mongodb-in-tests"); each fix names its gap.
Written for nx-27017==0.8.1 and neosqlite==1.17.2: it patches their internals, so run
tests/test_mongo_standin.py on any version bump. Exits at once on SIGTERM/SIGINT, and
when the process that started it is gone.

    python -m tests.mongo_standin.launcher --port P --data-dir D [--pid-file F] [--log-file F]
"""

import argparse
import asyncio
import contextlib
import copy
import functools
import logging
import operator
import os
import re
import signal
import sqlite3
import threading
import time

import bson
from neosqlite.binary import Binary as NeoBinary
from neosqlite.collection import Collection
from neosqlite.collection.cursor import Cursor
from neosqlite.collection.query_helper import QueryHelper, get_force_fallback, set_force_fallback
from neosqlite.collection.sql_translator_unified import SQLTranslator
from neosqlite.collection.type_correction import normalize_id_query_for_db
from neosqlite.objectid import ObjectId as NeoObjectId
from nx_27017.handler import NeoSQLiteHandler, _bulk_write_error
from nx_27017.server import run_server


def patch(cls, name):
    """Decorator: the function replaces cls.name; it calls the original as ORIG[name]."""
    def install(fn):
        ORIG[name] = getattr(cls, name)
        setattr(cls, name, fn)
        return fn
    return install


ORIG: dict = {}


# --- bson <-> neosqlite values ------------------------------------------------------------
# Gaps: ObjectId not converted in aggregate pipelines, count and distinct filters; Binary
# subtypes (UUID = 4) dropped; bson Regex unsupported. Applied to every command and reply.
def walk(value, leaf):
    if isinstance(value, dict):
        return {k: walk(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [walk(v, leaf) for v in value]
    return leaf(value)


def to_neo(v):
    if isinstance(v, bson.ObjectId):
        return NeoObjectId(v.binary)
    if isinstance(v, bson.Binary):
        return NeoBinary(bytes(v), v.subtype)
    return v.try_compile() if isinstance(v, bson.Regex) else v


def to_bson(v):
    if isinstance(v, NeoObjectId):
        return bson.ObjectId(v.binary)
    return bson.Binary(bytes(v), v.subtype) if isinstance(v, NeoBinary) else v


# --- MongoDB filter semantics for neosqlite's Python evaluation mode ----------------------
# Gaps: null vs missing ({"x": None}, $ne, $exists), dotted paths into lists of
# sub-documents, $not, regex on array members: neosqlite's own matcher gets them wrong.
MISSING = object()
CMP = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def values_at(value, parts):
    """Every value a dotted path reaches, descending into arrays as MongoDB does."""
    if not parts:
        return [value]
    if isinstance(value, dict):
        return values_at(value[parts[0]], parts[1:]) if parts[0] in value else [MISSING]
    if isinstance(value, list):
        out = [x for e in value if isinstance(e, dict) for x in values_at(e, parts)]
        if parts[0].isdigit() and int(parts[0]) < len(value):
            out += values_at(value[int(parts[0])], parts[1:])
        return out or [MISSING]
    return [MISSING]


def equal(a, b):
    if isinstance(b, re.Pattern):
        return isinstance(a, str) and b.search(a) is not None
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def has(values, target):
    """MongoDB equality: null also matches missing, an array also matches by a member."""
    return any((target is None) if v is MISSING else (
        equal(v, target) or (isinstance(v, list) and any(equal(m, target) for m in v)))
        for v in values)


def compare(fn, values, arg):
    for a in (m for v in values for m in ([v, *v] if isinstance(v, list) else [v])):
        with contextlib.suppress(TypeError):  # MongoDB compares only within a type
            if a is not MISSING and isinstance(a, bool) == isinstance(arg, bool) and fn(a, arg):
                return True
    return False


def match_op(values, op, arg, spec, fallback):
    if op in CMP:
        return compare(CMP[op], values, arg)
    if op == "$regex" and not isinstance(arg, re.Pattern):
        flags = [getattr(re, f.upper()) for f in spec.get("$options", "") if f in "imsx"]
        arg = re.compile(arg, sum(flags))
    if op == "$elemMatch":
        on_value = all(k.startswith("$") and k not in ("$and", "$or", "$nor") for k in arg)
        return any(match_field([m], arg, fallback) if on_value
                   else isinstance(m, dict) and match(arg, m, fallback)
                   for v in values if isinstance(v, list) for m in v)
    ops = {"$eq": lambda: has(values, arg), "$regex": lambda: has(values, arg),
           "$ne": lambda: not has(values, arg),
           "$in": lambda: any(has(values, t) for t in arg),
           "$nin": lambda: not any(has(values, t) for t in arg),
           "$all": lambda: bool(arg) and all(has(values, t) for t in arg),
           "$exists": lambda: any(v is not MISSING for v in values) == bool(arg),
           "$size": lambda: any(isinstance(v, list) and len(v) == arg for v in values),
           "$not": lambda: not match_field(values, arg, fallback)}
    return ops[op]() if op in ops else fallback(op, arg)  # $type, $mod...: neosqlite's


def match_field(values, cond, fallback):
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        return all(match_op(values, op, arg, cond, fallback)
                   for op, arg in cond.items() if op != "$options")
    return has(values, cond)


def match(query, doc, fallback):
    for key, cond in query.items():
        if key in ("$and", "$or", "$nor"):
            hits = [match(q, doc, fallback) for q in cond]
            ok = all(hits) if key == "$and" else any(hits) if key == "$or" else not any(hits)
        elif key.startswith("$"):  # $expr, $text, $jsonSchema: neosqlite's
            ok = fallback(key, cond)
        else:
            ok = match_field(values_at(doc, key.split(".")), cond,
                             lambda op, arg, key=key: fallback(key, {op: arg}))
        if not ok:
            return False
    return True


@patch(QueryHelper, "_apply_query")
def _apply_query(self, query, doc):
    fallback = lambda k, v: ORIG["_apply_query"](self, {k: v}, doc)  # noqa: E731
    return doc is not None and match(query, doc, fallback)


# Gap: writes, counts and distinct send filters to SQL even in evaluation mode, after
# rewriting them (ObjectId -> str, a field "id" -> "_id", "123" -> 123). Here only a pure
# _id filter reaches SQL, and only SQL sees it rewritten (an upsert keeps its ObjectId).
def is_pure_id(flt):
    return isinstance(flt, dict) and list(flt) == ["_id"] and not isinstance(flt["_id"], dict)


@patch(SQLTranslator, "translate_match")
def _translate_match(self, spec, context="direct"):
    if get_force_fallback() and spec and not is_pure_id(spec):
        return None, []  # the callers' "use Python" answer: they then use _apply_query
    return ORIG["translate_match"](self, normalize_id_query_for_db(spec), context)


QueryHelper._normalize_id_query = lambda self, query: query

# Gap: find() hands a filter holding a datetime-looking value (an ISO-8601 string too) to
# neosqlite's DateTimeQueryProcessor, which compares strings as truncated datetimes and
# drops conditions: "…08:00:00.5Z" == "…08:00:00Z". MongoDB compares strings as strings;
# the evaluation mode above does, so that processor is never used.
Cursor._contains_datetime_operations = lambda self, query: False


# --- projection: Gap: dotted paths in an inclusion ({"sub.x": 1}) are dropped ----------------
def _include(src, dst, parts):
    if parts[0] not in src:
        return
    val = src[parts[0]]
    if len(parts) == 1:
        dst[parts[0]] = val
    elif isinstance(val, dict):
        _include(val, dst.setdefault(parts[0], {}), parts[1:])
    elif isinstance(val, list):
        subs = [e for e in val if isinstance(e, dict)]
        for e, d in zip(subs, dst.setdefault(parts[0], [{} for _ in subs]), strict=True):
            _include(e, d, parts[1:])


@patch(QueryHelper, "_apply_projection")
def _apply_projection(self, projection, doc):
    if not projection or not all(v in (0, 1) for v in projection.values()) or not any(
            v and "." in k for k, v in projection.items()):
        return ORIG["_apply_projection"](self, projection, doc)
    out = {"_id": doc["_id"]} if projection.get("_id", 1) and "_id" in doc else {}
    for key, v in projection.items():
        if v and key != "_id":
            _include(doc, out, key.split("."))
    return out


# --- updates ------------------------------------------------------------------------------
# Gap: in evaluation mode $inc/$unset/$push/$addToSet/$min/$max/$mul/$pop/$setOnInsert
# ignore dotted paths ({"$inc": {"a.b": 1}} adds a key "a.b"): apply them on the parent.
@patch(QueryHelper, "_perform_python_update")
def _python_update(self, doc_id, spec, original, array_filters=None, query_filter=None):
    doc, rest = copy.deepcopy(original), {}
    for op, fields in spec.items():
        for key, arg in fields.items():
            if "." not in key or "$" in key or op in ("$set", "$pull", "$currentDate", "$rename"):
                rest.setdefault(op, {})[key] = arg
                continue
            *path, leaf = key.split(".")
            parent = doc
            for part in path:
                if isinstance(parent, list):
                    parent = parent[int(part)]
                elif op in ("$unset", "$pop") and part not in parent:
                    break
                else:
                    parent = parent.setdefault(part, {})
            else:  # doc_id 0: compute only (and apply $setOnInsert only on an insert)
                if op != "$setOnInsert" or doc_id == 0:
                    new = ORIG["_perform_python_update"](self, 0, {op: {leaf: arg}}, parent)[0]
                    parent.clear()
                    parent.update(new)
    new, _ = ORIG["_perform_python_update"](
        self, doc_id, rest, doc, array_filters, query_filter)
    return new, new != original


# --- Gap: findAndModify swallows errors (a duplicate key gives None, not error 11000) -----
ERRORS: list[Exception] = []


def _remember_error(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            ERRORS.append(exc)
            raise
    return wrapper


for _name in ("find_one_and_update", "find_one_and_replace", "find_one_and_delete"):
    setattr(Collection, _name, _remember_error(getattr(Collection, _name)))


# --- collection names ---------------------------------------------------------------------
# Gap: a collection named like an SQL keyword (ODMantic model Order -> "order", "group")
# or not a plain identifier ("my-things") breaks neosqlite's SQL. Such a collection is
# stored as table "nx_<hex of the name>", and replies show the real name.
GRIDFS = (".files", ".chunks")  # nx-27017 serves <bucket>.files/.chunks itself


@functools.cache
def table_name(name):
    with contextlib.suppress(sqlite3.Error):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            sqlite3.connect(":memory:").execute(f"CREATE TABLE {name} (x)")
            return name
    return "nx_" + name.encode().hex()


def coll_name(table):
    with contextlib.suppress(ValueError):
        return bytes.fromhex(table[3:]).decode() if table.startswith("nx_") else table
    return table


def rename_in(body):
    cmd = next(iter(body), None)
    name = body.get(cmd)
    if isinstance(name, str) and cmd != "renameCollection" and not name.endswith(GRIDFS):
        body[cmd] = table_name(name)
    if isinstance(body.get("collection"), str):  # getMore
        body["collection"] = table_name(body["collection"])
    for stage in body.get("pipeline") or []:
        if "from" in (stage.get("$lookup") or {}):
            stage["$lookup"]["from"] = table_name(stage["$lookup"]["from"])


def rename_out(resp):
    cursor = resp.get("cursor")
    if isinstance(cursor, dict) and "ns" in cursor:
        db, _, table = cursor["ns"].partition(".")
        cursor["ns"] = f"{db}.{coll_name(table)}"
        if table == "$cmd.listCollections":
            for info in cursor.get("firstBatch", []):
                info["name"] = coll_name(info["name"])
    return resp


# --- Gap: ODMantic's $lookup form (let/pipeline, for Reference fields): KeyError ----------
# Resolved here when its sub-pipeline starts {"$match": {"$expr": {"$eq": ["$f", "$$v"]}}}.
def get_path(doc, path):
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def aggregate(db, table, pipeline):
    """neosqlite runs the stages before the first such $lookup; the rest run here."""
    cut = next((i for i, s in enumerate(pipeline) if "pipeline" in s.get("$lookup", {})),
               len(pipeline))
    docs = db[table].aggregate(pipeline[:cut]).to_list() if cut else list(db[table].find())
    for stage in pipeline[cut:]:
        if "$lookup" in stage:
            docs = lookup(db, docs, stage["$lookup"])
        elif "$unwind" in stage:
            docs = unwind(docs, stage["$unwind"])
        else:
            raise NotImplementedError(f"stage after a $lookup with a pipeline: {stage}")
    return docs


def lookup(db, docs, spec):
    field, var = (s.lstrip("$") for s in spec["pipeline"][0]["$match"]["$expr"]["$eq"])
    keys = [get_path(d, spec["let"][var][1:]) for d in docs]
    found = aggregate(db, table_name(spec["from"]), [
        {"$match": {field: {"$in": [k for k in keys if k is not None]}}},
        *spec["pipeline"][1:]])
    by_key = {}
    for f in found:
        by_key.setdefault(repr(get_path(f, field)), []).append(f)
    for d, k in zip(docs, keys, strict=True):
        d[spec["as"]] = by_key.get(repr(k), []) if k is not None else []
    return docs


def unwind(docs, spec):
    spec = {"path": spec} if isinstance(spec, str) else spec
    path, keep = spec["path"][1:], spec.get("preserveNullAndEmptyArrays", False)
    out = []
    for d in docs:
        val = d.get(path)
        if isinstance(val, list) and val:
            out += [{**d, path: v} for v in val]
        elif keep or val not in (None, []):
            out.append({k: v for k, v in d.items() if k != path or v != []})
    return out


# --- Gap: a replacement upserted by replace_one/find_one_and_replace loses the _id of its
# filter (it gets a new ObjectId).
def upsert_keeps_id(msg, body):
    ops = [u for _, doc in msg["sections"] if isinstance(doc, dict)
           for u in doc.get("updates") or []]
    if "findAndModify" in body:
        ops.append({"q": body.get("query"), "u": body.get("update"), "upsert": body.get("upsert")})
    for op in ops:
        q, u = op.get("q") or {}, op.get("u")
        if op.get("upsert") and isinstance(u, dict) and u and "_id" in q and not any(
                k.startswith("$") for k in u) and not isinstance(q["_id"], dict):
            u.setdefault("_id", q["_id"])


# --- the handler --------------------------------------------------------------------------
LOCK = threading.RLock()  # one command at a time: the evaluation mode is process-wide


class StandinHandler(NeoSQLiteHandler):
    def close_streams_for_connection(self, conn_id):
        # Gap: a client connection that closes ends the cursors and change streams opened on
        # it, and a getMore then answers an empty, finished cursor: the stream ends silently.
        # MongoDB's cursors belong to no connection (they end exhausted, killed, with their
        # session or after 10 idle minutes), and PyMongo's asyncio client closes any
        # connection whose operation was cancelled. Keep them (a test session is short).
        pass

    def handle_insert(self, msg):
        return self._handle(msg, super().handle_insert)

    def handle_command(self, msg):
        return self._handle(msg, super().handle_command)

    def _handle(self, msg, handle):
        with LOCK:
            msg["sections"] = [(kind, walk(doc, to_neo)) for kind, doc in msg["sections"]]
            body = next((doc for kind, doc in msg["sections"] if kind == "body"), {})
            rename_in(body)
            upsert_keeps_id(msg, body)
            # Gaps: $push of sub-documents stored as JSON strings, upsert with _id in the
            # filter storing a string _id, null, dotted paths, datetime ranges: neosqlite's
            # SQL fast path is wrong, its Python evaluation mode (with the fixes above) is
            # right. Only pure _id reads keep the fast path.
            read = body.get("filter") if "find" in body else body.get("query", {})
            set_force_fallback(not (("find" in body or "count" in body) and is_pure_id(read)))
            ERRORS.clear()
            if "distinct" in body and not body["distinct"].endswith(GRIDFS):
                resp = self._distinct(body)
            elif "aggregate" in body and any("pipeline" in s.get("$lookup", {})
                                           for s in body.get("pipeline", [])):
                resp = self._aggregate(msg, body)
            else:
                resp = handle(msg)[1]
            if "findAndModify" in body and ERRORS:
                err = _bulk_write_error(ERRORS[-1], 0)
                resp = {"ok": 0, "errmsg": err["errmsg"], "code": err["code"],
                        "codeName": "DuplicateKey" if err["code"] == 11000 else "Error"}
            return msg["request_id"], walk(rename_out(resp), to_bson)

    def _distinct(self, body):
        # Gap: distinct ignores a filter that its SQL path cannot translate.
        values = []
        for doc in self.get_database(body.get("$db", "test"))[body["distinct"]].find(
                body.get("query") or {}):
            for v in values_at(doc, body["key"].split(".")):
                for m in v if isinstance(v, list) else [v]:
                    if m is not MISSING and m not in values:
                        values.append(m)
        return {"ok": 1, "values": values}

    def _aggregate(self, msg, body):
        db_name, table = body.get("$db", "test"), body["aggregate"]
        docs = aggregate(self.get_database(db_name), table, body["pipeline"])
        first, cursor_id = self._split_first_batch(
            docs, self._first_batch_size(body), f"{db_name}.{table}", db_name,
            owner=msg.get("_conn_id"))
        return {"ok": 1, "cursor": {"id": cursor_id, "ns": f"{db_name}.{table}",
                                    "firstBatch": first}}


# --- main ---------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description="TEST ONLY: MongoDB stand-in (nx-27017)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True, help="a directory, or 'memory'")
    p.add_argument("--pid-file")
    p.add_argument("--log-file")
    args = p.parse_args(argv)
    logging.basicConfig(filename=args.log_file, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(str(os.getpid()))

    def stop(*_):
        # Gap: the plain server can hang on shutdown (it waits for its worker threads).
        # SQLite has committed every acknowledged write, so leave at once.
        if args.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(args.pid_file)
        os._exit(0)

    def stop_with_parent(parent):  # no orphan server if the test run is killed
        while os.getppid() == parent:
            time.sleep(0.5)
        stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=stop_with_parent, args=(os.getppid(),), daemon=True).start()
    asyncio.run(run_server("127.0.0.1", args.port, StandinHandler(data_dir=args.data_dir)))


if __name__ == "__main__":
    main()
