"""The document API (bzzlite/documents/operations.py) on each store: the same path the HTTP handlers take."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, Ref, Registry, Unique, etag_of
from bzzlite.documents import version_of
from bzzlite.errors import (
    DuplicateKey,
    HTTPError,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from bzzlite.testing import serve


def shop() -> tuple[Registry, type[BaseModel], type[BaseModel]]:
    registry = Registry()

    @registry.resource
    class Product(BaseModel):
        sku: Annotated[str, Unique]
        stock: int = Field(default=0, ge=0)
        tags: list[str] = []

    @registry.resource
    class Order(BaseModel):
        product: str
        quantity: int = Field(ge=1)
        status: str = "open"

    return registry, Product, Order


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_crud_returns_model_instances_with_ids_and_versions(store_url: str) -> None:
    registry, Product, _ = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        created = await products.create({"sku": "a", "stock": 3})
        assert isinstance(created, Product) and created.id and created.stock == 3  # type: ignore[attr-defined]
        assert version_of(created) == 1 and etag_of(created) == '"1"'
        again = await products.get(created.id)  # type: ignore[attr-defined]
        assert again == created
        patched = await products.patch(created.id, {"stock": 2}, if_match=etag_of(created))  # type: ignore[attr-defined]
        assert patched.stock == 2 and version_of(patched) == 2
        with pytest.raises(VersionConflict):  # a stale ETag
            await products.patch(created.id, {"stock": 1}, if_match=etag_of(created))  # type: ignore[attr-defined]
        replaced = await products.replace(created.id, Product(sku="a2"))  # type: ignore[attr-defined]
        assert (replaced.sku, replaced.stock, version_of(replaced)) == ("a2", 0, 3)
        gone = await products.delete(created.id)  # type: ignore[attr-defined]
        assert gone.sku == "a2"
        with pytest.raises(NotFound):
            await products.get(created.id)  # type: ignore[attr-defined]
        with pytest.raises(NotFound):
            await products.get("not-an-id")
        await app.shutdown()

    run(main())


def test_validation_unique_and_bulk_all_or_nothing(store_url: str) -> None:
    registry, Product, _ = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        with pytest.raises(ValidationFailed) as invalid:
            await products.create({"sku": "x", "stock": -1, "colour": "red"})
        assert {tuple(e["loc"]) for e in invalid.value.errors or []} == {("stock",), ("colour",)}
        await products.create({"sku": "x"})
        with pytest.raises(DuplicateKey):
            await products.create({"sku": "x"})
        with pytest.raises(ValidationFailed) as bulk:
            await products.create_many([{"sku": "y"}, {"sku": "z", "stock": "many"}])
        assert bulk.value.errors and bulk.value.errors[0]["loc"] == [1, "stock"]
        assert await products.count() == 1  # nothing of the failed bulk create was written
        made = await products.create_many([{"sku": "y"}, {"sku": "z"}])
        assert [p.sku for p in made] == ["y", "z"]
        await app.shutdown()

    run(main())


def test_find_speaks_the_query_language_with_cursors(store_url: str) -> None:
    registry, Product, _ = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        await products.create_many([{"sku": f"p{i}", "stock": i, "tags": ["even" if i % 2 == 0 else "odd"]}
                                    for i in range(7)])
        found = await products.find({"stock__gte": 2, "tags": "even"}, sort="-stock")
        assert [p.stock for p in found.items] == [6, 4, 2] and found.total == 3
        assert await products.count({"sku__in": ["p1", "p2", "nope"]}) == 2
        seen, after = [], ""
        while after is not None:
            page = await products.find(sort=["stock"], per_page=3, after=after)
            seen += [p.stock for p in page.items]
            after = page.next
        assert seen == list(range(7))
        with pytest.raises(HTTPError) as bad:
            await products.find({"colour": "red"})
        assert bad.value.status == 400
        await app.shutdown()

    run(main())


def test_signals_fire_without_a_handler(store_url: str) -> None:
    registry, Product, _ = shop()
    heard: list[tuple[str, Any]] = []

    @registry.on("pre_create_instance", sender=Product)
    def fill(sender: Any, arguments: dict[str, Any], handler: Any) -> None:
        arguments["data"]["tags"] = ["new"]
        heard.append(("pre_create", handler))

    @registry.on("post_update_instance", sender=Product)
    async def audit(sender: Any, instance: Any, updated_fields: dict[str, Any], handler: Any) -> None:
        heard.append(("post_update", updated_fields))

    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        made = await products.create({"sku": "s"})
        assert made.tags == ["new"]
        await products.patch(made.id, {"stock": 5})  # type: ignore[attr-defined]
        await app.shutdown()

    run(main())
    assert heard == [("pre_create", None), ("post_update", {"stock": {"from": 0, "to": 5}})]


def test_a_transaction_commits_all_or_nothing(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, Product, Order = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products, orders = app.documents(Product), app.documents(Order)
        if store_url.startswith("mongodb") and not os.environ.get("BZZLITE_TEST_MONGO_URL"):
            # The stand-in accepts transactions without isolating them; a standalone mongod refuses
            # them: run the standalone path (writes one by one, undone on failure) so that the
            # rollback below is asserted on every store, this one included.
            from pymongo.errors import OperationFailure

            def no_sessions(*args: Any, **kwargs: Any) -> Any:  # refused at once, whatever the driver awaits
                raise OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20)

            monkeypatch.setattr((await app.runtime.ready_store())._client(), "start_session", no_sessions)
        a, b, c = await products.create_many([{"sku": "a", "stock": 5}, {"sku": "b", "stock": 1},
                                              {"sku": "c", "stock": 2}])
        async with app.transaction():
            await products.patch(a.id, {"stock": 4}, if_match=etag_of(a))  # type: ignore[attr-defined]
            assert (await products.get(a.id)).stock == 4  # type: ignore[attr-defined] # its own writes
            await orders.create({"product": a.id, "quantity": 1})  # type: ignore[attr-defined]
        assert (await products.get(a.id)).stock == 4 and await orders.count() == 1  # type: ignore[attr-defined]

        class OutOfStock(Exception):
            pass

        with pytest.raises(OutOfStock):
            async with app.transaction():
                await products.patch(a.id, {"stock": 3})  # type: ignore[attr-defined]
                await orders.create({"product": b.id, "quantity": 2})  # type: ignore[attr-defined]
                raise OutOfStock
        assert (await products.get(a.id)).stock == 4 and await orders.count() == 1  # type: ignore[attr-defined]

        # someone else changes b between the read and the commit: the whole commit fails
        with pytest.raises(VersionConflict):
            async with app.transaction():
                await products.patch(a.id, {"stock": 0})  # type: ignore[attr-defined]
                await products.patch(b.id, {"stock": 0})  # type: ignore[attr-defined]
                store = await app.runtime.ready_store()
                current = await store.get(products.spec, b.id)  # type: ignore[attr-defined]
                await store.replace(products.spec, current.id, {**current.doc, "stock": 9}, current.version)
        assert (await products.get(a.id)).stock == 4  # type: ignore[attr-defined] # taken back
        await app.shutdown()

    run(main())


def test_the_unique_check_fails_a_transaction_whole(store_url: str) -> None:
    registry, Product, _ = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        await products.create({"sku": "taken"})
        with pytest.raises(DuplicateKey):
            async with app.transaction():
                await products.create({"sku": "fresh"})
                await products.create({"sku": "taken"})
        assert await products.count({"sku": "fresh"}) == 0
        await app.shutdown()

    run(main())


def test_scope_is_one_decision_on_every_path(store_url: str) -> None:
    registry = Registry()

    @registry.resource(scope=lambda handler: {"owner": handler.request.headers.get("X-User", "nobody")})
    class Note(BaseModel):
        text: str
        owner: str | None = None

    @registry.route("/note/{id}/shout", methods=["POST"])
    async def shout(handler: Any, id: str) -> Note:
        notes = handler.documents(Note)
        note = await notes.get(id)
        return await notes.patch(id, {"text": note.text.upper()})

    app = App(registry, db=store_url)
    with serve(app) as client:
        alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
        note = client.post("/note", json={"text": "hi", "owner": "bob"}, headers=alice).json()
        assert note["owner"] == "alice"  # the scope fills the owner in
        url = f"/note/{note['id']}"
        unknown = client.get("/note/" + "0" * 24, headers=bob)
        for method, path, body in [("GET", url, None), ("PUT", url, {"text": "x"}), ("PATCH", url, {"text": "x"}),
                                   ("DELETE", url, None), ("POST", f"{url}/shout", None)]:
            response = client.request(method, path, json=body, headers=bob)
            assert (response.code, response.json()) == (404, unknown.json()), (method, path)
        assert client.get("/note", headers=bob).json()["total"] == 0
        assert client.get("/note?owner=alice", headers=bob).json()["total"] == 0
        assert client.get("/note", headers=alice).json()["total"] == 1
        assert client.post(f"{url}/shout", headers=alice).json()["text"] == "HI"
        assert client.put(url, json={"text": "mine", "owner": "bob"}, headers=alice).json()["owner"] == "alice"

    async def unbound() -> None:  # the app's own access: no request, no scope
        assert await app.documents(Note).count() == 1
        await app.shutdown()

    run(unbound())


def test_mongodb_without_transactions_undoes_what_a_failed_commit_wrote(mongo_db_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A standalone mongod refuses transactions (code 20): the writes are made one by one and
    those made before a failure are taken back."""
    from pymongo.errors import OperationFailure

    registry, Product, _ = shop()
    app = App(registry, db=mongo_db_url)

    async def main() -> None:
        products = app.documents(Product)
        a, b, c = await products.create_many([{"sku": "a", "stock": 5}, {"sku": "b", "stock": 1},
                                              {"sku": "c", "stock": 2}])
        store = await app.runtime.ready_store()

        def no_sessions(*args: Any, **kwargs: Any) -> Any:  # refused at once, whatever the driver awaits
            raise OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20)

        monkeypatch.setattr(store._client(), "start_session", no_sessions)  # type: ignore[attr-defined]
        with pytest.raises(VersionConflict):
            async with app.transaction():
                await products.patch(a.id, {"stock": 0})  # type: ignore[attr-defined]
                await products.delete(c.id)  # type: ignore[attr-defined]
                await products.patch(b.id, {"stock": 0})  # type: ignore[attr-defined]
                current = await store.get(products.spec, b.id)  # type: ignore[attr-defined]
                await store.replace(products.spec, current.id, {**current.doc, "stock": 9}, current.version)
        assert (await products.get(a.id)).stock == 5  # type: ignore[attr-defined] # undone
        assert (await products.get(c.id)).stock == 2  # type: ignore[attr-defined] # the delete undone, whole
        assert (await products.get(b.id)).stock == 9  # type: ignore[attr-defined] # the other writer's
        async with app.transaction():  # and without a failure, both writes land
            await products.patch(a.id, {"stock": 1})  # type: ignore[attr-defined]
            await products.patch(b.id, {"stock": 1})  # type: ignore[attr-defined]
        assert [p.stock for p in (await products.find(sort="sku")).items] == [1, 1, 2]
        await app.shutdown()

    run(main())


def test_post_receivers_hear_only_what_a_transaction_committed(store_url: str) -> None:
    """post_* signals fire after the commit: never for writes a failing transaction took back,
    and, for those it committed, once the store has them."""
    registry, Product, _ = shop()
    app = App(registry, db=store_url)
    heard: list[tuple[str, int]] = []

    @registry.on("post_update_instance", sender=Product)
    async def audit(sender: Any, instance: Any, updated_fields: Any, handler: Any) -> None:
        stored = await app.runtime.store.get(app.documents(Product).spec, instance.id)
        heard.append((instance.sku, stored.doc["stock"]))  # what the store holds when it is heard

    async def main() -> None:
        products = app.documents(Product)
        a, b, c = await products.create_many([{"sku": "a", "stock": 5}, {"sku": "b", "stock": 1},
                                              {"sku": "c", "stock": 2}])
        with pytest.raises(RuntimeError):
            async with app.transaction():
                await products.patch(a.id, {"stock": 4})  # type: ignore[attr-defined]
                raise RuntimeError("the block fails: nothing is written")
        with pytest.raises(VersionConflict):
            async with app.transaction():
                await products.patch(a.id, {"stock": 3})  # type: ignore[attr-defined]
                store = await app.runtime.ready_store()
                current = await store.get(products.spec, a.id)  # type: ignore[attr-defined]
                await store.replace(products.spec, current.id, {**current.doc, "stock": 9}, current.version)
        assert heard == []
        async with app.transaction():
            await products.patch(b.id, {"stock": 2})  # type: ignore[attr-defined]
            assert heard == []  # not yet: the block has not committed
        assert heard == [("b", 2)]
        await app.shutdown()

    run(main())


def test_a_transaction_deletes_too_and_a_stale_delete_fails_it_whole(store_url: str) -> None:
    registry, Product, Order = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products, orders = app.documents(Product), app.documents(Order)
        a, b, c = await products.create_many([{"sku": "a"}, {"sku": "b"}, {"sku": "c"}])
        async with app.transaction():
            await products.delete(a.id)  # type: ignore[attr-defined]
            created = await orders.create({"product": b.id, "quantity": 1})  # type: ignore[attr-defined]
        assert [p.sku for p in (await products.find(sort="sku")).items] == ["b", "c"]  # type: ignore[attr-defined]
        stored = await orders.get(created.id)  # type: ignore[attr-defined] # inserted with its id, version 1
        assert stored == created and version_of(stored) == 1
        # someone else changes c between the read and the commit: its delete fails, b's too
        with pytest.raises(VersionConflict):
            async with app.transaction():
                await products.delete(b.id)  # type: ignore[attr-defined]
                await products.delete(c.id)  # type: ignore[attr-defined]
                store = await app.runtime.ready_store()
                current = await store.get(products.spec, c.id)  # type: ignore[attr-defined]
                await store.replace(products.spec, current.id, {**current.doc, "stock": 9}, current.version)
        assert [p.sku for p in (await products.find(sort="sku")).items] == ["b", "c"]  # type: ignore[attr-defined]
        await app.shutdown()

    run(main())


def test_if_match_holds_for_a_listed_etag_a_star_or_the_version():
    from bzzlite.documents.operations import entity_tags, precondition_holds
    from bzzlite.stores.base import Record

    record = Record("a" * 24, 3, {})
    assert entity_tags(' "1", "2" ,, W/"3"') == ['"1"', '"2"', 'W/"3"']
    assert precondition_holds(record, None)
    assert precondition_holds(record, 3) and not precondition_holds(record, 2)
    assert precondition_holds(record, '"3"') and precondition_holds(record, '"3", "4"')
    assert precondition_holds(record, '"1","3"') and precondition_holds(record, '"9", *')
    assert not precondition_holds(record, '"2", "4"') and not precondition_holds(record, "")
    assert not precondition_holds(record, "3")  # an ETag is quoted; only a number (Python API) is a version


def test_racing_writes_without_if_match_all_land_with_it_one_wins(store_url: str) -> None:
    """Writers that read the same version race: without If-Match the losers read again and retry
    (no change is lost), with If-Match (even ``*``) a loser gets its VersionConflict (412)."""
    registry, Product, _ = shop()
    app = App(registry, db=store_url)

    async def main() -> None:
        products = app.documents(Product)
        item = await products.create({"sku": "a"})
        await asyncio.gather(*(products.patch(item.id, {"tags": [str(n)]}) for n in range(4)),
                             products.patch(item.id, {"stock": 9}))
        after = await products.get(item.id)
        assert after.stock == 9 and version_of(after) == 6  # five writes, each on the one before
        assert after.tags in ([str(n)] for n in range(4))  # no write lost: the stock's did not undo the tags'
        outcomes = await asyncio.gather(products.patch(item.id, {"stock": 1}, if_match="*"),
                                        products.patch(item.id, {"stock": 2}, if_match="*"),
                                        return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["Product", "VersionConflict"]
        assert [str(o) for o in outcomes if isinstance(o, VersionConflict)] == [item.id]  # names the document
        with pytest.raises(VersionConflict) as stale:
            await products.delete(item.id, if_match=1)
        assert str(stale.value) == item.id
        await app.shutdown()

    run(main())


def test_a_document_that_keeps_changing_is_a_409_after_many_tries(sqlite_url: str, monkeypatch) -> None:
    from bzzlite.documents import operations

    registry, Product, _ = shop()
    app = App(registry, db=sqlite_url)
    waits: list[float] = []
    bounds: list[tuple[float, float]] = []

    async def main() -> None:
        products = app.documents(Product)
        item = await products.create({"sku": "a"})
        store = await app.runtime.ready_store()

        async def always_stale(*args: Any) -> Any:
            raise VersionConflict(item.id)  # someone else wrote first, every time

        async def no_wait(delay: float) -> None:
            waits.append(delay)

        def upper(low: float, high: float) -> float:
            bounds.append((low, high))
            return high

        monkeypatch.setattr(store, "replace", always_stale)
        monkeypatch.setattr(operations.asyncio, "sleep", no_wait)
        monkeypatch.setattr(operations.random, "uniform", upper)
        with pytest.raises(HTTPError) as caught:
            await products.patch(item.id, {"stock": 1})
        monkeypatch.undo()
        await app.shutdown()
        return caught.value

    error = run(main())
    assert (error.status, error.message) == (409, "The document is being changed by others; try again.")
    # between tries, a random wait up to 0.5 ms, doubling each time, at most 50 ms
    expected = [(0, min(0.05, 0.0005 * 2**attempt)) for attempt in range(64)]
    assert bounds == expected and waits == [high for _, high in expected]


def test_a_transaction_checks_if_match_and_new_references_but_not_held_ones(store_url: str) -> None:
    registry = Registry()

    @registry.resource
    class Tag(BaseModel):
        name: str

    @registry.resource
    class Author(BaseModel):
        name: str

    @registry.resource
    class Post(BaseModel):
        title: str
        author: Annotated[str, Ref(Author)] | None = None
        tag: Annotated[str, Ref(Tag)]

    app = App(registry, db=store_url)

    async def main() -> None:
        tags, posts = app.documents(Tag), app.documents(Post)
        tag = await tags.create({"name": "t"})
        with pytest.raises(ValidationFailed) as missing:  # each referenced resource is asked
            await posts.create({"title": "a", "author": "0" * 24, "tag": tag.id})
        assert [(e["loc"], e["type"]) for e in missing.value.errors or []] == [(["author"], "reference_missing")]
        with pytest.raises(ValidationFailed) as missing:
            await posts.create({"title": "a", "author": "0" * 24, "tag": "1" * 24})
        assert [e["loc"] for e in missing.value.errors or []] == [["author"], ["tag"]]
        gone = await tags.create({"name": "gone"})
        with pytest.raises(ValidationFailed) as missing:  # deleted earlier in the same transaction
            async with app.transaction():
                await tags.delete(gone.id)
                await posts.create({"title": "a", "tag": gone.id})
        assert [e["type"] for e in missing.value.errors or []] == ["reference_missing"]
        post = await posts.create({"title": "a", "tag": tag.id})
        with pytest.raises(NotFound) as unknown:
            await posts.get("nope")
        assert str(unknown.value) == "nope"
        with pytest.raises(VersionConflict) as stale:
            async with app.transaction():
                await posts.patch(post.id, {"title": "b"}, if_match='"7"')
        assert str(stale.value) == post.id
        with pytest.raises(ValidationFailed) as missing:
            async with app.transaction():
                await posts.patch(post.id, {"tag": "0" * 24})
        assert [e["type"] for e in missing.value.errors or []] == ["reference_missing"]
        # a reference that dangles already (written before the check existed) is not judged again
        store = await app.runtime.ready_store()
        current = await store.get(posts.spec, post.id)
        await store.replace(posts.spec, post.id, {**current.doc, "tag": "f" * 24}, current.version)
        async with app.transaction():
            await posts.patch(post.id, {"title": "in a transaction"})
        assert (await posts.patch(post.id, {"title": "alone"})).title == "alone"
        # a delete that loses a race with a change deletes the document as it was changed
        changed, gone = await asyncio.gather(posts.patch(post.id, {"title": "last"}), posts.delete(post.id))
        assert changed.title == gone.title == "last" and version_of(gone) == version_of(changed)
        await app.shutdown()

    run(main())


def test_a_lookup_resource_reads_and_writes_by_its_field(store_url: str) -> None:
    registry = Registry()

    @registry.resource(lookup="username")
    class User(BaseModel):
        username: Annotated[str, Unique]
        name: str = ""

    app = App(registry, db=store_url)

    async def main() -> None:
        users = app.documents(User)
        await users.create({"username": "alice", "name": "A"})
        assert (await users.get("alice")).name == "A"
        assert (await users.patch("alice", {"name": "B"})).name == "B"
        with pytest.raises(NotFound):
            await users.get("bob")
        await app.shutdown()

    run(main())
