"""Reference integrity: writes name documents that exist; deletes follow Ref's on_delete."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, Ref, Registry
from bzzlite.testing import record, serve

MISSING = "0" * 24


def blog() -> Registry:
    registry = Registry()

    @registry.resource
    class Author(BaseModel):
        name: str

    class Byline(BaseModel):
        author: Annotated[str, Ref(Author)]

    @registry.resource
    class Post(BaseModel):
        title: str
        author: Annotated[str, Ref(Author, on_delete="cascade")]
        editor: Annotated[str, Ref(Author, on_delete="set_null")] | None = None
        fans: list[Annotated[str, Ref(Author, on_delete="set_null")]] = []
        bylines: list[Byline] = []

    @registry.resource
    class Comment(BaseModel):
        post: Annotated[str, Ref(Post)]  # restrict: a commented post cannot go
        text: str

    return registry


def test_a_write_naming_a_missing_document_is_a_422(store_url: str) -> None:
    with serve(App(blog(), db=store_url)) as client:
        ann = client.post("/author", json={"name": "Ann"}).json()["id"]
        bad = client.post("/post", json={"title": "t", "author": MISSING, "fans": [ann, MISSING],
                                         "bylines": [{"author": MISSING}]})
        assert bad.code == 422
        assert {(tuple(e["loc"]), e["type"]) for e in bad.json()["errors"]} == {
            (("author",), "reference_missing"), (("fans", 1), "reference_missing"),
            (("bylines", 0, "author"), "reference_missing")}
        assert client.post("/post", json=[{"title": "a", "author": ann}, {"title": "b", "author": MISSING}]
                           ).json()["errors"][0]["loc"] == [1, "author"]
        post = client.post("/post", json={"title": "t", "author": ann}).json()
        url = f"/post/{post['id']}"
        assert client.patch(url, json={"editor": MISSING}).json()["errors"][0]["loc"] == ["editor"]
        assert client.put(url, json={"title": "t", "author": MISSING}).code == 422
        assert client.post(f"{url}/bylines", json={"author": ann}).code == 201
        nested = client.put(f"{url}/bylines/0", json={"author": MISSING})  # a nested write too
        assert nested.code == 422 and nested.json()["errors"][0]["loc"] == ["bylines", 0, "author"]
        assert client.post(f"{url}/fans", json={"id": MISSING}).code == 404  # associating: no such author
        assert client.post(f"{url}/fans", json={"id": ann}).code == 201
        assert client.get("/post").json()["total"] == 1


def test_deletes_follow_on_delete(store_url: str) -> None:
    registry = blog()
    with serve(App(registry, db=store_url)) as client, \
            record(registry.signals.post_delete_instance) as deleted:
        ann = client.post("/author", json={"name": "Ann"}).json()["id"]
        bob = client.post("/author", json={"name": "Bob"}).json()["id"]
        by_ann = client.post("/post", json={"title": "a", "author": ann, "editor": bob}).json()["id"]
        by_bob = client.post("/post", json={"title": "b", "author": bob, "editor": ann, "fans": [ann, bob]}).json()["id"]
        comment = client.post("/comment", json={"post": by_ann, "text": "hi"}).json()["id"]

        # Ann's post is commented (restrict): deleting Ann would cascade into it, so nothing goes
        refused = client.delete(f"/author/{ann}")
        assert refused.code == 409 and "Comment" in refused.json()["detail"], refused.text
        assert client.get(f"/author/{ann}").code == 200 and client.get(f"/post/{bob and by_ann}").code == 200
        assert client.get(f"/post/{by_bob}").json()["editor"] == ann  # the set_null was not applied either

        assert client.delete(f"/comment/{comment}").code == 204
        assert client.delete(f"/author/{ann}").code == 204
        assert client.get(f"/post/{by_ann}").code == 404  # cascade
        after = client.get(f"/post/{by_bob}").json()
        assert (after["editor"], after["fans"]) == (None, [bob])  # set_null: null, or out of the list
        assert client.delete(f"/author/{bob}").code == 204
        assert client.get("/post").json()["total"] == 0
    assert [call["sender"].__name__ for call in deleted] == ["Comment", "Post", "Author", "Post", "Author"]


def test_the_document_api_keeps_references_whole(store_url: str) -> None:
    import asyncio

    from bzzlite.errors import Referenced, ValidationFailed

    registry = blog()
    app = App(registry, db=store_url)
    Author, Post, Comment = (registry.resources[p].model for p in ("/author", "/post", "/comment"))

    async def main() -> None:
        ann = await app.documents(Author).create({"name": "Ann"})
        with pytest.raises(ValidationFailed):
            await app.documents(Post).create({"title": "t", "author": MISSING})
        async with app.transaction():  # a document created in the same transaction exists
            bob = await app.documents(Author).create({"name": "Bob"})
            post = await app.documents(Post).create({"title": "t", "author": bob.id})  # type: ignore[attr-defined]
        await app.documents(Comment).create({"post": post.id, "text": "x"})  # type: ignore[attr-defined]
        with pytest.raises(Referenced):
            await app.documents(Author).delete(bob.id)  # type: ignore[attr-defined]
        await app.documents(Author).delete(ann.id)  # type: ignore[attr-defined]
        await app.shutdown()

    asyncio.run(main())


def test_set_null_needs_an_optional_field() -> None:
    registry = Registry()

    @registry.resource
    class Tag(BaseModel):
        name: str

    @registry.resource
    class Item(BaseModel):
        tag: Annotated[str, Ref(Tag, on_delete="set_null")]

    with pytest.raises(ConfigurationError, match="needs an optional field"):
        App(registry, db="sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match="on_delete is one of"):
        Ref(Tag, on_delete="orphan")
