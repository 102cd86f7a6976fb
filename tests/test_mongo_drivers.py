"""The MongoDB store's drivers: PyMongo's asyncio API by default (the whole conformance suite
runs on it), motor when an app asks for it (a smoke set here), and no motor needed otherwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from typing import Annotated

import pytest
from pydantic import BaseModel
from pymongo import MongoClient

from bzzlite import App, Registry, Unique
from bzzlite.auth.revocation import MongoRevocations, revocations_in
from bzzlite.errors import ConfigurationError
from bzzlite.feeds.testing import EventStream
from bzzlite.testing import serve
from tests.test_cli import ENV


class Book(BaseModel):
    title: str
    isbn: Annotated[str, Unique] | None = None
    pages: int = 0


def app_for(url: str, **options: object) -> App:
    registry = Registry()
    registry.resource(Book)
    return App(registry, db=url, **options)


def client_class(app: App) -> str:
    async def opened() -> str:
        store = await app.runtime.ready_store()
        name = f"{type(store.client).__module__}.{type(store.client).__name__}"
        await app.shutdown()
        return name

    return asyncio.run(opened())


def test_the_default_driver_is_pymongos_asyncio_api_and_motor_is_asked_for(mongo_db_url, monkeypatch):
    assert client_class(app_for(mongo_db_url)) == "pymongo.asynchronous.mongo_client.AsyncMongoClient"
    assert client_class(app_for(mongo_db_url, mongo_driver="motor")).startswith("motor.")
    monkeypatch.setenv("BZZLITE_MONGO_DRIVER", "motor")
    assert client_class(app_for(mongo_db_url)).startswith("motor.")


def test_an_unknown_driver_or_a_missing_motor_is_a_configuration_error(mongo_db_url, monkeypatch):
    with pytest.raises(ConfigurationError, match="mongo_driver is one of 'pymongo', 'motor', not 'mongoengine'"):
        app_for(mongo_db_url, mongo_driver="mongoengine")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "motor" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"needs motor: pip install 'bzzlite\[motor\]'"):
        app_for(mongo_db_url, mongo_driver="motor")


def test_the_store_runs_without_motor_installed(mongo_db_url, tmp_path):
    # A separate interpreter where importing motor fails, as where it is not installed.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["motor"] = None  # import motor: ImportError
        from pydantic import BaseModel
        from bzzlite import App, Registry
        from bzzlite.testing import serve

        registry = Registry()

        @registry.resource
        class Book(BaseModel):
            title: str

        with serve(App(registry, db={mongo_db_url!r})) as client:
            created = client.post("/book", json={{"title": "Dune"}})
            assert created.code == 201, created.text
            assert client.get("/book").json()["items"] == [created.json()]
        assert "motor" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}}
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV,
                            cwd=tmp_path, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


# -- a smoke set on motor (and the same on the default, side by side) ----------------------


@pytest.fixture(params=["pymongo", "motor"])
def driver(request) -> str:
    return request.param


def test_crud_queries_conflicts_and_bulk_undo(mongo_db_url, driver):
    with serve(app_for(mongo_db_url, mongo_driver=driver)) as client:
        created = client.post("/book", json={"title": "Dune", "isbn": "1", "pages": 412})
        assert created.code == 201
        book = created.json()
        etag = created.headers["ETag"]
        assert client.get(f"/book/{book['id']}").json() == book
        assert client.post("/book", json={"title": "Copy", "isbn": "1"}).code == 409
        bulk = client.post("/book", json=[{"title": "A", "isbn": "2"}, {"title": "B", "isbn": "1"}])
        assert bulk.code == 409  # all or nothing: A was taken back
        client.post("/book", json={"title": "Emma", "pages": 300})
        listed = client.get("/book", params={"pages__gt": "350", "sort": "-pages"}).json()
        assert [b["title"] for b in listed["items"]] == ["Dune"] and listed["total"] == 1
        assert client.get("/book").json()["total"] == 2
        assert client.patch(f"/book/{book['id']}", json={"pages": 1}, headers={"If-Match": '"9"'}).code == 412
        patched = client.patch(f"/book/{book['id']}", json={"pages": 413}, headers={"If-Match": etag})
        assert (patched.code, patched.json()["pages"]) == (200, 413)
        assert client.delete(f"/book/{book['id']}").code == 204
        assert client.get(f"/book/{book['id']}").code == 404
        health = client.get("/_health")
        assert health.code == 200


def test_a_transaction_and_the_sign_out_list(mongo_db_url, driver):
    app = app_for(mongo_db_url, mongo_driver=driver)

    async def main() -> None:
        books = app.documents(Book)
        a, b = await books.create_many([{"title": "a"}, {"title": "b"}])
        async with app.transaction():
            await books.patch(a.id, {"pages": 1})  # type: ignore[attr-defined]
            await books.patch(b.id, {"pages": 2})  # type: ignore[attr-defined]
        assert [x.pages for x in (await books.find(sort="title")).items] == [1, 2]
        revocations = revocations_in(await app.runtime.ready_store())
        assert isinstance(revocations, MongoRevocations)
        await revocations.revoke("session-1", time.time() + 60)
        assert await revocations.is_revoked("session-1") and not await revocations.is_revoked("session-2")
        await app.shutdown()

    asyncio.run(main())


def test_the_change_journal_follows_writes_from_anywhere(mongo_db_url, driver):
    with serve(app_for(mongo_db_url, mongo_driver=driver)) as client, EventStream(client, "/book") as stream:
        stream.wait_ready()
        doc = client.post("/book", json={"title": "Dune"}).json()
        assert (lambda e: (e.type, e.data["doc"]))(stream.next()) == ("created", doc)
        with MongoClient(mongo_db_url) as other:  # another program
            other.get_default_database()["book"].update_one({}, {"$set": {"pages": 9}, "$inc": {"_v": 1}})
        updated = stream.next()
        assert updated.type == "updated" and updated.data["updated_fields"] == {"pages": {"from": 0, "to": 9}}
