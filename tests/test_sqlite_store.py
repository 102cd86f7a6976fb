"""The embedded SQLite store: files, restarts, WAL, indexes, model changes, concurrency."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, Registry, Unique
from bzzlite.testing import serve


class Person(BaseModel):
    name: str
    email: Annotated[str, Unique] | None = None
    age: int = 0
    city: str = ""
    rank: int | None = None
    counters: dict[str, int] = {}


INDEXES = ["age", ("city", "-age"), "rank"]


def make_app(url, model=Person, name="person", **options):
    registry = Registry()
    registry.resource(name=name, indexes=options.pop("indexes", INDEXES))(model)
    return App(registry, db=url, **options)


@contextlib.contextmanager
def served(url, model=Person, **options):
    app = make_app(url, model, **options)
    with serve(app) as client:
        yield app, client


def db_path(url: str) -> str:
    return url[len("sqlite:///"):]


def next_link(response) -> str | None:
    match = re.search(r'<([^>]*)>;\s*rel="next"', response.headers.get("Link", ""))
    return match.group(1) if match else None


# -- files and restarts -------------------------------------------------------------------------


def test_data_survives_a_restart(sqlite_url):
    with served(sqlite_url) as (_, client):
        one = client.post("/person", json={"name": "Ann", "email": "ann@x.org"})
        bulk = client.post("/person", json=[{"name": "Bob"}, {"name": "Cy", "age": 3}])
        url = one.headers["Location"]
        patched = client.patch(url, json={"age": 41})
        doomed = bulk.json()[0]["id"]
        assert client.delete(f"/person/{doomed}").code == 204
    with served(sqlite_url) as (_, client):  # a new App, a new registry, the same file
        again = client.get(url)
        assert again.code == 200
        assert again.json() == patched.json()
        assert again.headers["ETag"] == patched.headers["ETag"]
        assert client.get(f"/person/{doomed}").code == 404
        listing = client.get("/person").json()
        assert [p["name"] for p in listing["items"]] == ["Ann", "Cy"]
        assert client.post("/person", json={"name": "Dup", "email": "ann@x.org"}).code == 409  # still unique
        newer = client.post("/person", json={"name": "Dee"}).json()["id"]
        assert newer > max(p["id"] for p in listing["items"])  # ids keep sorting by creation


def test_every_answered_write_is_already_committed(sqlite_url):
    with served(sqlite_url) as (_, client):
        created = client.post("/person", json={"name": "Ann"}).json()
        other = sqlite3.connect(db_path(sqlite_url))  # another connection, as another process would
        try:
            rows = other.execute("SELECT id, v FROM person").fetchall()
            assert rows == [(created["id"], 1)]
            client.patch(f"/person/{created['id']}", json={"age": 2})
            assert other.execute("SELECT v, json_extract(doc, '$.age') FROM person").fetchone() == (2, 2)
        finally:
            other.close()


def test_the_file_is_in_wal_mode(sqlite_url):
    with served(sqlite_url) as (_, client):
        client.post("/person", json={"name": "Ann"})
        with contextlib.closing(sqlite3.connect(db_path(sqlite_url))) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert Path(db_path(sqlite_url) + "-wal").exists()


def test_pooled_connections_keep_a_small_page_cache(sqlite_url):
    # Five pooled connections caching the same file at SQLite's 2 MiB each grew a server's RSS
    # by 6 MiB over a minute of writes; the loop's connection (reads by id) keeps the default.
    import asyncio

    from bzzlite.stores.sqlite import POOL_CACHE_KIB

    app = make_app(sqlite_url)

    async def main():
        store = await app.runtime.ready_store()
        pooled = [conn for pool in (store._writer, store._readers) for conn in pool.connections]
        sizes = {conn.execute("PRAGMA cache_size").fetchone()[0] for conn in pooled}
        loop_size = store._conn().execute("PRAGMA cache_size").fetchone()[0]
        await app.shutdown()
        return len(pooled), sizes, loop_size

    count, sizes, loop_size = asyncio.run(main())
    assert count == 5 and sizes == {-POOL_CACHE_KIB} and loop_size == -2000


def test_a_write_waits_for_another_processs_write_lock_then_gives_up(sqlite_url, monkeypatch):
    # The writer's connection tries a statement refused with SQLITE_BUSY again itself (every
    # 50 us, for BUSY_TIMEOUT) instead of SQLite's busy handler: a write lock held elsewhere
    # for 0.2 s delays a create; one held past the timeout makes it a 503, as before.
    import asyncio

    from bzzlite.stores import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 1.0)
    app = make_app(sqlite_url)
    other = sqlite3.connect(db_path(sqlite_url), isolation_level=None)

    async def main():
        store = await app.runtime.ready_store()
        busy = store._writer.connections[0].execute("PRAGMA busy_timeout").fetchone()[0]
        docs = app.documents(Person)
        await docs.create({"name": "before"})  # the tables exist; now another writer holds the lock
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
        waited = await docs.create({"name": "after a wait"})
        other.execute("BEGIN IMMEDIATE")
        try:
            await docs.create({"name": "never"})
        except Exception as exc:  # noqa: BLE001 - the store's error, checked below
            refused = exc
        other.execute("COMMIT")
        names = [person.name for person in (await docs.find()).items]
        await app.shutdown()
        return busy, waited, refused, names

    busy, waited, refused, names = asyncio.run(main())
    other.close()
    assert busy == 0 and waited.name == "after a wait"
    assert type(refused).__name__ == "StoreUnavailable" and "locked" in str(refused)
    assert sorted(names) == ["after a wait", "before"]


def test_a_delete_that_cannot_get_the_write_lock_is_a_503_saying_why(sqlite_url, monkeypatch):
    import asyncio

    from bzzlite.errors import StoreUnavailable
    from bzzlite.stores import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.1)
    app = make_app(sqlite_url)
    other = sqlite3.connect(db_path(sqlite_url), isolation_level=None)

    async def main():
        docs = app.documents(Person)
        person = await docs.create({"name": "kept"})
        other.execute("BEGIN IMMEDIATE")  # another process writes
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await docs.delete(person.id)
        finally:
            other.execute("COMMIT")
        kept = await docs.get(person.id)
        await app.shutdown()
        return str(caught.value), kept.name

    assert asyncio.run(main()) == ("SQLite error: database is locked", "kept")
    other.close()


def _traced(store) -> list[tuple[str, str]]:
    """(thread name, SQL) of every statement the store's connections run from now on."""
    seen: list[tuple[str, str]] = []
    store.trace(lambda sql: seen.append((threading.current_thread().name, sql)))
    return seen


def _statements(seen, prefix: str) -> list[str]:
    return [thread for thread, sql in seen if sql.startswith(prefix)]


def test_the_writes_of_one_turn_share_one_commit_and_fail_alone(sqlite_url):
    # Unpinned, a hop to the writer's thread per write cost more CPU than the write; the writes
    # of a turn of the loop now commit together, on the loop. A failed write is one statement,
    # which SQLite undoes alone: no savepoint per write.
    import asyncio

    app = make_app(sqlite_url)

    async def main():
        store = await app.runtime.ready_store()
        docs = app.documents(Person)
        await docs.create({"name": "first"})  # the table exists
        seen = _traced(store)
        outcomes = await asyncio.gather(docs.create({"name": "a", "email": "same@x.org"}),
                                        docs.create({"name": "b", "email": "same@x.org"}),
                                        docs.create({"name": "c"}), return_exceptions=True)
        store.trace(None)
        names = sorted(person.name for person in (await docs.find()).items)
        await app.shutdown()
        return seen, outcomes, names

    seen, outcomes, names = asyncio.run(main())
    assert [o.name for o in (outcomes[0], outcomes[2])] == ["a", "c"]
    assert type(outcomes[1]).__name__ == "DuplicateKey"
    assert names == ["a", "c", "first"]  # the duplicate undone alone, the others committed
    main_thread = threading.main_thread().name
    assert _statements(seen, "BEGIN") == [main_thread] and _statements(seen, "COMMIT") == [main_thread]
    assert set(_statements(seen, "INSERT INTO \"person\"")) == {main_thread}
    assert _statements(seen, "SAVEPOINT") == [] and _statements(seen, "ROLLBACK") == []


def test_a_bulk_create_that_fails_inside_a_batch_is_undone_whole_and_alone(sqlite_url):
    # A job of several statements runs inside immediate(): its savepoint undoes all of it, and
    # the journal rows its triggers wrote, while the turn's other writes commit.
    import asyncio

    from bzzlite.feeds.sqlite import rows

    app = make_app(sqlite_url)

    async def main():
        store = await app.runtime.ready_store()
        docs = app.documents(Person)
        await docs.create({"name": "first", "email": "taken@x.org"})
        seen = _traced(store)
        outcomes = await asyncio.gather(
            docs.create_many([{"name": "b1"}, {"name": "b2"}, {"name": "b3", "email": "taken@x.org"}]),
            docs.create({"name": "c"}), return_exceptions=True)
        store.trace(None)
        names = sorted(person.name for person in (await docs.find()).items)
        journal = [row[2:] for row in rows(store.conn)]
        await app.shutdown()
        return seen, outcomes, names, journal

    seen, outcomes, names, journal = asyncio.run(main())
    assert type(outcomes[0]).__name__ == "DuplicateKey" and outcomes[1].name == "c"
    assert names == ["c", "first"]
    assert [op for op, _ in journal] == ["created", "created"]  # first's and c's: none of the bulk's
    assert len(_statements(seen, "BEGIN")) == 1 and len(_statements(seen, "COMMIT")) == 1
    assert len(_statements(seen, "ROLLBACK TO immediate")) == 1


def test_conditional_writes_in_one_commit_see_each_other(sqlite_url):
    # Two changes made from the same version, batched into one transaction: the second finds
    # the version the first wrote, as it would across two commits, and is refused alone.
    import asyncio

    app = make_app(sqlite_url)

    async def main():
        store = await app.runtime.ready_store()
        docs = app.documents(Person)
        ann = await docs.create({"name": "Ann"})
        seen = _traced(store)
        outcomes = await asyncio.gather(docs.patch(ann.id, {"age": 1}, if_match=1),
                                        docs.patch(ann.id, {"age": 2}, if_match=1),
                                        docs.delete(ann.id, if_match=1), return_exceptions=True)
        store.trace(None)
        stored = await docs.get(ann.id)
        await app.shutdown()
        return seen, outcomes, stored

    seen, outcomes, stored = asyncio.run(main())
    assert outcomes[0].age == 1
    assert [type(o).__name__ for o in outcomes[1:]] == ["VersionConflict", "VersionConflict"]
    assert stored.age == 1
    assert len(_statements(seen, "COMMIT")) == 1


def test_a_batch_that_fails_as_a_whole_writes_nothing_and_ends_its_transaction():
    # A job's own error is undone alone (by SQLite or its savepoint); what escapes the batch (here a
    # BaseException, as a failed COMMIT would) rolls the whole transaction back.
    from bzzlite.stores.sqlite import _run_batch

    class Stop(BaseException):
        pass

    def insert(conn):
        conn.execute("INSERT INTO t VALUES (1)")

    def stop(conn):
        raise Stop

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(Stop):
        _run_batch(conn, [insert, stop])
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert _run_batch(conn, [insert, insert]) == [None, None]  # the connection writes again
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    conn.close()


def test_writes_that_would_wait_for_the_lock_wait_in_the_writers_thread(sqlite_url):
    # Another process holds the write lock: the batch goes to the writer's thread, whole, and
    # the loop keeps answering meanwhile.
    import asyncio

    app = make_app(sqlite_url)
    other = sqlite3.connect(db_path(sqlite_url), isolation_level=None)

    async def main():
        store = await app.runtime.ready_store()
        docs = app.documents(Person)
        known = await docs.create({"name": "known"})
        seen = _traced(store)
        other.execute("BEGIN IMMEDIATE")
        writes = asyncio.gather(docs.create({"name": "a"}), docs.create({"name": "b"}))
        await asyncio.sleep(0.05)  # the writes have met the lock
        waiting = not writes.done()
        read = (await docs.get(known.id)).name  # the loop answers meanwhile
        other.execute("COMMIT")
        created = await writes
        store.trace(None)
        await app.shutdown()
        return seen, waiting, read, created

    seen, waiting, read, created = asyncio.run(main())
    other.close()
    assert waiting and read == "known" and [p.name for p in created] == ["a", "b"]
    assert set(_statements(seen, "INSERT INTO \"person\"")) == {"bzzlite-sqlite-writer-0"}
    assert _statements(seen, "COMMIT") == ["bzzlite-sqlite-writer-0"]  # one job, one commit


def test_with_synchronous_full_writes_stay_in_the_writers_thread(tmp_path):
    # Each commit waits for the disk then: not on the loop.
    import asyncio

    app = make_app(f"sqlite:///{tmp_path}/full.db?synchronous=full")

    async def main():
        store = await app.runtime.ready_store()
        seen = _traced(store)
        await app.documents(Person).create({"name": "a"})
        store.trace(None)
        await app.shutdown()
        return seen

    assert set(_statements(asyncio.run(main()), "INSERT INTO \"person\"")) == {"bzzlite-sqlite-writer-0"}


def test_short_list_queries_run_on_the_loop_and_long_ones_in_a_reader(sqlite_url):
    import asyncio

    from bzzlite.stores.sqlite import READ_SLICE_STEPS

    app = make_app(sqlite_url)

    async def main():
        store = await app.runtime.ready_store()
        docs = app.documents(Person)
        await docs.create_many([{"name": f"p{n}", "city": "Lyon"} for n in range(READ_SLICE_STEPS // 2)])
        await docs.create({"name": "seven", "age": 7})
        seen = _traced(store)
        short = await docs.find({"age": 7})  # an index walk: a few dozen steps
        short_seen, seen[:] = list(seen), []
        long = await docs.find({"city__contains": "zzz"})  # no index: every document read
        store.trace(None)
        await app.shutdown()
        return short, short_seen, long, seen

    short, short_seen, long, long_seen = asyncio.run(main())
    main_thread = threading.main_thread().name
    assert short.total == 1 and {thread for thread, _ in short_seen} == {main_thread}
    assert long.total == 0
    threads = _statements(long_seen, "SELECT")
    assert threads[0] == main_thread  # tried on the loop, stopped past its slice,
    assert threads[-1].startswith("bzzlite-sqlite-reader-")  # run again in a reader


def test_checkpoints_run_in_a_reader_not_in_the_writes(sqlite_url, monkeypatch):
    # SQLite's own checkpoint runs in the commit that fills the WAL: on the loop, now that
    # writes run there. The writer's is off; a reader's thread checkpoints instead.
    import asyncio

    from bzzlite.stores import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 5)
    app = make_app(sqlite_url)
    checkpointed = threading.Event()

    async def main():
        store = await app.runtime.ready_store()
        writer = store._writer.connections[0].execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        threads = []

        def trace(sql):
            if sql.startswith("PRAGMA wal_checkpoint"):
                threads.append(threading.current_thread().name)
                checkpointed.set()

        store.trace(trace)
        for n in range(6):
            await app.documents(Person).create({"name": f"p{n}"})
        await asyncio.get_running_loop().run_in_executor(None, checkpointed.wait, 30)
        store.trace(None)
        await app.shutdown()
        return writer, threads

    writer, threads = asyncio.run(main())
    assert writer == 0
    assert threads and threads[0].startswith("bzzlite-sqlite-reader-")


def test_memory_store():
    with served("sqlite:///:memory:") as (_, client):
        assert client.post("/person", json={"name": "Ann"}).code == 201
        assert client.get("/person").json()["total"] == 1
    with served("sqlite:///:memory:") as (_, client):
        assert client.get("/person").json()["total"] == 0  # nothing kept


def test_relative_and_default_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BZZLITE_DB", raising=False)
    with served(None) as (app, client):
        assert app.runtime.settings.db == "sqlite:///bzzlite.db"
        assert client.post("/person", json={"name": "Ann"}).code == 201
    assert (tmp_path / "bzzlite.db").exists()
    (tmp_path / "sub").mkdir()
    with served("sqlite:///sub/rel.db") as (_, client):
        assert client.post("/person", json={"name": "Ann"}).code == 201
    assert (tmp_path / "sub" / "rel.db").exists()
    monkeypatch.setenv("BZZLITE_DB", "sqlite:///from_env.db")
    with served(None) as (_, client):
        assert client.post("/person", json={"name": "Ann"}).code == 201
    assert (tmp_path / "from_env.db").exists()


def test_a_store_that_cannot_open_answers_503(tmp_path):
    with served(f"sqlite:///{tmp_path}/missing/dir/x.db") as (_, client):
        response = client.get("/person")
        assert response.code == 503
        assert response.headers["Content-Type"] == "application/problem+json"
        assert "Traceback" not in response.text
        assert client.get("/_health").code == 503
        assert client.post("/person", json={"name": "x"}).code == 503


# -- model changes ------------------------------------------------------------------------------


class PersonV1(BaseModel):
    name: str
    email: Annotated[str, Unique] | None = None


class Address(BaseModel):
    city: str


class PersonV2(BaseModel):
    name: str
    email: Annotated[str, Unique] | None = None
    nickname: str | None = None
    score: int = 0
    tags: list[str] = Field(default_factory=list)
    address: Address | None = None


def test_adding_optional_fields_keeps_old_documents_readable(sqlite_url):
    with served(sqlite_url, PersonV1, indexes=()) as (_, client):
        old = client.post("/person", json={"name": "Old", "email": "old@x.org"}).json()
        client.post("/person", json={"name": "Older"})
    with served(sqlite_url, PersonV2, indexes=["score"]) as (app, client):
        url = f"/person/{old['id']}"
        body = client.get(url).json()
        assert body == {"id": old["id"], "name": "Old", "email": "old@x.org", "nickname": None, "score": 0,
                        "tags": [], "address": None}
        listing = client.get("/person").json()
        assert listing["total"] == 2 and listing["items"][0] == body
        new = client.post("/person", json={"name": "New", "nickname": "N", "score": 5, "tags": ["t"]}).json()
        assert [p["name"] for p in client.get("/person?sort=-score").json()["items"]] == ["New", "Older", "Old"]
        assert [p["name"] for p in client.get("/person?nickname=null").json()["items"]] == ["Old", "Older"]
        assert [p["name"] for p in client.get("/person?nickname__exists=false").json()["items"]] == ["Old", "Older"]
        assert [p["name"] for p in client.get("/person?nickname__ne=N").json()["items"]] == ["Old", "Older"]
        assert [p["name"] for p in client.get("/person?address.city__exists=false").json()["items"]] == \
            ["Old", "Older", "New"]
        items, url_ = [], "/person?sort=score&per_page=1&after="
        while url_:
            response = client.get(url_)
            items += [p["name"] for p in response.json()["items"]]
            url_ = next_link(response)
        assert items == ["Old", "Older", "New"]
        registry = app.registry
        with_receiver: list[dict] = []
        registry.signals.post_update_instance.connect(
            lambda sender, **kw: with_receiver.append(kw["updated_fields"]), weak=False)
        patched = client.patch(url, json={"name": "Renamed"})
        assert patched.code == 200
        assert patched.json() == {**body, "name": "Renamed"}
        assert with_receiver == [{"name": {"from": "Old", "to": "Renamed"}}]
        assert client.put(url, json={"name": "Put", "score": 2}).json()["score"] == 2
        assert client.get(f"/person/{new['id']}").json()["tags"] == ["t"]


class PersonV3(BaseModel):
    name: str
    score: int = 0


def test_removing_a_field_hides_it_and_keeps_old_documents_writable(sqlite_url):
    with served(sqlite_url, PersonV2, indexes=()) as (_, client):
        old = client.post("/person", json={"name": "Old", "nickname": "gone", "tags": ["t"]}).json()
    with served(sqlite_url, PersonV3, indexes=()) as (_, client):
        url = f"/person/{old['id']}"
        assert client.get(url).json() == {"id": old["id"], "name": "Old", "score": 0}
        assert client.get("/person").json()["items"] == [{"id": old["id"], "name": "Old", "score": 0}]
        assert client.get("/person?nickname=gone").code == 400  # not a field any more
        response = client.patch(url, json={"score": 2})
        assert response.code == 200, response.text
        assert response.json() == {"id": old["id"], "name": "Old", "score": 2}
    with contextlib.closing(sqlite3.connect(db_path(sqlite_url))) as conn:
        doc = conn.execute("SELECT doc FROM person").fetchone()[0]
    assert "nickname" not in doc  # the first write under the new model drops it for good


# -- indexes: filtered and sorted lists on unique and indexed fields do not scan -------------------


def query_plans(app, client, url: str) -> list[tuple[str, list[str]]]:
    """Every SELECT the store ran for ``GET url``, with SQLite's query plan for it."""
    statements: list[str] = []
    app.store.trace(statements.append)  # every connection: list queries run on the read pool's
    try:
        response = client.get(url)
    finally:
        app.store.trace(None)
    assert response.code == 200, response.text
    assert any(sql.lstrip().upper().startswith("SELECT") for sql in statements)  # the trace saw the queries
    with contextlib.closing(sqlite3.connect(db_path(app.runtime.settings.db))) as other:
        return [(sql, [row[3] for row in other.execute("EXPLAIN QUERY PLAN " + sql)])
                for sql in statements if sql.lstrip().upper().startswith("SELECT")]


def assert_no_scan(plans: list[tuple[str, list[str]]]) -> None:
    for sql, plan in plans:
        if sql.startswith("SELECT count(*)") and " WHERE " not in sql:
            continue  # the total of an unfiltered list counts every row by nature
        for line in plan:
            assert "TEMP B-TREE" not in line, (sql, plan)
            if line.startswith("SCAN"):
                # only an ordered walk of the table or an index, stopped by LIMIT, is acceptable
                assert "ORDER BY" in sql and " WHERE " not in sql, (sql, plan)


@pytest.fixture
def indexed(sqlite_url):
    with served(sqlite_url) as (app, client):
        people = [{"name": f"p{i:03d}", "email": f"{i:03d}@x.org", "age": i % 40, "city": ["Paris", "Lyon", "Oslo"][i % 3],
                   "rank": None if i % 5 == 0 else i % 7} for i in range(300)]
        assert client.post("/person", json=people).code == 201
        with contextlib.closing(sqlite3.connect(db_path(sqlite_url))) as conn:
            conn.execute("ANALYZE")
        yield app, client


INDEXED_QUERIES = [
    "email=007@x.org",
    "email=007@x.org&sort=email",
    "email__gt=100&sort=email",
    "email__gt=100&sort=-email",
    "email__gte=100&email__lt=200&sort=email",
    "age=3",
    "age=3&sort=-age",
    "age__gte=30&sort=age",
    "age__gte=30&sort=-age",
    "age__lt=5&sort=-age&page=3",
    "city=Paris&sort=-age",
    "city=Paris&sort=age",
    "city=Paris&age__lte=10&sort=-age",
    "rank=3&sort=-rank",
    "rank__gt=2&sort=rank",
    "sort=email",
    "sort=-email",
    "sort=age",
    "sort=-age",
    "sort=-rank",
    "sort=id",
    "sort=-id",
    "",
]


@pytest.mark.parametrize("query", INDEXED_QUERIES)
def test_indexed_filters_and_sorts_do_not_scan(indexed, query):
    app, client = indexed
    plans = query_plans(app, client, f"/person?per_page=5&{query}")
    assert plans
    assert_no_scan(plans)
    if "=" in query.replace("sort=", "").replace("per_page=", "").replace("page=", ""):
        assert any("SEARCH" in line for _, plan in plans for line in plan)


@pytest.mark.parametrize(
    "query", ["", "sort=age", "sort=-age", "sort=email", "sort=-email", "sort=rank", "sort=-rank",
              "city=Paris&sort=-age", "age__gte=10&sort=-age", "sort=-id"],
)
def test_keyset_pages_do_not_scan(indexed, query):
    app, client = indexed
    url: str | None = f"/person?per_page=40&after=&{query}"
    seen, pages = [], 0
    while url:
        for sql, plan in query_plans(app, client, url):
            assert "count(*)" not in sql  # keyset pages are not counted
            assert_no_scan([(sql, plan)])
            if "after=" in url and not url.endswith("after=") and "after=&" not in url:
                assert any(line.startswith("SEARCH") for line in plan), (sql, plan)
        response = client.get(url)
        seen += [p["id"] for p in response.json()["items"]]
        url = next_link(response)
        pages += 1
    everything = [p["id"] for p in client.get(f"/person?per_page=100&{query}").json()["items"]]
    total = client.get(f"/person?{query}").json()["total"]
    assert len(seen) == len(set(seen)) == total
    assert seen[: len(everything)] == everything


def test_the_plan_check_does_notice_a_scan(indexed):
    app, client = indexed
    plans = query_plans(app, client, "/person?name=p007")
    with pytest.raises(AssertionError):
        assert_no_scan(plans)


def test_unique_and_declared_indexes_exist(indexed, sqlite_url):
    with contextlib.closing(sqlite3.connect(db_path(sqlite_url))) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'person'").fetchall()
    sql = {name: text for name, text in rows if text}
    assert any("UNIQUE" in text and "$.email" in text for text in sql.values())
    assert any("$.city" in text and "$.age" in text for text in sql.values())
    assert any("$.rank" in text for text in sql.values())


@pytest.mark.parametrize("query", ["city=Paris", "age__gte=30", "email__gt=100", "city=Paris&age__lte=10"])
def test_the_total_of_an_indexed_filter_reads_only_the_index(indexed, query):
    """count(*) is answered from a covering index, without reading one document."""
    app, client = indexed
    counts = [(sql, plan) for sql, plan in query_plans(app, client, f"/person?{query}")
              if sql.startswith("SELECT count(*)")]
    assert counts
    for sql, plan in counts:
        assert any("COVERING INDEX" in line for line in plan), (sql, plan)


def test_indexes_of_an_older_layout_are_rebuilt_on_open(sqlite_url):
    """A file whose indexes are on json_extract expressions gets column indexes, same names."""
    path = db_path(sqlite_url)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE person (id TEXT PRIMARY KEY, v INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID")
        conn.execute("""CREATE UNIQUE INDEX "ux_person_email" ON person(json_extract(doc, '$.email'))""")
        conn.execute("INSERT INTO person VALUES ('6b0612a4c2e1d3a4b5c6d7e8', 1, '{\"name\": \"old\", \"email\": \"a@x\"}')")
        conn.commit()
    with served(sqlite_url) as (_, client):
        assert client.get("/person?email=a@x").json()["total"] == 1
        assert client.post("/person", json={"name": "dup", "email": "a@x"}).code == 409
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    assert '"$.email"' in rows["ux_person_email"] and "json_extract" not in rows["ux_person_email"]


# -- concurrency -------------------------------------------------------------------------------


def concurrently(count: int, fn) -> list:
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_unique_inserts_one_wins(sqlite_url):
    with served(sqlite_url) as (_, client):
        codes = concurrently(16, lambda i: client.post("/person", json={"name": f"n{i}", "email": "same@x.org"}).code)
        assert sorted(codes) == [201] + [409] * 15
        assert client.get("/person?email=same@x.org").json()["total"] == 1


def test_concurrent_unique_inserts_across_two_apps_on_one_file(sqlite_url):
    """Two servers on the same file, as two worker processes would be."""
    with served(sqlite_url) as (_, one), served(sqlite_url) as (_, two):
        clients = [one, two]
        for round_ in range(3):
            codes = concurrently(
                12, lambda i, r=round_: clients[i % 2].post("/person", json={"name": f"n{i}", "email": f"r{r}@x.org"}).code)
            assert sorted(codes) == [201] + [409] * 11
        bulk_codes = concurrently(
            6, lambda i: clients[i % 2].post("/person", json=[{"name": "a", "email": f"b{i}@x.org"},
                                                              {"name": "b", "email": "bulk@x.org"}]).code)
        assert sorted(bulk_codes) == [201] + [409] * 5
        assert one.get("/person").json()["total"] == 3 + 2
        assert two.get("/person?email=bulk@x.org").json()["total"] == 1


def test_concurrent_patches_lose_no_update(sqlite_url):
    with served(sqlite_url) as (_, one), served(sqlite_url) as (_, two):
        created = one.post("/person", json={"name": "shared"})
        url = created.headers["Location"]
        clients = [one, two]
        codes = concurrently(20, lambda i: clients[i % 2].patch(url, json={"counters": {f"t{i}": i}}).code)
        assert codes == [200] * 20
        final = one.get(url)
        assert final.json()["counters"] == {f"t{i}": i for i in range(20)}
        assert final.headers["ETag"] != created.headers["ETag"]


def test_conditional_writes_race_one_wins(sqlite_url):
    with served(sqlite_url) as (_, one), served(sqlite_url) as (_, two):
        created = one.post("/person", json={"name": "x"})
        url, tag = created.headers["Location"], created.headers["ETag"]
        clients = [one, two]
        codes = concurrently(10, lambda i: clients[i % 2].patch(url, json={"age": i}, headers={"If-Match": tag}).code)
        assert sorted(codes) == [200] + [412] * 9


def test_link_urls_are_relative_to_the_collection(indexed):
    _, client = indexed
    link = next_link(client.get("/person?per_page=5&after=&sort=age"))
    assert link is not None and urlsplit(link).path == "/person"
