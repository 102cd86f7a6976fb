"""Self-test: the MongoDB behaviors the document store relies on, through each driver it runs
on (PyMongo's asyncio API, the default, and motor), and ODMantic's own engine.

Runs against the nx-27017 stand-in by default, or a real MongoDB when
BZZLITE_TEST_MONGO_URL is set; every expectation here is what real MongoDB does.
A failure here means the stand-in (or a pinned version bump) broke a behavior:
fix or mark it here, not in the store's tests.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import odmantic.exceptions
import pytest
from bson import Decimal128, ObjectId, Regex
from odmantic import AIOEngine, EmbeddedModel, Field, Model, Reference
from pymongo import (
    ASCENDING,
    DESCENDING,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    ReturnDocument,
    UpdateOne,
)
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from bzzlite.settings import MONGO_DRIVERS
from bzzlite.stores._mongo_drivers import driver
from tests.mongo_standin.fixture import is_standin


@pytest.fixture(params=MONGO_DRIVERS)
def run(request, mongo_db_url):
    """run(body): await body(db) on a fresh database, in its own event loop, through each driver."""
    chosen = driver(request.param)

    def runner(body, **options):
        async def main():
            client = chosen.client(mongo_db_url, uuidRepresentation="standard", tz_aware=True,
                                   serverSelectionTimeoutMS=5000, **options)
            try:
                return await body(client.get_default_database())
            finally:
                await chosen.close(client)

        return asyncio.run(main())

    runner.driver = chosen
    return runner


async def ids(cursor):
    return sorted(d["k"] for d in await cursor.to_list(None))


# --------------------------------------------------------------------------- basics


def test_ping(run):
    async def body(db):
        assert (await db.command("ping"))["ok"] == 1

    run(body)


def test_crud(run):
    async def body(db):
        c = db.things
        res = await c.insert_one({"name": "a", "n": 1})
        assert isinstance(res.inserted_id, ObjectId)
        await c.insert_many([{"name": "b", "n": 2}, {"name": "c", "n": 3}])
        assert (await c.find_one({"_id": res.inserted_id}))["name"] == "a"
        upd = await c.update_one({"name": "b"}, {"$set": {"n": 20}, "$inc": {"v": 1}})
        assert (upd.matched_count, upd.modified_count) == (1, 1)
        assert await c.find_one({"name": "b"}, {"_id": 0}) == {"name": "b", "n": 20, "v": 1}
        rep = await c.replace_one({"name": "c"}, {"name": "c", "m": 1})
        assert rep.modified_count == 1
        assert await c.find_one({"name": "c"}, {"_id": 0}) == {"name": "c", "m": 1}
        many = await c.update_many({}, {"$set": {"all": True}})
        assert many.modified_count == 3
        assert (await c.delete_one({"name": "a"})).deleted_count == 1
        assert await c.find_one({"_id": res.inserted_id}) is None
        assert (await c.delete_many({})).deleted_count == 2
        assert await c.count_documents({}) == 0
        res = await c.bulk_write([InsertOne({"k": 1}), InsertOne({"k": 2}),
                                  UpdateOne({"k": 1}, {"$set": {"x": 1}}),
                                  ReplaceOne({"k": 2}, {"k": 2, "r": 1}), DeleteOne({"k": 1})])
        assert (res.inserted_count, res.modified_count, res.deleted_count) == (2, 2, 1)
        assert await c.find({}, {"_id": 0}).to_list(None) == [{"k": 2, "r": 1}]

    run(body)


def test_concurrent_operations(run):
    async def body(db):
        await asyncio.gather(*[db.c.insert_one({"k": i}) for i in range(100)],
                             *[db.c.count_documents({"k": {"$gte": 0}}) for _ in range(20)])
        assert await db.c.count_documents({"k": {"$gte": 0}}) == 100
        assert await ids(db.c.find({"k": {"$lt": 3}})) == [0, 1, 2]

    run(body)


def test_objectid_round_trip(run):
    async def body(db):
        ref, other = ObjectId(), ObjectId()
        doc = {"_id": ObjectId(), "ref": ref, "refs": [ref, other], "sub": {"ref": ref}}
        await db.c.insert_one(doc)
        got = await db.c.find_one({"_id": doc["_id"]})
        assert got == doc and isinstance(got["_id"], ObjectId)
        assert isinstance(got["refs"][1], ObjectId)
        for q in ({"ref": ref}, {"refs": other}, {"sub.ref": ref}, {"refs": {"$in": [other]}},
                  {"_id": {"$in": [doc["_id"], ObjectId()]}}):
            assert (await db.c.find_one(q)) == doc, q
        assert await db.c.find_one({"ref": other}) is None

    run(body)


def test_uuid_and_datetime_round_trip(run):
    async def body(db):
        u = uuid.uuid4()
        t0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
        await db.c.insert_many([{"k": i, "u": uuid.uuid4(), "t": t0 + timedelta(days=i)}
                                for i in range(3)] + [{"k": 9, "u": u, "t": t0}])
        got = await db.c.find_one({"u": u})
        assert got["k"] == 9 and got["u"] == u and got["t"] == t0
        rng = {"t": {"$gte": t0 + timedelta(days=1), "$lt": t0 + timedelta(days=3)}}
        assert await ids(db.c.find(rng)) == [1, 2]
        agg = db.c.aggregate([{"$match": rng}, {"$sort": {"k": 1}}])
        if inspect.isawaitable(agg):  # PyMongo's asyncio API runs it here; motor on the first read
            agg = await agg
        assert [d["k"] for d in await agg.to_list(None)] == [1, 2]
        cur = db.c.find({"k": {"$lt": 9}}, sort=[("t", DESCENDING)])
        assert [d["k"] for d in await cur.to_list(None)] == [2, 1, 0]

    run(body)


# --------------------------------------------------------------------------- filters


DOCS = [
    {"k": 0, "n": 1, "s": "apple", "tags": ["red", "fruit"]},
    {"k": 1, "n": 5, "s": "banana", "tags": ["yellow", "fruit"]},
    {"k": 2, "n": 10, "s": "cherry", "tags": []},
    {"k": 3, "n": None, "s": "Apricot"},  # n is null
    {"k": 4, "s": "date"},  # n is missing
]


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"n": 5}, [1]),
        ({"n": {"$eq": 5}}, [1]),
        ({"n": {"$ne": 5}}, [0, 2, 3, 4]),  # $ne matches null and missing
        ({"n": {"$gt": 1}}, [1, 2]),
        ({"n": {"$gte": 1}}, [0, 1, 2]),
        ({"n": {"$lt": 10}}, [0, 1]),
        ({"n": {"$lte": 10}}, [0, 1, 2]),
        ({"n": {"$gt": 1, "$lt": 10}}, [1]),
        ({"n": {"$in": [1, 10]}}, [0, 2]),
        ({"n": {"$nin": [1, 10]}}, [1, 3, 4]),  # $nin matches null and missing
        ({"$and": [{"n": {"$gte": 1}}, {"s": {"$ne": "apple"}}]}, [1, 2]),
        ({"$or": [{"n": 1}, {"s": "date"}]}, [0, 4]),
        ({"$or": [{"n": {"$gt": 5}}, {"$and": [{"k": {"$lt": 2}}, {"n": 1}]}]}, [0, 2]),
        ({"s": "apple", "n": 1}, [0]),
        # null vs missing
        ({"n": None}, [3, 4]),  # equality with null matches null and missing
        ({"n": {"$ne": None}}, [0, 1, 2]),
        ({"n": {"$in": [None, 5]}}, [1, 3, 4]),
        ({"n": {"$exists": True}}, [0, 1, 2, 3]),  # a null-valued field exists
        ({"n": {"$exists": False}}, [4]),
        ({"n": {"$exists": True, "$ne": None}}, [0, 1, 2]),
        # arrays: equality matches a member, or the whole array
        ({"tags": "fruit"}, [0, 1]),
        ({"tags": {"$in": ["red", "yellow"]}}, [0, 1]),
        ({"tags": ["red", "fruit"]}, [0]),
        ({"tags": {"$nin": ["red"]}}, [1, 2, 3, 4]),
        ({"tags": {"$size": 0}}, [2]),
        ({"tags": {"$all": ["fruit", "red"]}}, [0]),
        # regex: anchored prefix and substring, as compiled pattern, bson Regex, $regex
        ({"s": re.compile("^ap")}, [0]),
        ({"s": re.compile("^ap", re.IGNORECASE)}, [0, 3]),
        ({"s": Regex("an")}, [1]),
        ({"s": {"$regex": "rr"}}, [2]),
        ({"s": {"$regex": "^A", "$options": "i"}}, [0, 3]),
        ({"s": {"$regex": re.compile("e$")}}, [0, 4]),
        ({"s": {"$not": re.compile("^a")}}, [1, 2, 3, 4]),
    ],
)
def test_filter(run, query, expected):
    async def body(db):
        await db.c.insert_many([dict(d) for d in DOCS])
        assert await ids(db.c.find(query)) == expected
        assert await db.c.count_documents(query) == len(expected)
        assert sorted(await db.c.distinct("k", query)) == expected
        res = await db.c.update_many(query, {"$set": {"hit": True}})
        assert res.matched_count == len(expected)
        assert await ids(db.c.find({"hit": True})) == expected
        assert (await db.c.delete_many(query)).deleted_count == len(expected)
        assert await db.c.count_documents({}) == len(DOCS) - len(expected)

    run(body)


def test_iso_date_strings_compare_as_strings(run):
    """The store keeps dates as ISO-8601 text; MongoDB compares that text as strings."""
    async def body(db):
        await db.c.insert_many([
            {"k": 0, "at": "2024-01-10T08:00:00.000000Z", "n": [1, 2]},
            {"k": 1, "at": "2024-01-10T08:00:00.500000Z", "n": []},
            {"k": 2, "at": "2023-12-31T00:00:00.000000Z", "n": [2]},
        ])
        for query, expected in [
            ({"at": "2024-01-10T08:00:00.000000Z"}, [0]),
            ({"at": {"$gt": "2024-01-10T08:00:00.000000Z"}}, [1]),
            ({"at": {"$lt": "2024-01-01"}}, [2]),
            ({"$and": [{"n": 2}, {"at": {"$lt": "2024-01-01"}}]}, [2]),
        ]:
            assert await ids(db.c.find(query)) == expected, query
            assert await db.c.count_documents(query) == len(expected), query

    run(body)


def test_dotted_paths(run):
    async def body(db):
        await db.c.insert_many([
            {"k": 0, "addr": {"city": "Oslo", "geo": {"zip": "0150"}},
             "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}]},
            {"k": 1, "addr": {"city": "Rome"}, "items": [{"sku": "b", "qty": 1}]},
            {"k": 2, "addr": {"city": None}, "items": []},
            {"k": 3},
        ])
        assert await ids(db.c.find({"addr.city": "Oslo"})) == [0]
        assert await ids(db.c.find({"addr.geo.zip": "0150"})) == [0]
        assert await ids(db.c.find({"addr.city": None})) == [2, 3]
        assert await ids(db.c.find({"addr.city": {"$exists": True}})) == [0, 1, 2]
        assert await ids(db.c.find({"items.sku": "b"})) == [0, 1]
        assert await ids(db.c.find({"items.sku": {"$in": ["a"]}})) == [0]
        assert await ids(db.c.find({"items.qty": {"$gt": 2}})) == [0]
        # without $elemMatch the two conditions may hold in different elements
        assert await ids(db.c.find({"items.sku": "a", "items.qty": 5})) == [0]
        em = {"items": {"$elemMatch": {"sku": "a", "qty": 5}}}
        assert await ids(db.c.find(em)) == []
        em = {"items": {"$elemMatch": {"sku": "b", "qty": {"$gte": 5}}}}
        assert await ids(db.c.find(em)) == [0]

    run(body)


def test_sort_skip_limit_projection(run):
    async def body(db):
        await db.c.insert_many([
            {"k": i, "group": g, "n": n, "sub": {"x": -i}, "extra": "z"}
            for i, (g, n) in enumerate([("b", 2), ("a", 3), ("b", 1), ("a", 1), ("c", 2)])
        ])
        cur = db.c.find({}, sort=[("group", ASCENDING), ("n", DESCENDING)])
        assert [d["k"] for d in await cur.to_list(None)] == [1, 3, 0, 2, 4]
        cur = db.c.find({}, sort=[("n", DESCENDING), ("k", ASCENDING)], skip=1, limit=2)
        assert [d["k"] for d in await cur.to_list(None)] == [0, 4]
        cur = db.c.find({}, sort=[("sub.x", ASCENDING)], limit=2)
        assert [d["k"] for d in await cur.to_list(None)] == [4, 3]
        got = await db.c.find_one({"k": 1}, {"_id": 0, "k": 1, "sub.x": 1})
        assert got == {"k": 1, "sub": {"x": -1}}
        got = await db.c.find_one({"k": 1}, {"_id": 0, "extra": 0, "sub": 0})
        assert got == {"k": 1, "group": "a", "n": 3}
        # a batch larger than the first reply (getMore)
        await db.big.insert_many([{"k": i} for i in range(250)])
        cur = db.big.find({}, sort=[("k", ASCENDING)], batch_size=50)
        assert [d["k"] for d in await cur.to_list(None)] == list(range(250))

    run(body)


def test_count_and_distinct_with_id_filters(run):
    async def body(db):
        res = await db.c.insert_many([{"k": i, "g": i % 2} for i in range(5)])
        some = res.inserted_ids[:3]
        assert await db.c.count_documents({}) == 5
        assert await db.c.estimated_document_count() == 5
        assert await db.c.count_documents({"_id": some[0]}) == 1
        assert await db.c.count_documents({"_id": {"$in": some}}) == 3
        assert await db.c.count_documents({"_id": {"$in": some}, "g": 0}) == 2
        assert await db.c.count_documents({"_id": {"$ne": some[0]}}) == 4
        assert await db.c.count_documents({"_id": ObjectId()}) == 0
        assert sorted(await db.c.distinct("g", {"_id": {"$in": some}})) == [0, 1]
        assert await db.c.distinct("k", {"_id": some[1]}) == [1]

    run(body)


def test_field_named_id_and_odd_collection_names(run):
    async def body(db):
        oid = ObjectId()
        await db.c.insert_many([{"k": 0, "id": "123"}, {"k": 1, "id": 123}, {"k": 2, "id": oid}])
        assert await ids(db.c.find({"id": "123"})) == [0]
        assert await ids(db.c.find({"id": 123})) == [1]
        assert await ids(db.c.find({"id": oid})) == [2]
        assert (await db.c.update_one({"id": "123"}, {"$set": {"x": 1}})).matched_count == 1
        assert await ids(db.c.find({"x": 1})) == [0]
        for name in ("order", "group", "my-things", "a.b"):  # SQL keywords, punctuation
            await db[name].insert_one({"k": name})
            assert (await db[name].find_one({}, {"_id": 0})) == {"k": name}
            assert await db[name].count_documents({"k": name}) == 1
        assert sorted(await db.list_collection_names()) == ["a.b", "c", "group", "my-things",
                                                            "order"]
        await db.drop_collection("order")
        assert "order" not in await db.list_collection_names()

    run(body)


def test_update_operators(run):
    async def body(db):
        oid = (await db.c.insert_one({"a": {"b": 1}, "n": 1, "gone": 1})).inserted_id
        await db.c.update_one({"_id": oid}, {"$set": {"a.c": 2, "new.deep": 3},
                                             "$inc": {"n": 2, "a.b": 1}, "$unset": {"gone": ""}})
        assert await db.c.find_one({"_id": oid}, {"_id": 0}) == {
            "a": {"b": 2, "c": 2}, "n": 3, "new": {"deep": 3}}
        await db.c.update_one({"k": 1}, {"$set": {"s": 1}, "$setOnInsert": {"created": True}},
                              upsert=True)
        await db.c.update_one({"k": 1}, {"$set": {"s": 2}, "$setOnInsert": {"created": False}},
                              upsert=True)
        assert await db.c.find_one({"k": 1}, {"_id": 0}) == {"k": 1, "s": 2, "created": True}

    run(body)


# --------------------------------------------------------------------------- writes


def test_unique_index_duplicate_key(run):
    async def body(db):
        await db.c.create_index([("email", ASCENDING)], unique=True)
        await db.c.create_index([("a", ASCENDING), ("b", ASCENDING)], unique=True)
        await db.c.insert_one({"email": "x@y", "a": 1, "b": 1})
        a = await db.c.insert_one({"email": "z@y", "a": 1, "b": 2})
        with pytest.raises(DuplicateKeyError) as e:
            await db.c.insert_one({"email": "x@y", "a": 2, "b": 2})
        assert e.value.code == 11000
        with pytest.raises(DuplicateKeyError):  # compound unique index
            await db.c.insert_one({"email": "w@y", "a": 1, "b": 1})
        with pytest.raises(DuplicateKeyError):
            await db.c.update_one({"_id": a.inserted_id}, {"$set": {"email": "x@y"}})
        with pytest.raises(BulkWriteError) as e:
            await db.c.insert_many([{"email": "n1", "a": 5}, {"email": "x@y", "a": 6}])
        errors = e.value.details["writeErrors"]
        assert [(w["index"], w["code"]) for w in errors] == [(1, 11000)]
        assert e.value.details["nInserted"] == 1
        with pytest.raises(DuplicateKeyError) as e:
            await db.c.find_one_and_update({"_id": a.inserted_id}, {"$set": {"email": "x@y"}})
        assert e.value.code == 11000
        with pytest.raises(DuplicateKeyError):  # _id is always unique
            await db.c.insert_one({"_id": a.inserted_id})
        assert (await db.c.find_one({"_id": a.inserted_id}))["email"] == "z@y"
        assert await db.c.count_documents({}) == 3

    run(body)


def test_find_one_and_update_version_predicate(run):
    async def body(db):
        oid = (await db.c.insert_one({"_v": 3, "name": "a"})).inserted_id
        stale = await db.c.find_one_and_update(
            {"_id": oid, "_v": 2}, {"$set": {"name": "b"}, "$inc": {"_v": 1}},
            return_document=ReturnDocument.AFTER)
        assert stale is None
        fresh = await db.c.find_one_and_update(
            {"_id": oid, "_v": 3}, {"$set": {"name": "b"}, "$inc": {"_v": 1}},
            return_document=ReturnDocument.AFTER)
        assert fresh == {"_id": oid, "_v": 4, "name": "b"}
        before = await db.c.find_one_and_update(
            {"_id": oid, "_v": 4}, {"$set": {"name": "c"}, "$inc": {"_v": 1}})
        assert before["name"] == "b"
        replaced = await db.c.find_one_and_replace(
            {"_id": oid, "_v": 5}, {"_v": 6, "name": "d"}, return_document=ReturnDocument.AFTER)
        assert replaced == {"_id": oid, "_v": 6, "name": "d"}
        deleted = await db.c.find_one_and_delete({"_id": oid, "_v": 6})
        assert deleted["name"] == "d" and await db.c.count_documents({}) == 0

    run(body)


def test_upsert_with_id_in_filter(run):
    async def body(db):
        oid = ObjectId()
        res = await db.c.update_one({"_id": oid}, {"$set": {"name": "a"}}, upsert=True)
        assert res.upserted_id == oid
        got = await db.c.find_one({"_id": oid})
        assert got == {"_id": oid, "name": "a"} and isinstance(got["_id"], ObjectId)
        res = await db.c.update_one({"_id": oid}, {"$set": {"name": "b"}}, upsert=True)
        assert (res.matched_count, res.upserted_id) == (1, None)
        doc = await db.c.find_one_and_update(
            {"_id": "custom"}, {"$set": {"n": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        assert doc == {"_id": "custom", "n": 1}
        await db.c.replace_one({"_id": 7}, {"n": 2}, upsert=True)
        assert await db.c.find_one({"_id": 7}) == {"_id": 7, "n": 2}
        assert await db.c.count_documents({}) == 3

    run(body)


def test_push_and_pull_subdocuments(run):
    async def body(db):
        oid = (await db.c.insert_one({"items": [{"sku": "a", "qty": 1}]})).inserted_id
        await db.c.update_one({"_id": oid}, {"$push": {"items": {"sku": "b", "qty": 2}}})
        await db.c.update_one(
            {"_id": oid}, {"$push": {"items": {"$each": [{"sku": "c", "qty": 3}]}}})
        await db.c.update_one({"_id": oid}, {"$push": {"log": {"at": 1, "tags": ["x"]}}})
        got = await db.c.find_one({"_id": oid})
        assert got["items"] == [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2},
                                {"sku": "c", "qty": 3}]
        assert got["log"] == [{"at": 1, "tags": ["x"]}]
        assert await db.c.count_documents({"items.sku": "c"}) == 1
        await db.c.update_one({"_id": oid}, {"$pull": {"items": {"sku": "b"}}})
        await db.c.update_one({"_id": oid}, {"$pull": {"items": {"qty": {"$gte": 3}}}})
        await db.c.update_one({"_id": oid}, {"$addToSet": {"tags": "t"}})
        await db.c.update_one({"_id": oid}, {"$addToSet": {"tags": "t"}})
        got = await db.c.find_one({"_id": oid})
        assert got["items"] == [{"sku": "a", "qty": 1}] and got["tags"] == ["t"]
        await db.c.update_one({"_id": oid, "items.sku": "a"}, {"$set": {"items.$.qty": 9}})
        await db.c.update_one({"_id": oid}, {"$unset": {"log": ""}})
        assert await db.c.find_one({"_id": oid}, {"_id": 0}) == {
            "items": [{"sku": "a", "qty": 9}], "tags": ["t"]}

    run(body)


# --------------------------------------------------------------------------- ODMantic


class Address(EmbeddedModel):
    city: str
    zip: str | None = None


class Line(EmbeddedModel):
    sku: str
    qty: int = 1


class Customer(Model):
    name: str = Field(unique=True)
    email: str | None = None


class Order(Model):
    number: int
    customer: Customer = Reference()
    ship_to: Address
    lines: list[Line] = []
    note: str | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))


@pytest.mark.parametrize("run", ["motor"], indirect=True)  # ODMantic's engine is motor's
def test_odmantic_engine(run):
    async def body(db):
        engine = AIOEngine(client=db.client, database=db.name)
        await engine.configure_database([Customer, Order])
        ann = await engine.save(Customer(name="ann"))
        bob = await engine.save(Customer(name="bob", email="b@x"))
        orders = [
            Order(number=i, customer=ann if i % 2 else bob, ship_to=Address(city=c),
                  lines=[Line(sku=f"s{j}", qty=j) for j in range(i)])
            for i, c in enumerate(["Oslo", "Rome", "Oslo", "Paris"])
        ]
        await engine.save_all(orders)

        got = await engine.find_one(Order, Order.id == orders[1].id)
        assert got is not None and got.number == 1
        assert got.customer == ann and got.customer.name == "ann"
        assert got.ship_to == Address(city="Rome") and got.lines == [Line(sku="s0", qty=0)]
        assert (await engine.find_one(Customer, Customer.id == bob.id)).email == "b@x"

        assert await engine.count(Order) == 4
        assert await engine.count(Order, Order.ship_to.city == "Oslo") == 2
        assert await engine.count(Order, {"customer": ann.id}) == 2
        assert await engine.count(Order, Order.id == orders[0].id) == 1
        found = await engine.find(Order, Order.number >= 1, sort=Order.number.desc())
        assert [o.number for o in found] == [3, 2, 1]
        assert all(o.customer.id in (ann.id, bob.id) for o in found)
        found = await engine.find(Order, {"lines.sku": "s2"}, sort=Order.number)
        assert [o.number for o in found] == [3]
        page = await engine.find(Order, sort=Order.number, skip=1, limit=2)
        assert [o.number for o in page] == [1, 2]
        assert await engine.find_one(Order, Order.note == None) is not None  # noqa: E711

        got.lines = [*got.lines, Line(sku="new", qty=7)]  # reassign: marks it modified
        got.note = "x"
        await engine.save(got)
        again = await engine.find_one(Order, Order.id == got.id)
        assert again.lines[-1] == Line(sku="new", qty=7) and again.note == "x"
        raw = await db[+Order].find_one({"_id": got.id})
        assert raw["lines"][-1] == {"sku": "new", "qty": 7}
        assert raw["customer"] == ann.id and isinstance(raw["customer"], ObjectId)

        with pytest.raises(odmantic.exceptions.DuplicateKeyError):  # unique Customer.name
            await engine.save(Customer(name="ann"))
        await engine.delete(orders[0])
        assert await engine.count(Order) == 3
        assert await engine.find_one(Order, Order.id == orders[0].id) is None
        assert await engine.remove(Order, Order.ship_to.city == "Oslo") == 1
        assert await engine.count(Order) == 2

    run(body)


@pytest.mark.parametrize("run", ["pymongo"], indirect=True)
def test_a_change_stream_outlives_the_connection_that_opened_it(run):
    # PyMongo's asyncio client closes a connection whose operation was cancelled (a change
    # feed subscriber leaving mid-read); MongoDB's cursors belong to no connection, so a change
    # stream opened on it goes on. The plain stand-in ended it silently (launcher.py).
    from pymongo import monitoring

    cancel: list[asyncio.Task] = []

    class CancelInFlight(monitoring.CommandListener):
        def started(self, event):
            if event.command_name == "find" and cancel:
                asyncio.get_running_loop().call_soon(cancel.pop().cancel)  # once the command is sent

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    async def body(db):
        stream = await db.c.watch(max_await_time_ms=100)
        assert await stream.try_next() is None
        reading = asyncio.ensure_future(db.c.find_one({}))  # on the one connection of the pool
        cancel.append(reading)
        with pytest.raises(asyncio.CancelledError):
            await reading
        await db.c.insert_one({"k": 1})
        change = None
        for _ in range(20):
            change = await stream.try_next()
            if change is not None:
                break
        assert change is not None and change["fullDocument"]["k"] == 1
        await stream.close()

    run(body, maxPoolSize=1, event_listeners=[CancelInFlight()])


# --------------------------------------------------------------------------- real MongoDB only


@pytest.mark.real_mongo("Decimal128 cannot be stored by the stand-in")
def test_decimal128(run):
    async def body(db):
        await db.c.insert_one({"k": 1, "d": Decimal128("1.10")})
        assert (await db.c.find_one({"d": Decimal128("1.10")}))["d"] == Decimal128("1.10")

    run(body)


@pytest.mark.real_mongo("duplicate-key errors carry keyPattern/keyValue only on MongoDB")
def test_duplicate_key_details(run):
    async def body(db):
        await db.c.create_index("email", unique=True)
        await db.c.insert_one({"email": "x"})
        with pytest.raises(DuplicateKeyError) as e:
            await db.c.insert_one({"email": "x"})
        assert e.value.details["keyValue"] == {"email": "x"}
        assert e.value.details["keyPattern"] == {"email": 1}

    run(body)


@pytest.mark.real_mongo("transactions: a standalone mongod refuses them, a replica set "
                        "isolates them; the stand-in accepts them without isolation")
def test_transaction_isolation(run):
    async def body(db):
        await db.c.insert_one({"k": 0})
        try:
            async with run.driver.transaction(db.client) as s:
                await db.c.insert_one({"k": 1}, session=s)
                assert await db.c.count_documents({}) == 1  # not visible outside
                assert await db.c.count_documents({}, session=s) == 2
        except OperationFailure as exc:  # standalone server: no transactions
            pytest.skip(f"server does not support transactions: {exc}")
        assert await db.c.count_documents({}) == 2

    run(body)


def test_fixture_is_isolated_per_test(run, mongo_db_url):
    async def body(db):
        assert db.name == mongo_db_url.rsplit("/", 1)[1].split("?")[0]
        assert await db.list_collection_names() == []

    run(body)


def test_is_standin_matches_env():
    assert is_standin() == (not os.environ.get("BZZLITE_TEST_MONGO_URL"))


@pytest.mark.skipif(not is_standin(), reason="restarts the stand-in")
def test_standin_restart_on_same_port_keeps_data(tmp_path):
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    from tests.mongo_standin.fixture import start_standin, stop_standin

    url, proc = start_standin(tmp_path)
    port = int(url.rsplit(":", 1)[1])
    try:
        with MongoClient(url, serverSelectionTimeoutMS=3000) as client:
            client.t.c.insert_one({"k": 1})
            stop_standin(proc)
            with pytest.raises(PyMongoError), MongoClient(  # gone: an error, not a hang
                    url, serverSelectionTimeoutMS=300) as other:
                other.t.command("ping")
            url2, proc = start_standin(tmp_path, port=port)
            assert url2 == url
            assert client.t.c.find_one({}, {"_id": 0}) == {"k": 1}  # same client reconnects
    finally:
        stop_standin(proc)
