"""ODMantic models as resources (MongoDB only): embedded models, lists of them, references,
``Field(unique=True)``, ODMantic indexes, and documents shared with ODMantic's own engine."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

pytest.importorskip("odmantic")

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine, EmbeddedModel, Field, Index, Model, Reference
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, Registry
from bzzlite.testing import record, serve


class Writer(Model):
    name: str
    email: str = Field(unique=True)
    handle: str | None = Field(default=None, unique=True)

    model_config = {"collection": "writers"}


class Comment(EmbeddedModel):
    who: str
    text: str = Field(min_length=1)


class Meta(EmbeddedModel):
    lang: str = "en"
    words: int = 0


class Article(Model):
    title: str = Field(index=True)
    slug: str
    section: str = "news"
    writer: Writer = Reference()
    published: datetime | None = None
    meta: Meta = Meta()
    comments: list[Comment] = []
    tags: list[str] = []

    model_config = {
        "collection": "articles",
        "indexes": lambda: [Index(Article.section, Article.slug, unique=True, name="section_slug")],
    }


def app_for(url: str, *models, registry: Registry | None = None) -> App:
    registry = registry or Registry()
    for model in models or (Writer, Article):
        registry.resource(model)
    return App(registry, db=url)


def engine_run(url: str, body):
    """await body(engine, db) with ODMantic's own engine on the test database."""

    async def main():
        client = AsyncIOMotorClient(url)
        try:
            db = client.get_default_database()
            return await body(AIOEngine(client=client, database=db.name), db)
        finally:
            client.close()

    return asyncio.run(main())


def writer(client, **fields) -> dict:
    response = client.post("/writer", json={"name": "Ada", "email": "ada@x", **fields})
    assert response.code == 201, response.text
    return response.json()


def article(client, writer_id: str, **fields) -> dict:
    body = {"title": "Hello", "slug": "hello", "writer": writer_id, **fields}
    response = client.post("/article", json=body)
    assert response.code == 201, response.text
    return response.json()


# -- CRUD -----------------------------------------------------------------------------------


def test_crud_with_embedded_models_and_a_reference(mongo_db_url):
    with serve(app_for(mongo_db_url)) as client:
        ada = writer(client)
        assert set(ada) == {"id", "name", "email", "handle"} and len(ada["id"]) == 24
        created = client.post("/article", json={
            "id": "ignored", "title": "Hello", "slug": "hello", "writer": ada["id"].upper(),
            "published": "2024-05-01T12:00:00Z", "meta": {"words": 3},
            "comments": [{"who": "Bob", "text": "Hi"}, {"who": "Cy", "text": "Yo"}],
        })
        assert created.code == 201, created.text
        doc = created.json()
        assert doc == {
            "id": doc["id"], "title": "Hello", "slug": "hello", "section": "news", "writer": ada["id"],
            "published": "2024-05-01T12:00:00.000000Z", "meta": {"lang": "en", "words": 3},
            "comments": [{"who": "Bob", "text": "Hi"}, {"who": "Cy", "text": "Yo"}], "tags": [],
        }
        url = created.headers["Location"]
        assert url == f"/article/{doc['id']}" and created.headers["ETag"] == '"1"'
        assert client.get(url).json() == doc

        patched = client.patch(url, json={"meta": {"lang": "fr"}, "comments": [{"who": "Dee", "text": "Salut"}]},
                               headers={"If-Match": '"1"'})
        assert patched.code == 200, patched.text
        assert patched.json()["meta"] == {"lang": "fr", "words": 3}
        assert patched.json()["comments"] == [{"who": "Dee", "text": "Salut"}]
        replaced = client.put(url, json={"title": "New", "slug": "new", "writer": ada["id"]})
        assert replaced.code == 200
        assert replaced.json()["comments"] == [] and replaced.headers["ETag"] == '"3"'
        assert client.delete(url).code == 204
        assert client.get(url).code == 404


def test_references_are_ids_in_bodies(mongo_db_url):
    with serve(app_for(mongo_db_url)) as client:
        for bad in ("nope", 12, None, {"name": "Ada", "email": "a"}, {"id": "0123456789abcdef01234567"}):
            response = client.post("/article", json={"title": "t", "slug": "s", "writer": bad})
            assert response.code == 422, (bad, response.text)
            assert response.json()["errors"] == [{
                "loc": ["writer"], "msg": "Input should be the id of a Writer document (24 hexadecimal characters)",
                "type": "reference_id"}]
        response = client.post("/article", json={"title": "t", "slug": "s"})
        assert response.code == 422
        assert [e["loc"] for e in response.json()["errors"]] == [["writer"]]
        response = client.post("/article", json={"title": "t", "slug": "s", "writer": "0123456789abcdef01234567",
                                                 "comments": [{"who": "x", "text": "", "extra": 1}]})
        assert response.code == 422
        assert sorted(e["loc"] for e in response.json()["errors"]) == [["comments", 0, "extra"], ["comments", 0, "text"]]


def test_queries_on_references_embedded_fields_and_dates(mongo_db_url):
    with serve(app_for(mongo_db_url)) as client:
        ada, bob = writer(client)["id"], writer(client, name="Bob", email="bob@x")["id"]
        ids = [article(client, ada, slug="a1", published="2024-01-01T00:00:00Z", tags=["x"])["id"],
               article(client, bob, slug="b1", published="2024-03-01T00:00:00Z", meta={"lang": "fr"})["id"],
               article(client, ada, slug="a2")["id"]]

        def found(**params) -> list[str]:
            response = client.get("/article", params=params)
            assert response.code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert found(writer=ada) == [ids[0], ids[2]]
        assert found(writer=ada.upper()) == [ids[0], ids[2]]
        assert found(writer__ne=ada) == [ids[1]]
        assert found(writer__in=f"{bob},0123456789abcdef01234567") == [ids[1]]
        assert found(writer__nin=bob) == [ids[0], ids[2]]
        assert found(sort="-writer,id") == ([ids[1], ids[0], ids[2]] if bob > ada else [ids[0], ids[2], ids[1]])
        assert found(**{"meta.lang": "fr"}) == [ids[1]]
        assert found(published__gte="2024-02-01T00:00:00Z") == [ids[1]]
        assert found(sort="-published") == [ids[1], ids[0], ids[2]]  # nulls last descending
        assert found(tags="x") == [ids[0]]
        assert found(id=ids[2]) == [ids[2]]
        assert client.get("/article", params={"writer": "nope"}).code == 400
        assert client.get("/article", params={"writer__contains": "ab"}).code == 400
        keyset = client.get("/article", params={"sort": "writer", "per_page": 1, "after": ""})
        assert keyset.code == 200 and 'rel="next"' in keyset.headers["Link"]


# -- uniqueness and indexes --------------------------------------------------------------------


def test_field_unique_and_model_indexes(mongo_db_url):
    with serve(app_for(mongo_db_url)) as client:
        ada = writer(client)["id"]
        duplicate = client.post("/writer", json={"name": "Other", "email": "ada@x"})
        assert duplicate.code == 409
        assert duplicate.json()["errors"][0]["loc"] == ["email"]
        writer(client, email="b@x")  # handle None twice: None never conflicts with None
        writer(client, email="c@x", handle="h")
        assert client.post("/writer", json={"name": "D", "email": "d@x", "handle": "h"}).code == 409

        article(client, ada, section="news", slug="same")
        article(client, ada, section="sport", slug="same")
        clash = client.post("/article", json={"title": "t", "section": "news", "slug": "same", "writer": ada})
        assert clash.code == 409, clash.text
        bulk = client.post("/article", json=[{"title": "ok", "slug": "new", "writer": ada},
                                             {"title": "t", "section": "news", "slug": "same", "writer": ada}])
        assert bulk.code == 409
        assert client.get("/article").json()["total"] == 2

    async def indexes(engine, db):
        return (await db["articles"].index_information(), await db["writers"].index_information())

    article_indexes, writer_indexes = engine_run(mongo_db_url, indexes)
    article_keys = [[k for k, _ in i["key"]] for i in article_indexes.values()]
    assert ["title"] in article_keys and ["section", "slug"] in article_keys
    assert [i.get("unique") for i in writer_indexes.values() if i["key"][0][0] == "email"] == [True]


# -- receivers -----------------------------------------------------------------------------------


def test_receivers_get_odmantic_instances_with_reference_stubs(mongo_db_url):
    registry = Registry()
    app = app_for(mongo_db_url, registry=registry)
    with serve(app) as client, record(registry.signals.post_create_instance, sender=Article) as created, \
            record(registry.signals.post_update_instance, sender=Article) as updated:
        ada = writer(client)["id"]
        doc = article(client, ada, comments=[{"who": "Bob", "text": "Hi"}])
        client.patch(f"/article/{doc['id']}", json={"title": "Changed", "meta": {"words": 9}})
    instance = created[0]["instance"]
    assert isinstance(instance, Article)
    assert instance.id == ObjectId(doc["id"])
    assert isinstance(instance.writer, Writer) and instance.writer.id == ObjectId(ada)
    assert instance.comments == [Comment(who="Bob", text="Hi")]
    assert updated[0]["instance"].title == "Changed"
    assert updated[0]["updated_fields"] == {
        "title": {"from": "Hello", "to": "Changed"},
        "meta": {"from": {"lang": "en", "words": 0}, "to": {"lang": "en", "words": 9}},
    }


def test_a_pre_create_receiver_can_set_a_reference(mongo_db_url):
    registry = Registry()
    app = app_for(mongo_db_url, registry=registry)
    chosen: dict[str, str] = {}

    @registry.on("pre_create_instance", sender=Article)
    def default_writer(sender, arguments, handler):
        arguments["data"].setdefault("writer", Writer.model_construct(id=ObjectId(chosen["id"])))

    with serve(app) as client:
        chosen["id"] = writer(client)["id"]
        response = client.post("/article", json={"title": "t", "slug": "s"})
        assert response.code == 201, response.text
        assert response.json()["writer"] == chosen["id"]


# -- sharing documents with ODMantic's own engine ---------------------------------------------------


def test_documents_created_over_http_are_read_by_odmantic(mongo_db_url):
    with serve(app_for(mongo_db_url)) as client:
        ada = writer(client)
        doc = article(client, ada["id"], published="2024-05-01T12:00:00Z", comments=[{"who": "Bob", "text": "Hi"}])

    async def body(engine, db):
        raw = await db["articles"].find_one({})
        assert raw["_id"] == ObjectId(doc["id"]) and raw["writer"] == ObjectId(ada["id"]) and raw["_v"] == 1
        found = await engine.find_one(Article, Article.id == ObjectId(doc["id"]))
        assert found is not None
        assert found.writer.name == "Ada" and found.comments[0].who == "Bob"
        assert found.published.year == 2024
        return await engine.find(Article, Article.writer == ObjectId(ada["id"]))

    assert len(engine_run(mongo_db_url, body)) == 1


def test_documents_saved_by_odmantic_are_served_and_updated_over_http(mongo_db_url):
    async def body(engine, db):
        ada = await engine.save(Writer(name="Ada", email="ada@x"))
        saved = await engine.save(Article(title="From ODMantic", slug="odm", writer=ada,
                                          published=datetime(2024, 5, 1, 12), comments=[Comment(who="B", text="x")]))
        return str(ada.id), str(saved.id)

    ada, article_id = engine_run(mongo_db_url, body)
    with serve(app_for(mongo_db_url)) as client:
        response = client.get(f"/article/{article_id}")
        assert response.code == 200
        assert response.headers["ETag"] == '"0"'  # not written by bzzlite: version 0
        assert response.json()["writer"] == ada
        assert response.json()["published"] == "2024-05-01T12:00:00.000000Z"
        assert client.get("/article", params={"writer": ada}).json()["total"] == 1
        patched = client.patch(f"/article/{article_id}", json={"tags": ["odm"]}, headers={"If-Match": '"0"'})
        assert patched.code == 200, patched.text
        assert patched.headers["ETag"] == '"1"'
        assert client.patch(f"/article/{article_id}", json={"tags": []}, headers={"If-Match": '"0"'}).code == 412


# -- configuration errors -------------------------------------------------------------------------


def test_an_odmantic_model_on_sqlite_is_a_configuration_error(sqlite_url):
    registry = Registry()
    registry.resource(Writer)
    with pytest.raises(ConfigurationError, match="ODMantic model: it needs a MongoDB store"):
        App(registry, db=sqlite_url)


def test_pydantic_and_odmantic_resources_share_a_mongodb_app(mongo_db_url):
    class Note(BaseModel):
        text: str

    with serve(app_for(mongo_db_url, Writer, Note)) as client:
        assert client.post("/note", json={"text": "x"}).code == 201
        assert writer(client)["name"] == "Ada"


class Keyed(Model):
    name: str = Field(key_name="n")


class Primary(Model):
    email: str = Field(primary_field=True)


class Inner(EmbeddedModel):
    x: int = Field(key_name="xx")


class Nested(Model):
    inner: list[Inner] = []


def test_what_bzzlite_cannot_serve_faithfully_is_refused_at_resource():
    with pytest.raises(ConfigurationError, match="key_name"):
        Registry().resource(Keyed)
    with pytest.raises(ConfigurationError, match="primary field"):
        Registry().resource(Primary)
    with pytest.raises(ConfigurationError, match="key_name"):
        Registry().resource(Nested)
