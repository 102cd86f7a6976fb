"""Store-level behaviors, the same on SQLite and MongoDB, and what only MongoDB needs.

The store API is called directly (``asyncio.run`` per test); HTTP-level tests of the
same behaviors live in the conformance suite. The failure tests stop and restart a
stand-in of their own under a running app, so they never touch the session's MongoDB.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from bzzlite import App, Registry, Unique
from bzzlite.errors import DuplicateKey, NotFound, StoreUnavailable, VersionConflict
from bzzlite.models.ids import new_id
from bzzlite.query import build_query, encode_cursor, parse_arguments, sort_values
from bzzlite.stores import open_store
from bzzlite.testing import serve
from tests.mongo_standin.fixture import _free_port, is_standin, start_standin, stop_standin

pytest.importorskip("pymongo")

from bzzlite.stores.mongo import MongoStore, escape_regex


class Address(BaseModel):
    city: str | None = None
    zip: str | None = None


class Item(BaseModel):
    name: str
    qty: int | None = None
    price: float | None = None
    email: Annotated[str, Unique] | None = None
    tags: list[str] = []
    address: Address | None = None


def spec_of(model: type[BaseModel] = Item, **options: Any):
    registry = Registry()
    return registry.add_resource(model, **options)


def run(store_url: str, body, spec=None):
    """await body(store, spec) with the store open, in a fresh event loop."""
    spec = spec or spec_of()

    async def main():
        store = open_store(store_url)
        await store.open([spec])
        try:
            return await body(store, spec)
        finally:
            await store.close()

    return asyncio.run(main())


async def add(store, spec, *docs: dict[str, Any]) -> list[str]:
    ids = [new_id() for _ in docs]
    await store.insert(spec, [(i, {"tags": [], **d}) for i, d in zip(ids, docs)])
    return ids


def query(spec, **params: str):
    arguments = parse_arguments(spec.schema, {k: [v] for k, v in params.items()})
    return build_query(spec.schema, arguments)


# -- writes ---------------------------------------------------------------------------------


def test_insert_get_replace_delete_with_versions(store_url):
    async def body(store, spec):
        [id_] = await add(store, spec, {"name": "a", "qty": 1})
        record = await store.get(spec, id_)
        assert (record.id, record.version, record.doc) == (id_, 1, {"name": "a", "qty": 1, "tags": []})
        replaced = await store.replace(spec, id_, {"name": "b", "tags": ["x"]}, 1)
        assert (replaced.version, replaced.doc) == (2, {"name": "b", "tags": ["x"]})
        assert (await store.get(spec, id_)).doc == {"name": "b", "tags": ["x"]}  # a replace, not a merge
        with pytest.raises(VersionConflict) as conflict:
            await store.replace(spec, id_, {"name": "c"}, 1)
        assert str(conflict.value) == id_  # the error names the document
        with pytest.raises(VersionConflict) as conflict:
            await store.delete(spec, id_, 1)
        assert str(conflict.value) == id_
        assert (await store.get(spec, id_)).version == 2
        await store.delete(spec, id_, 2)
        for call in (store.get(spec, id_), store.replace(spec, id_, {"name": "d"}, 2), store.delete(spec, id_, None)):
            with pytest.raises(NotFound) as missing:
                await call
            assert str(missing.value) == id_

    run(store_url, body)


def test_unconditional_replace_and_delete(store_url):
    async def body(store, spec):
        [id_] = await add(store, spec, {"name": "a"})
        assert (await store.replace(spec, id_, {"name": "b"}, None)).version == 2
        await store.delete(spec, id_, None)
        with pytest.raises(NotFound):
            await store.get(spec, id_)

    run(store_url, body)


def test_duplicate_key_names_the_field_and_none_never_conflicts(store_url):
    async def body(store, spec):
        await add(store, spec, {"name": "a", "email": "x@y"}, {"name": "b", "email": None}, {"name": "c", "email": None},
                  {"name": "d"}, {"name": "e"})
        with pytest.raises(DuplicateKey) as caught:
            await add(store, spec, {"name": "f", "email": "x@y"})
        assert caught.value.field == "email"
        [id_] = await add(store, spec, {"name": "g", "email": "other"})
        with pytest.raises(DuplicateKey) as caught:
            await store.replace(spec, id_, {"name": "g", "email": "x@y"}, 1)
        assert caught.value.field == "email"
        record = await store.get(spec, id_)
        assert (record.version, record.doc["email"]) == (1, "other")
        assert (await store.find(spec, query(spec))).total == 6

    run(store_url, body)


def test_an_unconditional_replace_of_a_document_that_keeps_changing_gives_up(mongo_db_url, monkeypatch):
    """MongoDB's replace without a version reads the version, then writes on it: 16 tries."""
    async def body(store, spec):
        [id_] = await add(store, spec, {"name": "a"})
        replaced = await store.replace(spec, id_, {"name": "b"}, None)
        assert (replaced.id, replaced.version, replaced.doc) == (id_, 2, {"name": "b"})
        reads = []
        real_get = store.get

        async def stale(spec_, id__):  # someone writes between each read and its write
            reads.append(id__)
            record = await real_get(spec_, id__)
            return type(record)(record.id, record.version - 1, record.doc)

        monkeypatch.setattr(store, "get", stale)
        with pytest.raises(StoreUnavailable) as caught:
            await store.replace(spec, id_, {"name": "c"}, None)
        assert str(caught.value) == f"{id_} keeps changing; the replace did not get through"
        assert reads == [id_] * 16

    run(mongo_db_url, body)


def _writes(spec, ids):
    from bzzlite.stores.base import Write

    return [Write("insert", spec, ids[0], {"name": "x", "tags": []}),
            Write("insert", spec, ids[1], {"name": "y", "email": "taken", "tags": []})]


@pytest.mark.parametrize("failure, falls_back", [
    (("Transaction numbers are only allowed on a replica set member or mongos", 20), True),
    (("Transaction numbers are only allowed on a replica set member or mongos", None), True),
    (("illegal operation", 20), True),  # IllegalOperation, whatever its words
    (("not authorized on t to execute command", 13), False),
])
def test_a_mongodb_without_transactions_is_told_from_a_failing_one(mongo_db_url, monkeypatch, failure, falls_back):
    """No transactions (a standalone server): the writes are made one by one, and undone when one
    fails. Any other refusal of the session is the store failing (503), not a reason to do so."""
    from pymongo.errors import OperationFailure

    async def body(store, spec):
        await add(store, spec, {"name": "t", "email": "taken"})

        def refused(*args, **kwargs):  # start_session() raises (PyMongo's is no coroutine)
            raise OperationFailure(*failure)

        monkeypatch.setattr(store._client(), "start_session", refused)
        ids = [new_id(), new_id()]
        if falls_back:
            with pytest.raises(DuplicateKey) as caught:  # the second insert: the first is undone
                await store.apply(_writes(spec, ids))
            assert caught.value.field == "email"
            with pytest.raises(NotFound):
                await store.get(spec, ids[0])
        else:
            with pytest.raises(StoreUnavailable) as caught:
                await store.apply(_writes(spec, ids))
            assert str(caught.value) == f"MongoDB error: {failure[0]}"

    run(mongo_db_url, body)


def test_a_session_that_cannot_start_is_the_store_unavailable(mongo_db_url, monkeypatch):
    from pymongo.errors import ServerSelectionTimeoutError

    async def body(store, spec):
        def away(*args, **kwargs):
            raise ServerSelectionTimeoutError("no server")

        monkeypatch.setattr(store._client(), "start_session", away)
        with pytest.raises(StoreUnavailable) as caught:
            await store.apply(_writes(spec, [new_id(), new_id()]))
        assert str(caught.value) == "MongoDB error: no server"

    run(mongo_db_url, body)


def test_writes_a_failed_transaction_could_not_undo_are_named(mongo_db_url, monkeypatch):
    from pymongo.errors import OperationFailure

    from bzzlite.errors import TransactionIncomplete

    async def body(store, spec):
        await add(store, spec, {"name": "t", "email": "taken"})

        def refused(*args, **kwargs):  # start_session() raises (PyMongo's is no coroutine)
            raise OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20)

        async def cannot_undo(done):
            return [f"{spec.path}/{write.id}" for write in done]

        monkeypatch.setattr(store._client(), "start_session", refused)
        monkeypatch.setattr(store, "_undo", cannot_undo)
        ids = [new_id(), new_id()]
        with pytest.raises(TransactionIncomplete) as caught:
            await store.apply(_writes(spec, ids))
        assert caught.value.ids == [f"{spec.path}/{ids[0]}"]

    run(mongo_db_url, body)


@pytest.mark.parametrize("batch", [
    [{"name": "n1"}, {"name": "n2", "email": "taken"}, {"name": "n3"}],  # clashes with a stored one
    [{"name": "n1", "email": "twice"}, {"name": "n2"}, {"name": "n3", "email": "twice"}],  # within the batch
    [{"name": "n1"}, {"name": "n2"}, {"name": "n3", "email": "taken"}],  # the last one
])
def test_bulk_insert_is_all_or_nothing(store_url, batch):
    async def body(store, spec):
        await add(store, spec, {"name": "old", "email": "taken"})
        with pytest.raises(DuplicateKey) as caught:
            await add(store, spec, *batch)
        assert caught.value.field == "email"
        page = await store.find(spec, query(spec))
        assert [r.doc["name"] for r in page.records] == ["old"]
        ids = await add(store, spec, *({**d, "email": None} for d in batch))  # the same batch, fixed, goes in
        assert len(ids) == 3

    run(store_url, body)


# -- queries ----------------------------------------------------------------------------------

DATA = [
    {"name": "apple", "qty": 5, "price": 1.5, "tags": ["red", "fruit"], "address": {"city": "Paris", "zip": "75001"}},
    {"name": "banana", "qty": 0, "price": None, "tags": ["yellow", "fruit"], "address": {"city": "Lyon"}},
    {"name": "a.c", "qty": None, "tags": []},
    {"name": "abc", "qty": 12, "price": 3.0, "tags": ["x*y"], "address": None},
    {"name": "Ábc", "qty": -3, "price": 0.0, "tags": ["red"], "address": {"city": None}},
    {"name": "(a|b)", "tags": ["$where", "a\\b"]},
]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["apple", "banana", "a.c", "abc", "Ábc", "(a|b)"]),
    ({"qty": "5"}, ["apple"]),
    ({"qty__ne": "5"}, ["banana", "a.c", "abc", "Ábc", "(a|b)"]),  # __ne matches missing and null
    ({"qty__gt": "0"}, ["apple", "abc"]),
    ({"qty__gte": "0"}, ["apple", "banana", "abc"]),
    ({"qty__lt": "1"}, ["banana", "Ábc"]),
    ({"qty__lte": "-3"}, ["Ábc"]),
    ({"qty__in": "0,12,99"}, ["banana", "abc"]),
    ({"qty__nin": "0,12"}, ["apple", "a.c", "Ábc", "(a|b)"]),
    ({"qty__exists": "true"}, ["apple", "banana", "abc", "Ábc"]),  # present and not null
    ({"qty__exists": "false"}, ["a.c", "(a|b)"]),
    ({"qty": "null"}, ["a.c", "(a|b)"]),
    ({"qty__ne": "null"}, ["apple", "banana", "abc", "Ábc"]),
    ({"price__lte": "1.5"}, ["apple", "Ábc"]),
    ({"name__contains": "."}, ["a.c"]),  # regex metacharacters are literal
    ({"name__contains": "bc"}, ["abc", "Ábc"]),
    ({"name__contains": "B"}, []),  # case-sensitive
    ({"name__contains": "|"}, ["(a|b)"]),
    ({"name__startswith": "a"}, ["apple", "a.c", "abc"]),
    ({"name__startswith": "(a|"}, ["(a|b)"]),
    ({"name__startswith": "Á"}, ["Ábc"]),
    ({"name": "$where"}, []),  # a value is never an operator
    ({"tags": "red"}, ["apple", "Ábc"]),  # a list field matches any member
    ({"tags": "$where"}, ["(a|b)"]),
    ({"tags__contains": "*"}, ["abc"]),
    ({"tags__contains": "\\"}, ["(a|b)"]),
    ({"tags__ne": "red"}, ["banana", "a.c", "abc", "(a|b)"]),
    ({"tags__in": "yellow,x*y"}, ["banana", "abc"]),
    ({"tags__nin": "fruit"}, ["a.c", "abc", "Ábc", "(a|b)"]),
    ({"address.city": "Paris"}, ["apple"]),
    ({"address.city__exists": "true"}, ["apple", "banana"]),
    ({"address.city__exists": "false"}, ["a.c", "abc", "Ábc", "(a|b)"]),
    ({"address.zip__ne": "75001"}, ["banana", "a.c", "abc", "Ábc", "(a|b)"]),
    ({"address.city__startswith": "L"}, ["banana"]),
])
def test_filters_mean_the_same_on_every_store(store_url, params, expected):
    async def body(store, spec):
        await add(store, spec, *DATA)
        page = await store.find(spec, query(spec, **params))
        assert [r.doc["name"] for r in page.records] == expected
        assert page.total == len(expected)

    run(store_url, body)


def test_id_filters(store_url):
    async def body(store, spec):
        ids = await add(store, spec, *DATA[:4])
        names = lambda page: [r.doc["name"] for r in page.records]
        assert names(await store.find(spec, query(spec, id=ids[1]))) == ["banana"]
        assert names(await store.find(spec, query(spec, id__in=f"{ids[0]},{ids[3]}"))) == ["apple", "abc"]
        assert names(await store.find(spec, query(spec, id__ne=ids[0]))) == ["banana", "a.c", "abc"]
        assert names(await store.find(spec, query(spec, id__gt=ids[1]))) == ["a.c", "abc"]
        assert names(await store.find(spec, query(spec, id__contains=ids[2]))) == ["a.c"]
        assert (await store.find(spec, query(spec, id="0123456789abcdef01234567"))).total == 0
        assert names(await store.find(spec, query(spec, sort="-id"))) == ["abc", "a.c", "banana", "apple"]

    run(store_url, body)


@pytest.mark.parametrize("sort", ["qty", "-qty", "price,-name", "-price,qty", "address.city,-qty", "name", "-id"])
def test_sort_and_both_pagination_styles_agree(store_url, sort):
    """Pages by number and pages by cursor walk the same order, nulls first ascending and
    last descending, with the id as the tie-break."""

    async def body(store, spec):
        await add(store, spec, *DATA, *DATA[:3])
        everything = await store.find(spec, query(spec, sort=sort, per_page="100"))
        assert everything.total == 9
        order = [r.id for r in everything.records]
        numbered = []
        for page in range(1, 5):
            got = await store.find(spec, query(spec, sort=sort, per_page="2", page=str(page)))
            numbered += [r.id for r in got.records]
            assert got.has_more == (page < 5 and len(numbered) < 9)
        assert numbered + [r.id for r in (await store.find(spec, query(spec, sort=sort, per_page="2", page="5"))).records] == order
        walked, after = [], ""
        while True:
            arguments = parse_arguments(spec.schema, {"sort": [sort], "per_page": ["2"], "after": [after]})
            q = build_query(spec.schema, arguments)
            got = await store.find(spec, q)
            assert got.total is None
            walked += [r.id for r in got.records]
            if not got.has_more:
                break
            last = got.records[-1]
            after = encode_cursor(q, sort_values(q, last.doc), last.id)
        assert walked == order
        first = [r.doc for r in everything.records]
        key = sort.split(",")[0].lstrip("-")
        values = [d.get(key) if "." not in key else (d.get("address") or {}).get("city") for d in first]
        present = [v for v in values if v is not None]
        if sort.startswith("-"):
            assert values == present + [None] * (len(values) - len(present))  # nulls last descending
        else:
            assert values == [None] * (len(values) - len(present)) + present  # nulls first ascending

    run(store_url, body)


def test_a_page_past_the_end_is_empty(store_url):
    async def body(store, spec):
        await add(store, spec, *DATA)
        page = await store.find(spec, query(spec, page="9", per_page="2"))
        assert (page.records, page.total, page.has_more) == ([], 6, False)

    run(store_url, body)


# -- what only the MongoDB store does ---------------------------------------------------------


@pytest.mark.parametrize("text", [".", "a.c", "(a|b)", "x*y+z?", "^$", "[]{}", "\\", "\\E\\Q", "a\nb", "é€𝄞", "#-~ &", "\x00"])
def test_escape_regex_matches_only_itself(text):
    pattern = re.compile(escape_regex(text))
    assert pattern.fullmatch(text)
    assert not pattern.search(text[:-1] + "Z" if text[-1] != "Z" else text[:-1] + "Y")


def test_documents_are_stored_with_objectid_ids_versions_and_json_values(mongo_db_url):
    from bson import ObjectId
    from pymongo import AsyncMongoClient

    class Event(BaseModel):
        title: str
        at: __import__("datetime").datetime
        tags: list[str] = []

    spec = spec_of(Event)

    async def body(store, spec):
        [id_] = await add(store, spec, {"title": "t", "at": "2024-05-01T12:00:00Z"})
        await store.replace(spec, id_, {"title": "u", "at": "2024-05-02T12:00:00Z", "tags": []}, 1)
        client = AsyncMongoClient(mongo_db_url)
        raw = await client.get_default_database()["event"].find_one({})
        await client.close()
        assert raw == {"_id": ObjectId(id_), "_v": 2, "title": "u", "at": "2024-05-02T12:00:00Z", "tags": [],
                       "_model": spec.versions.mark}  # the model that wrote it: version 1, its fingerprint
        assert re.fullmatch(r"1:[0-9a-f]{12}", raw["_model"])
        page = await store.find(spec, query(spec, at__gt="2024-05-02T00:00:00Z"))
        assert [r.id for r in page.records] == [id_]

    run(mongo_db_url, body, spec)


def test_documents_written_by_other_tools_are_served(mongo_db_url):
    """No ``_v`` (version 0), BSON dates and ObjectIds inside: rendered in JSON mode."""
    import datetime

    from bson import ObjectId
    from pymongo import AsyncMongoClient

    class Event(BaseModel):
        title: str
        at: datetime.datetime | None = None
        ref: str | None = None

    spec = spec_of(Event)
    oid, ref = ObjectId(), ObjectId()

    async def body(store, spec):
        client = AsyncMongoClient(mongo_db_url, tz_aware=True)
        await client.get_default_database()["event"].insert_one(
            {"_id": oid, "title": "t", "at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC), "ref": ref})
        await client.close()
        record = await store.get(spec, str(oid))
        assert (record.version, record.doc) == (0, {"title": "t", "at": "2024-05-01T12:00:00.000000Z", "ref": str(ref)})
        with pytest.raises(VersionConflict):
            await store.replace(spec, str(oid), {"title": "u"}, 1)
        assert (await store.replace(spec, str(oid), {"title": "u"}, 0)).version == 1

    run(mongo_db_url, body, spec)


def test_unique_and_declared_indexes_are_created_at_open(mongo_db_url):
    from pymongo import AsyncMongoClient

    spec = spec_of(Item, indexes=["qty", ("name", "-price")])

    async def body(store, spec):
        client = AsyncMongoClient(mongo_db_url)
        info = await client.get_default_database()["item"].index_information()
        await client.close()
        keys = {tuple(map(tuple, index["key"])): index for index in info.values()}
        assert keys[(("email", 1),)].get("unique") is True
        assert (("qty", 1),) in keys
        if is_standin():  # it keeps the fields of an index, not their directions
            assert [k for k, _ in info["idx_item_name_price"]["key"]] == ["name", "price"]
        else:  # and it names indexes itself and ignores partial filters
            assert (("name", 1), ("price", -1)) in keys
            assert keys[(("email", 1),)]["partialFilterExpression"]["email"]["$type"]
            assert "ux_item_email" in info

    run(mongo_db_url, body, spec)
    run(mongo_db_url, body, spec)  # opening again is harmless


def test_open_after_a_failure_succeeds_once_the_server_is_there(tmp_path):
    port = _free_port()
    store = MongoStore(f"mongodb://127.0.0.1:{port}/db?serverSelectionTimeoutMS=300")
    spec = spec_of()

    async def attempt():
        await store.open([spec])

    async def scenario():
        with pytest.raises(StoreUnavailable):
            await attempt()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        _, proc = await asyncio.to_thread(start_standin, tmp_path, port)
        try:
            await attempt()
            assert (await store.ping())["store"] == "mongodb"
            [id_] = await add(store, spec, {"name": "a"})
            assert (await store.get(spec, id_)).doc["name"] == "a"
        finally:
            await store.close()
            stop_standin(proc)

    asyncio.run(scenario())


def test_a_malformed_url_is_a_configuration_error():
    from bzzlite.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        open_store("mongodb://host:notaport/db")


# -- over HTTP: concurrency and failures -------------------------------------------------------


class Counter(BaseModel):
    n: int = 0
    a: str | None = None
    b: str | None = None
    c: str | None = None
    d: str | None = None


def concurrently(count: int, call) -> list[Any]:
    """Run call(i) in ``count`` threads released together; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_concurrent_updates_with_the_same_if_match_one_wins(store_url, method):
    registry = Registry()
    registry.resource(Counter)
    with serve(App(registry, db=store_url)) as client:
        created = client.post("/counter", json={})
        url, tag = created.headers["Location"], created.headers["ETag"]
        for round_ in range(3):
            codes = concurrently(6, lambda i, tag=tag: client.request(
                method, url, json={"n": i + 1}, headers={"If-Match": tag}).code)
            assert sorted(codes) == [200] + [412] * 5, codes
            current = client.get(url)
            assert current.headers["ETag"] == f'"{round_ + 2}"'
            tag = current.headers["ETag"]


def test_concurrent_deletes_with_the_same_if_match_one_wins(store_url):
    registry = Registry()
    registry.resource(Counter)
    with serve(App(registry, db=store_url)) as client:
        created = client.post("/counter", json={})
        url, tag = created.headers["Location"], created.headers["ETag"]
        codes = concurrently(6, lambda i: client.delete(url, headers={"If-Match": tag}).code)
        assert codes.count(204) == 1, codes
        assert set(codes) <= {204, 404, 412}


def test_concurrent_patches_without_if_match_all_apply(store_url):
    registry = Registry()
    registry.resource(Counter)
    with serve(App(registry, db=store_url)) as client:
        url = client.post("/counter", json={}).headers["Location"]
        codes = concurrently(4, lambda i: client.patch(url, json={"abcd"[i]: str(i)}).code)
        assert codes == [200] * 4
        body = client.get(url).json()
        assert [body[k] for k in "abcd"] == ["0", "1", "2", "3"]
        assert client.get(url).headers["ETag"] == '"5"'


def test_mongodb_going_away_gives_503_and_service_resumes_by_itself(tmp_path):
    registry = Registry()
    registry.resource(Item)
    url, proc = start_standin(tmp_path / "data")
    port = int(url.rsplit(":", 1)[1])
    try:
        with serve(App(registry, db=f"{url}/app")) as client:
            created = client.post("/item", json={"name": "kept", "email": "k@x"})
            assert created.code == 201
            item = created.headers["Location"]
            stop_standin(proc)
            for response in (client.get("/item", timeout=15), client.get(item, timeout=15),
                             client.post("/item", json={"name": "lost"}, timeout=15),
                             client.patch(item, json={"qty": 1}, timeout=15),
                             client.delete(item, timeout=15)):
                assert response.code == 503, response.text
                assert response.headers["Content-Type"] == "application/problem+json"
                assert response.headers["Retry-After"]
            health = client.get("/_health", timeout=15)
            assert health.code == 503
            assert health.json()["status"] == "unavailable"
            _, proc = start_standin(tmp_path / "data", port=port)  # same port, same data
            assert client.get(item, timeout=15).json()["name"] == "kept"
            assert client.get("/_health", timeout=15).json()["status"] == "ok"
            assert client.post("/item", json={"name": "new", "email": "k@x"}).code == 409  # indexes still there
            assert client.get("/item").json()["total"] == 1
    finally:
        stop_standin(proc)


def test_mongodb_down_at_start_up_gives_503_until_it_comes(tmp_path):
    registry = Registry()
    registry.resource(Item)
    port = _free_port()
    proc = None
    try:
        with serve(App(registry, db=f"mongodb://127.0.0.1:{port}/app")) as client:
            assert client.get("/item", timeout=15).code == 503
            health = client.get("/_health", timeout=15)
            assert (health.code, health.json()["status"]) == (503, "unavailable")
            _, proc = start_standin(tmp_path / "data", port=port)
            assert client.post("/item", json={"name": "a", "email": "e"}).code == 201
            assert client.post("/item", json={"name": "b", "email": "e"}).code == 409  # indexes made on open
            health = client.get("/_health")
            assert health.json() == {"status": "ok"}  # a status, not the servers (issue 28)
    finally:
        if proc is not None:
            stop_standin(proc)
