"""Nested routes (bzz's inner properties): embedded models, lists of them and references,
over HTTP on every store; plus the pure path resolution of ``bzzlite/models/nested.py``."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, ConfigurationError, HTTPError, Ref, Registry
from bzzlite.documents.paths import PathNotFound, locate, parse_path
from bzzlite.models.nested import inspect_nested
from bzzlite.testing import record, serve
from tests._direct import delete_behind_bzzlites_back

MISSING_ID = "0123456789abcdef01234567"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Comment(BaseModel):
    text: str = Field(min_length=1)
    votes: int = 0
    author: Annotated[str, Ref("author")] | None = None


class Author(BaseModel):
    name: str


class Post(BaseModel):
    title: str
    address: Address | None = None
    comments: list[Comment] = Field(default=[], max_length=50)
    author: Annotated[str, Ref(Author)] | None = None
    tags: list[Annotated[str, Ref("author")]] = []


class Member(BaseModel):
    id: str
    name: str
    address: Address | None = None
    skills: list[Address] = []


class Team(BaseModel):
    name: str
    home: Address  # required embedded model
    lead: Annotated[str, Ref(Author)]  # required reference
    members: list[Member] = []


def registry_with(*models: type[BaseModel]) -> Registry:
    registry = Registry()
    for model in models or (Author, Post, Team):
        registry.resource(model)
    return registry


@contextlib.contextmanager
def served(store_url, registry=None):
    app = App(registry or registry_with(), db=store_url)
    with serve(app) as client:
        yield client


def problem(response, status):
    assert response.code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and "Traceback" not in response.text
    return body


def created(response):
    assert response.code == 201, response.text
    return response.json()


def new_post(client, **fields):
    return created(client.post("/post", json={"title": "Hello", **fields}))["id"]


def new_author(client, name="Ann"):
    return created(client.post("/author", json={"name": name}))["id"]


# -- embedded model --------------------------------------------------------------------------


def test_embedded_model_get_put_patch_delete(store_url):
    with served(store_url) as client:
        pid = new_post(client)
        problem(client.get(f"/post/{pid}/address"), 404)  # not set yet

        response = client.put(f"/post/{pid}/address", json={"city": "Paris"})
        assert response.code == 200
        assert response.json() == {"city": "Paris", "zip": None}
        assert response.headers["ETag"] == client.get(f"/post/{pid}").headers["ETag"]

        response = client.patch(f"/post/{pid}/address", json={"zip": "75001"})
        assert response.json() == {"city": "Paris", "zip": "75001"}
        response = client.get(f"/post/{pid}/address")
        assert response.code == 200 and response.json() == {"city": "Paris", "zip": "75001"}

        # merge patch: null returns a field to its default; PUT replaces the whole model
        assert client.patch(f"/post/{pid}/address", json={"zip": None}).json() == {"city": "Paris", "zip": None}
        assert client.put(f"/post/{pid}/address", json={"city": "Lyon"}).json() == {"city": "Lyon", "zip": None}

        assert client.delete(f"/post/{pid}/address").code == 204
        assert client.get(f"/post/{pid}").json()["address"] is None
        problem(client.delete(f"/post/{pid}/address"), 404)  # nothing left to delete


def test_embedded_model_is_validated_with_the_parent(store_url):
    with served(store_url) as client:
        pid = new_post(client, address={"city": "Paris"})
        body = problem(client.put(f"/post/{pid}/address", json={"zip": "1"}), 422)
        assert body["errors"][0]["loc"] == ["address", "city"]
        body = problem(client.patch(f"/post/{pid}/address", json={"planet": "Mars"}), 422)
        assert body["errors"][0]["loc"] == ["address", "planet"]
        problem(client.patch(f"/post/{pid}/address", json={"city": None}), 422)  # required
        problem(client.put(f"/post/{pid}/address", json=["Paris"]), 422)
        problem(client.put(f"/post/{pid}/address", body=b"{nope", headers={"Content-Type": "application/json"}), 400)
        assert client.get(f"/post/{pid}/address").json() == {"city": "Paris", "zip": None}


def test_a_required_embedded_model_cannot_be_deleted(store_url):
    with served(store_url) as client:
        lead = new_author(client)
        tid = created(client.post("/team", json={"name": "A", "home": {"city": "Oslo"}, "lead": lead}))["id"]
        before = client.get(f"/team/{tid}")
        body = problem(client.delete(f"/team/{tid}/home"), 422)
        assert body["errors"] == [{"loc": ["home"], "msg": "'home' is required: it cannot be removed, only replaced "
                                   "(PUT)", "type": "missing"}]
        body = problem(client.delete(f"/team/{tid}/lead"), 422)
        assert body["errors"][0]["loc"] == ["lead"]
        after = client.get(f"/team/{tid}")
        assert after.json() == before.json() and after.headers["ETag"] == before.headers["ETag"]
        assert client.put(f"/team/{tid}/home", json={"city": "Bergen"}).code == 200


def test_an_id_in_an_embedded_body_is_ignored(store_url):
    with served(store_url) as client:
        pid = new_post(client)
        assert client.put(f"/post/{pid}/address", json={"id": "x", "city": "Paris"}).json() == \
            {"city": "Paris", "zip": None}


def test_get_with_if_none_match_is_304(store_url):
    with served(store_url) as client:
        pid = new_post(client, address={"city": "Paris"})
        tag = client.get(f"/post/{pid}/address").headers["ETag"]
        response = client.get(f"/post/{pid}/address", headers={"If-None-Match": tag})
        assert response.code == 304 and response.headers["ETag"] == tag
        response = client.get(f"/post/{pid}/comments", headers={"If-None-Match": tag})
        assert response.code == 304


# -- list of embedded models (keyed by position) ----------------------------------------------


def test_list_post_get_put_patch_delete_by_position(store_url):
    with served(store_url) as client:
        pid = new_post(client)
        response = client.post(f"/post/{pid}/comments", json={"text": "first"})
        assert response.code == 201
        assert response.json() == {"text": "first", "votes": 0, "author": None}
        assert response.headers["Location"] == f"/post/{pid}/comments/0"
        assert response.headers["ETag"] == client.get(f"/post/{pid}").headers["ETag"]
        second = client.post(f"/post/{pid}/comments", json={"text": "second", "votes": 2})
        assert second.headers["Location"] == f"/post/{pid}/comments/1"

        response = client.get(f"/post/{pid}/comments")
        assert response.code == 200
        assert response.json() == {
            "items": [{"text": "first", "votes": 0, "author": None}, {"text": "second", "votes": 2, "author": None}],
            "total": 2, "page": 1, "per_page": 20,
        }
        assert client.get(f"/post/{pid}/comments/1").json()["text"] == "second"
        assert client.get(f"/post/{pid}/comments/1/").json()["text"] == "second"  # trailing slash

        assert client.patch(f"/post/{pid}/comments/1", json={"votes": 3}).json() == \
            {"text": "second", "votes": 3, "author": None}
        assert client.put(f"/post/{pid}/comments/0", json={"text": "1st"}).json() == \
            {"text": "1st", "votes": 0, "author": None}

        assert client.delete(f"/post/{pid}/comments/0").code == 204
        assert [c["text"] for c in client.get(f"/post/{pid}").json()["comments"]] == ["second"]
        assert client.get(f"/post/{pid}/comments/0").json()["text"] == "second"  # positions shift
        problem(client.get(f"/post/{pid}/comments/1"), 404)


def test_list_pagination(store_url):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": str(i)} for i in range(5)])
        response = client.get(f"/post/{pid}/comments", params={"page": 2, "per_page": 2})
        body = response.json()
        assert [c["text"] for c in body["items"]] == ["2", "3"]
        assert (body["total"], body["page"], body["per_page"]) == (5, 2, 2)
        assert 'rel="next"' in response.headers["Link"] and 'rel="prev"' in response.headers["Link"]
        assert client.get(f"/post/{pid}/comments", params={"page": 9}).json()["items"] == []
        problem(client.get(f"/post/{pid}/comments", params={"page": 0}), 400)
        body = problem(client.get(f"/post/{pid}/comments", params={"text": "2"}), 400)
        assert body["errors"][0]["loc"] == ["query", "text"]


def test_appending_validates_the_whole_parent(store_url):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": "x"}] * 50)  # max_length=50
        body = problem(client.post(f"/post/{pid}/comments", json={"text": "one too many"}), 422)
        assert body["errors"][0]["loc"] == ["comments"]
        assert client.get(f"/post/{pid}/comments").json()["total"] == 50
        pid = new_post(client, comments=[{"text": "x"}])
        body = problem(client.post(f"/post/{pid}/comments", json={"text": ""}), 422)
        assert [e["loc"] for e in body["errors"]] == [["comments", 1, "text"]]
        body = problem(client.post(f"/post/{pid}/comments", json={"text": "a", "bogus": 1}), 422)
        assert [e["loc"] for e in body["errors"]] == [["comments", 1, "bogus"]]
        problem(client.post(f"/post/{pid}/comments", json=[{"text": "a"}]), 422)
        assert client.get(f"/post/{pid}/comments").json()["total"] == 1


def test_form_encoded_append(store_url):
    with served(store_url) as client:
        pid = new_post(client)
        response = client.post(f"/post/{pid}/comments", data={"text": "from a form", "votes": "4", "author": ""})
        assert created(response) == {"text": "from a form", "votes": 4, "author": None}


# -- list keyed by the element's own id, and deeper paths ----------------------------------------


def new_team(client, **fields):
    lead = new_author(client, "Lead")
    body = {"name": "Core", "home": {"city": "Oslo"}, "lead": lead, **fields}
    return created(client.post("/team", json=body))["id"]


def test_list_keyed_by_element_id(store_url):
    with served(store_url) as client:
        tid = new_team(client)
        response = client.post(f"/team/{tid}/members", json={"name": "Ann"})  # no id: the server assigns one
        ann = created(response)
        assert len(ann["id"]) == 24
        assert response.headers["Location"] == f"/team/{tid}/members/{ann['id']}"
        assert response.headers["X-Created-Id"] == ann["id"]
        bob = created(client.post(f"/team/{tid}/members", json={"id": "bob", "name": "Bob"}))
        assert bob["id"] == "bob"
        body = problem(client.post(f"/team/{tid}/members", json={"id": "bob", "name": "Bobby"}), 409)
        assert body["errors"][0]["loc"] == ["members", 2, "id"]

        assert client.get(f"/team/{tid}/members/bob").json()["name"] == "Bob"
        # the key is read-only, like a document's id
        assert client.patch(f"/team/{tid}/members/bob", json={"id": "robert", "name": "Robert"}).json() == \
            {"id": "bob", "name": "Robert", "address": None, "skills": []}
        assert client.put(f"/team/{tid}/members/bob", json={"name": "Rob"}).json()["id"] == "bob"
        problem(client.get(f"/team/{tid}/members/0"), 404)  # keys are ids, not positions
        problem(client.get(f"/team/{tid}/members/robert"), 404)

        assert client.delete(f"/team/{tid}/members/{ann['id']}").code == 204
        assert [m["id"] for m in client.get(f"/team/{tid}/members").json()["items"]] == ["bob"]
        assert client.get(f"/team/{tid}/members/bob").json()["name"] == "Rob"


def test_deeper_paths(store_url):
    with served(store_url) as client:
        tid = new_team(client, members=[{"id": "m1", "name": "Ann"}])
        base = f"/team/{tid}/members/m1"
        problem(client.get(f"{base}/address"), 404)
        assert client.put(f"{base}/address", json={"city": "Rome"}).json() == {"city": "Rome", "zip": None}
        assert client.patch(f"{base}/address", json={"zip": "00100"}).json() == {"city": "Rome", "zip": "00100"}
        assert client.get(f"{base}/address").json()["zip"] == "00100"
        assert client.get(f"/team/{tid}").json()["members"][0]["address"] == {"city": "Rome", "zip": "00100"}

        response = client.post(f"{base}/skills", json={"city": "Milan"})
        assert created(response) == {"city": "Milan", "zip": None}
        assert response.headers["Location"] == f"{base}/skills/0"
        assert client.get(f"{base}/skills/0").json()["city"] == "Milan"
        assert client.patch(f"{base}/skills/0", json={"zip": "1"}).json() == {"city": "Milan", "zip": "1"}
        assert client.delete(f"{base}/skills/0").code == 204
        assert client.get(f"{base}/skills").json()["total"] == 0

        assert client.delete(f"{base}/address").code == 204
        problem(client.get(f"{base}/address/city"), 404)  # not a model field
        problem(client.get(f"/team/{tid}/members/nobody/address"), 404)


def test_recursive_models(store_url):
    class Reply(BaseModel):
        text: str
        replies: list[Reply] = []

    class Thread(BaseModel):
        replies: list[Reply] = []

    Reply.model_rebuild()
    with served(store_url, registry_with(Thread)) as client:
        tid = created(client.post("/thread", json={}))["id"]
        assert client.post(f"/thread/{tid}/replies", json={"text": "a"}).code == 201
        assert client.post(f"/thread/{tid}/replies/0/replies", json={"text": "b"}).code == 201
        response = client.post(f"/thread/{tid}/replies/0/replies/0/replies", json={"text": "c"})
        assert response.headers["Location"] == f"/thread/{tid}/replies/0/replies/0/replies/0"
        assert client.get(f"/thread/{tid}/replies/0/replies/0/replies/0").json() == {"text": "c", "replies": []}
    paths = {path for _, path, _ in App(registry_with(Thread), db=store_url).route_table()}
    assert "/thread/{id}/replies/{replies_index}/replies/{replies_index2}" in paths  # names unique per path


# -- references ------------------------------------------------------------------------------------


def test_reference_get_put_delete(store_url):
    with served(store_url) as client:
        ann, bob = new_author(client, "Ann"), new_author(client, "Bob")
        pid = new_post(client, author=ann.upper())  # ids are stored lowercase
        assert client.get(f"/post/{pid}").json()["author"] == ann
        response = client.get(f"/post/{pid}/author")
        assert response.code == 200 and response.json() == {"id": ann, "name": "Ann"}

        assert client.put(f"/post/{pid}/author", json={"id": bob}).json() == {"id": bob, "name": "Bob"}
        assert client.get(f"/post/{pid}").json()["author"] == bob
        problem(client.put(f"/post/{pid}/author", json={"id": MISSING_ID}), 404)
        body = problem(client.put(f"/post/{pid}/author", json={"id": "nope"}), 422)
        assert body["errors"] == [{"loc": ["id"], "msg": "Input should be the id of a document (24 hexadecimal "
                                   "characters)", "type": "reference_id"}]
        body = problem(client.put(f"/post/{pid}/author", json={"id": bob, "name": "Bobby"}), 422)
        assert body["errors"] == [{"loc": ["name"], "msg": "Send only the id of the document to reference; change "
                                   "the document itself at its own URL", "type": "extra_forbidden"}]
        response = problem(client.patch(f"/post/{pid}/author", json={"name": "x"}), 405)
        assert response["detail"] == "PATCH is not allowed here; use GET, PUT, DELETE."
        assert client.patch(f"/post/{pid}/author", json={}).headers["Allow"] == "GET, PUT, DELETE"

        assert client.delete(f"/post/{pid}/author").code == 204  # dissociated, not deleted
        assert client.get(f"/post/{pid}").json()["author"] is None
        assert client.get(f"/author/{bob}").code == 200
        problem(client.get(f"/post/{pid}/author"), 404)
        assert problem(client.delete(f"/post/{pid}/author"), 404)["detail"] == "'author' is not set."


def test_a_reference_to_a_deleted_document_is_404(store_url):
    with served(store_url) as client:
        ann = new_author(client)
        pid = new_post(client, author=ann, tags=[ann])
        assert client.delete(f"/author/{ann}").code == 409  # Ref's on_delete="restrict" (the default)
        delete_behind_bzzlites_back(store_url, registry_with(), "/author", ann)  # as another program could
        assert problem(client.get(f"/post/{pid}/author"), 404)["detail"] == f"No Author with id {ann}."
        problem(client.get(f"/post/{pid}/tags/{ann}"), 404)
        assert client.get(f"/post/{pid}/tags").json() == {"items": [], "total": 1, "page": 1, "per_page": 20}
        assert client.delete(f"/post/{pid}/tags/{ann}").code == 204  # a dangling reference can be removed
        _change_behind_bzzlites_back(store_url, "/post", pid, {"author": "not-an-id", "tags": ["not-an-id"]})
        assert problem(client.get(f"/post/{pid}/author"), 404)["detail"] == "No Author with that id."
        assert client.get(f"/post/{pid}/tags").json() == {"items": [], "total": 1, "page": 1, "per_page": 20}


def _change_behind_bzzlites_back(store_url, path, id_, changes):
    """Change a stored document straight in the store, as another program could (no validation)."""
    import asyncio

    app = App(registry_with(), db=store_url)

    async def main():
        store = await app.runtime.ready_store()
        spec = app.runtime.registry.resources[path]
        current = await store.get(spec, id_)
        await store.replace(spec, id_, {**current.doc, **changes}, current.version)
        await app.shutdown()

    asyncio.run(main())


def test_list_of_references(store_url):
    with served(store_url) as client:
        ann, bob = new_author(client, "Ann"), new_author(client, "Bob")
        pid = new_post(client)
        response = client.post(f"/post/{pid}/tags", json={"id": bob})
        assert response.code == 201 and response.json() == {"id": bob, "name": "Bob"}
        assert response.headers["Location"] == f"/post/{pid}/tags/{bob}"
        assert client.post(f"/post/{pid}/tags", data={"id": ann}).code == 201  # form-encoded too
        again = client.post(f"/post/{pid}/tags", json={"id": bob})
        assert again.code == 200  # already associated: nothing written
        assert client.get(f"/post/{pid}").json()["tags"] == [bob, ann]

        problem(client.post(f"/post/{pid}/tags", json={"id": MISSING_ID}), 404)
        problem(client.post(f"/post/{pid}/tags", json={"name": "Carl"}), 422)
        assert client.get(f"/post/{pid}/tags").json() == {
            "items": [{"id": bob, "name": "Bob"}, {"id": ann, "name": "Ann"}], "total": 2, "page": 1, "per_page": 20,
        }
        assert client.get(f"/post/{pid}/tags", params={"per_page": 1, "page": 2}).json()["items"] == \
            [{"id": ann, "name": "Ann"}]
        assert client.get(f"/post/{pid}/tags/{ann}").json() == {"id": ann, "name": "Ann"}

        assert client.delete(f"/post/{pid}/tags/{bob}").code == 204
        assert client.get(f"/post/{pid}").json()["tags"] == [ann]
        assert client.get(f"/author/{bob}").json() == {"id": bob, "name": "Bob"}  # still there
        problem(client.delete(f"/post/{pid}/tags/{bob}"), 404)
        # PUT and PATCH change the referenced document itself, as at its own URL
        problem(client.put(f"/post/{pid}/tags/{ann}", json={"id": ann}), 422)
        assert client.patch(f"/post/{pid}/tags/{ann}", json={"name": "Ann B."}).json() == {"id": ann, "name": "Ann B."}
        assert client.get(f"/author/{ann}").json()["name"] == "Ann B."
        problem(client.patch(f"/post/{pid}/tags/{bob}", json={"name": "x"}), 404)  # no longer associated


def test_reference_inside_a_list_element(store_url):
    with served(store_url) as client:
        ann = new_author(client)
        pid = new_post(client, comments=[{"text": "hi", "author": ann}, {"text": "anon"}])
        assert client.get(f"/post/{pid}/comments/0/author").json() == {"id": ann, "name": "Ann"}
        problem(client.get(f"/post/{pid}/comments/1/author"), 404)
        problem(client.get(f"/post/{pid}/comments/0/author/name"), 404)  # after a reference: its id, not a field


def test_bad_references_are_configuration_errors(sqlite_url):
    class Orphan(BaseModel):
        owner: Annotated[str, Ref("nobody")]

    with pytest.raises(ConfigurationError, match="nobody"):
        App(registry_with(Orphan), db=sqlite_url)

    class NotAResource(BaseModel):
        name: str

    class Orphan2(BaseModel):
        owner: Annotated[str, Ref(NotAResource)]

    with pytest.raises(ConfigurationError, match="@resource"):
        App(registry_with(Orphan2), db=sqlite_url)

    class Numbered(BaseModel):
        owner: Annotated[int, Ref(Author)]

    with pytest.raises(ConfigurationError, match="Annotated"):
        App(registry_with(Author, Numbered), db=sqlite_url)

    with pytest.raises(ConfigurationError):
        Ref("")


# -- signals ---------------------------------------------------------------------------------------


def test_signals_fire_with_the_inner_model_as_sender(store_url):
    registry = registry_with()
    signals = registry.signals
    with served(store_url, registry) as client:
        pid = new_post(client, comments=[{"text": "a"}, {"text": "b"}])
        with record(signals.pre_create_instance, sender=Comment) as pre, \
                record(signals.post_create_instance, sender=Comment) as post:
            client.post(f"/post/{pid}/comments", json={"text": "c"})
        assert pre[0]["arguments"] == {"id": pid, "path": ["comments"], "data": {"text": "c"}}
        assert isinstance(post[0]["instance"], Comment) and post[0]["instance"].text == "c"
        assert post[0]["handler"].parent_id == pid and post[0]["handler"].nested_path == ["comments"]
        assert post[0]["handler"].parent.comments[2].text == "c"

        with record(signals.pre_update_instance, sender=Comment) as pre, \
                record(signals.post_update_instance, sender=Comment) as post, \
                record(signals.post_update_instance, sender=Post) as parent_updates:
            client.patch(f"/post/{pid}/comments/2", json={"text": "C", "votes": 0})
        assert pre[0]["arguments"] == {"id": pid, "path": ["comments", "2"], "data": {"text": "C", "votes": 0},
                                       "partial": True}
        assert post[0]["updated_fields"] == {"comments.2.text": {"from": "c", "to": "C"}}
        assert post[0]["instance"].text == "C"
        assert pre[0]["handler"].nested_path == post[0]["handler"].nested_path == ["comments", "2"]
        assert parent_updates == []  # only the inner model's signals fire

        with record(signals.pre_get_list, sender=Comment) as pre, record(signals.post_get_list, sender=Comment) as post:
            client.get(f"/post/{pid}/comments", params={"per_page": 2})
        assert pre[0]["arguments"] == {"id": pid, "path": ["comments"], "page": 1, "per_page": 2}
        assert [c.text for c in post[0]["items"]] == ["a", "b"]
        assert pre[0]["handler"].nested_path == post[0]["handler"].nested_path == ["comments"]

        with record(signals.pre_get_instance, sender=Comment) as pre, \
                record(signals.post_get_instance, sender=Comment) as post:
            client.get(f"/post/{pid}/comments/1")
        assert pre[0]["arguments"] == {"id": pid, "path": ["comments", "1"]}
        assert post[0]["instance"].text == "b"
        assert post[0]["handler"].parent.id == pid  # the parent as read, for receivers
        assert pre[0]["handler"].nested_path == post[0]["handler"].nested_path == ["comments", "1"]

        with record(signals.pre_delete_instance, sender=Comment) as pre, \
                record(signals.post_delete_instance, sender=Comment) as post:
            client.delete(f"/post/{pid}/comments/0")
        assert pre[0]["arguments"] == {"id": pid, "path": ["comments", "0"]}
        assert post[0]["instance"].text == "a"
        assert pre[0]["handler"].nested_path == post[0]["handler"].nested_path == ["comments", "0"]

        with record(signals.post_update_instance, sender=Address) as post:
            client.put(f"/post/{pid}/address", json={"city": "Paris"})
            client.patch(f"/post/{pid}/address", json={"zip": "75"})
        assert post[0]["updated_fields"] == {"address.city": {"from": None, "to": "Paris"}}
        assert post[1]["updated_fields"] == {"address.zip": {"from": None, "to": "75"}}
        assert post[0]["handler"].nested_path == ["address"]


def test_reference_signals_have_the_referenced_model_as_sender(store_url):
    registry = registry_with()
    signals = registry.signals
    with served(store_url, registry) as client:
        ann, bob = new_author(client, "Ann"), new_author(client, "Bob")
        pid = new_post(client, author=ann)
        with record(signals.post_get_instance, sender=Author) as got, \
                record(signals.post_update_instance, sender=Author) as updated, \
                record(signals.post_create_instance, sender=Author) as associated, \
                record(signals.post_get_list, sender=Author) as listed, \
                record(signals.post_delete_instance, sender=Author) as dissociated:
            client.get(f"/post/{pid}/author")
            client.put(f"/post/{pid}/author", json={"id": bob})
            client.put(f"/post/{pid}/author", json={"id": bob})  # the same again: no field changed
            client.post(f"/post/{pid}/tags", json={"id": ann})
            client.get(f"/post/{pid}/tags")
            client.delete(f"/post/{pid}/tags/{ann}")
        assert got[0]["instance"].name == "Ann" and got[0]["instance"].id == ann
        assert got[0]["handler"].nested_path == ["author"]
        assert [u["updated_fields"] for u in updated] == [{"author": {"from": ann, "to": bob}}, {}]
        assert updated[0]["instance"].name == "Bob" and updated[0]["handler"].nested_path == ["author"]
        assert associated[0]["instance"].id == ann and associated[0]["handler"].nested_path == ["tags"]
        assert [a.name for a in listed[0]["items"]] == ["Ann"] and listed[0]["handler"].nested_path == ["tags"]
        assert dissociated[0]["instance"].name == "Ann"
        assert dissociated[0]["handler"].nested_path == ["tags", ann]


def test_a_pre_receiver_can_refuse_or_change_a_nested_write(store_url):
    registry = registry_with()

    @registry.on("pre_create_instance", sender=Comment)
    def moderate(sender, arguments, handler):
        if "spam" in arguments["data"].get("text", ""):
            raise HTTPError(403, "No spam.")
        arguments["data"] = {**arguments["data"], "votes": 1}

    @registry.on("pre_update_instance", sender=Comment)
    def redirect(sender, arguments, handler):
        arguments["path"] = ["comments", "0"]  # a receiver may change the path (same kind of target)

    with served(store_url, registry) as client:
        pid = new_post(client)
        problem(client.post(f"/post/{pid}/comments", json={"text": "spam!"}), 403)
        assert client.get(f"/post/{pid}").json()["comments"] == []
        assert created(client.post(f"/post/{pid}/comments", json={"text": "ok"}))["votes"] == 1
        client.post(f"/post/{pid}/comments", json={"text": "two"})
        assert client.patch(f"/post/{pid}/comments/1", json={"text": "changed"}).code == 200
        assert [c["text"] for c in client.get(f"/post/{pid}").json()["comments"]] == ["changed", "two"]
        problem(client.post(f"/post/{MISSING_ID}/comments", json={"text": "spam"}), 403)  # 403 before 404


# -- no lost writes, If-Match --------------------------------------------------------------------------


def test_concurrent_appends_all_land(store_url):
    with served(store_url) as client:
        pid = new_post(client)
        barrier = threading.Barrier(20)
        codes: list[int] = []

        def append(n: int) -> None:
            barrier.wait()
            codes.append(client.post(f"/post/{pid}/comments", json={"text": f"c{n}"}).code)

        threads = [threading.Thread(target=append, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [201] * 20
        texts = [c["text"] for c in client.get(f"/post/{pid}").json()["comments"]]
        assert sorted(texts) == sorted(f"c{n}" for n in range(20))


def test_concurrent_appends_through_servers_sharing_one_sqlite_file(sqlite_url):
    """As with ``--workers``: separate processes' connections, one file; the version check holds."""
    apps = [App(registry_with(), db=sqlite_url) for _ in range(4)]
    with serve(apps[0]) as c0, serve(apps[1]) as c1, serve(apps[2]) as c2, serve(apps[3]) as c3:
        clients = [c0, c1, c2, c3]
        pid = new_post(c0)
        barrier = threading.Barrier(40)
        codes: list[int] = []

        def append(n: int) -> None:
            barrier.wait()
            codes.append(clients[n % 4].post(f"/post/{pid}/comments", json={"text": f"c{n}"}).code)

        threads = [threading.Thread(target=append, args=(n,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [201] * 40
        assert sorted(c["text"] for c in c3.get(f"/post/{pid}").json()["comments"]) == sorted(f"c{n}" for n in range(40))


def test_concurrent_changes_to_different_parts_all_land(store_url):
    with served(store_url) as client:
        ann = new_author(client)
        pid = new_post(client, comments=[{"text": f"c{n}"} for n in range(10)])
        barrier = threading.Barrier(12)
        codes: list[int] = []

        def run(request) -> None:
            barrier.wait()
            codes.append(request().code)

        requests = [lambda n=n: client.patch(f"/post/{pid}/comments/{n}", json={"votes": n}) for n in range(10)]
        requests.append(lambda: client.put(f"/post/{pid}/address", json={"city": "Paris"}))
        requests.append(lambda: client.post(f"/post/{pid}/tags", json={"id": ann}))
        threads = [threading.Thread(target=run, args=(r,)) for r in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes) == [200] * 11 + [201]
        doc = client.get(f"/post/{pid}").json()
        assert [c["votes"] for c in doc["comments"]] == list(range(10))
        assert doc["address"] == {"city": "Paris", "zip": None} and doc["tags"] == [ann]


def test_if_match_protects_position_addressed_edits(store_url):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": "a"}, {"text": "b"}, {"text": "c"}])
        stale = client.get(f"/post/{pid}/comments").headers["ETag"]
        assert client.delete(f"/post/{pid}/comments/0").code == 204  # someone else: positions shift
        current = client.get(f"/post/{pid}")

        for method, kwargs in (("PATCH", {"json": {"text": "B"}}), ("PUT", {"json": {"text": "B"}}),
                               ("DELETE", {})):
            problem(client.request(method, f"/post/{pid}/comments/1", headers={"If-Match": stale}, **kwargs), 412)
        problem(client.post(f"/post/{pid}/comments", json={"text": "d"}, headers={"If-Match": stale}), 412)
        assert client.get(f"/post/{pid}").json() == current.json()  # nothing changed

        fresh = current.headers["ETag"]
        response = client.patch(f"/post/{pid}/comments/1", json={"text": "C"}, headers={"If-Match": fresh})
        assert response.code == 200 and response.json()["text"] == "C"
        assert response.headers["ETag"] != fresh
        assert client.patch(f"/post/{pid}/comments/0", json={"text": "B"}, headers={"If-Match": "*"}).code == 200
        assert [c["text"] for c in client.get(f"/post/{pid}").json()["comments"]] == ["B", "C"]


# -- bad paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "BREW"])
def test_paths_the_model_does_not_have_are_404(store_url, method):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": "a"}], address={"city": "Paris"})
        for path in (
            f"/post/{pid}/nope", f"/post/{pid}/title", f"/post/{pid}/comments/-1", f"/post/{pid}/comments/01",
            f"/post/{pid}/comments/x", f"/post/{pid}/comments/99999999999999999999", f"/post/{pid}/comments/0/nope",
            f"/post/{pid}/comments/0/text", f"/post/{pid}/address/city", f"/post/{pid}/author/x",
            f"/post/{pid}/tags/nope", f"/post/{pid}/comments//", f"/post/{pid}//", f"/post/{pid}/%00",
            f"/post/{pid}/comments/0/author/name", f"/post/{pid}/" + "a/" * 200, f"/author/{MISSING_ID}/name",
        ):
            problem(client.request(method, path, body=b'{"text": "x"}'), 404)


def test_paths_that_name_nothing_in_the_document_are_404(store_url):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": "a"}])
        tid = new_team(client)
        for path, methods in (
            (f"/post/{pid}/comments/1", ("GET", "PUT", "PATCH", "DELETE")),  # out of range
            (f"/post/{pid}/comments/0/author", ("GET", "DELETE")),  # not set
            (f"/post/{pid}/tags/{MISSING_ID}", ("GET", "DELETE")),  # not in the list
            (f"/post/{MISSING_ID}/comments", ("GET", "POST")),  # no such parent
            ("/post/nope/comments", ("GET", "POST")),  # a malformed parent id
            (f"/post/{MISSING_ID}/comments/0", ("GET", "PUT", "PATCH", "DELETE")),
            (f"/team/{tid}/members/x/address", ("GET", "PUT", "PATCH", "DELETE")),  # no such member
        ):
            for method in methods:
                problem(client.request(method, path, json={"text": "x"}), 404)


def test_methods_a_path_does_not_take_are_405_with_allow(store_url):
    with served(store_url) as client:
        pid = new_post(client, comments=[{"text": "a"}])
        for method, path, allow in (
            ("POST", f"/post/{pid}/address", "GET, PUT, PATCH, DELETE"),
            ("PUT", f"/post/{pid}/comments", "GET, POST"),
            ("POST", f"/post/{pid}/comments/0", "GET, PUT, PATCH, DELETE"),
            ("BREW", f"/post/{pid}/comments/0", "GET, PUT, PATCH, DELETE"),
            ("POST", f"/post/{pid}/tags/{MISSING_ID}", "GET, PUT, PATCH, DELETE"),
            ("POST", f"/post/{pid}/author/{MISSING_ID}", "GET, PUT, PATCH, DELETE"),
        ):
            response = client.request(method, path, json={})
            problem(response, 405)
            assert response.headers["Allow"] == allow


# -- routes and the pure path resolution --------------------------------------------------------------


def test_nested_routes_in_the_route_table(sqlite_url):
    rows = App(registry_with(), db=sqlite_url).route_table()
    nested = {path: methods for methods, path, handler in rows if handler == "NestedHandler"}
    assert nested == {
        "/post/{id}/address": "GET,PUT,PATCH,DELETE",
        "/post/{id}/comments": "GET,POST",
        "/post/{id}/comments/{comments_index}": "GET,PUT,PATCH,DELETE",
        "/post/{id}/comments/{comments_index}/author": "GET,PUT,DELETE",
        "/post/{id}/author": "GET,PUT,DELETE",
        "/post/{id}/tags": "GET,POST",
        "/post/{id}/tags/{tags_id}": "GET,PUT,PATCH,DELETE",
        "/team/{id}/home": "GET,PUT,PATCH,DELETE",
        "/team/{id}/lead": "GET,PUT,DELETE",
        "/team/{id}/members": "GET,POST",
        "/team/{id}/members/{members_id}": "GET,PUT,PATCH,DELETE",
        "/team/{id}/members/{members_id}/address": "GET,PUT,PATCH,DELETE",
        "/team/{id}/members/{members_id}/skills": "GET,POST",
        "/team/{id}/members/{members_id}/skills/{skills_index}": "GET,PUT,PATCH,DELETE",
    }
    assert not any("/author/{id}/" in path for _, path, _ in rows)  # nothing nested in Author: no rule


def test_path_resolution_does_no_io():
    """bzzlite/models/nested.py and bzzlite/documents/paths.py are pure: importing it in a fresh process loads no Tornado and no driver."""
    import subprocess
    import sys
    from pathlib import Path

    # bzzlite/__init__ imports the App (Tornado): import the module without running it
    code = ("import sys, types; pkg = types.ModuleType('bzzlite'); pkg.__path__ = ['bzzlite']; "
            "sys.modules['bzzlite'] = pkg; import bzzlite.models.nested, bzzlite.documents.paths; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tornado', 'motor', 'pymongo', 'sqlite3'}))")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_parse_path_and_locate():
    registry = registry_with()
    specs = list(registry.resources.values())
    tree = inspect_nested(registry.resources["/team"], specs)
    path = parse_path(tree, ["members", "m2", "address"])
    assert path.endpoint == "embedded" and path.model is Address and path.dotted == "members.m2.address"
    doc = {"members": [{"id": "m1", "address": None}, {"id": "m2", "address": {"city": "Rome"}}]}
    assert locate(path, doc) == (("members", 1, "address"), {"city": "Rome"})
    assert parse_path(tree, ["members"]).endpoint == "list"
    assert parse_path(tree, ["members", "m1"]).endpoint == "element"
    assert parse_path(tree, ["lead"]).endpoint == "ref"
    post_tree = inspect_nested(registry.resources["/post"], specs)
    assert parse_path(post_tree, ["tags", "A" * 24]).segments == ["tags", "a" * 24]
    for bad in (["nope"], ["name"], ["members", ""], ["lead", "x"], [], ["x"] * 100):
        with pytest.raises(PathNotFound):
            parse_path(tree, bad)
    with pytest.raises(PathNotFound):
        locate(parse_path(tree, ["members", "m3"]), doc)
    with pytest.raises(PathNotFound):
        locate(parse_path(tree, ["members", "m1", "skills", "0"]), doc)  # an unset list is empty


# -- ODMantic models (MongoDB only) ----------------------------------------------------------------


if importlib.util.find_spec("odmantic") is not None:
    import odmantic

    class Writer(odmantic.Model):
        name: str

    class Note(odmantic.EmbeddedModel):
        text: str

    class Story(odmantic.Model):
        title: str
        writer: Writer = odmantic.Reference()
        notes: list[Note] = []
        cover: Note | None = None


def test_odmantic_embedded_models_and_references(mongo_db_url):
    pytest.importorskip("odmantic")
    registry = registry_with(Writer, Story)
    with served(mongo_db_url, registry) as client:
        ada = created(client.post("/writer", json={"name": "Ada"}))["id"]
        bob = created(client.post("/writer", json={"name": "Bob"}))["id"]
        sid = created(client.post("/story", json={"title": "T", "writer": ada}))["id"]
        assert client.get(f"/story/{sid}/writer").json() == {"id": ada, "name": "Ada"}
        assert client.put(f"/story/{sid}/writer", json={"id": bob}).json() == {"id": bob, "name": "Bob"}
        assert client.get(f"/story/{sid}").json()["writer"] == bob
        problem(client.put(f"/story/{sid}/writer", json={"id": MISSING_ID}), 404)
        problem(client.delete(f"/story/{sid}/writer"), 422)  # a required reference

        response = client.post(f"/story/{sid}/notes", json={"text": "n1"})
        assert created(response) == {"text": "n1"}
        assert response.headers["Location"] == f"/story/{sid}/notes/0"
        assert client.patch(f"/story/{sid}/notes/0", json={"text": "N1"}).json() == {"text": "N1"}
        assert client.put(f"/story/{sid}/cover", json={"text": "c"}).json() == {"text": "c"}
        with record(registry.signals.post_update_instance, sender=Note) as updates:
            client.patch(f"/story/{sid}/cover", json={"text": "C"})
        assert updates[0]["updated_fields"] == {"cover.text": {"from": "c", "to": "C"}}
        assert isinstance(updates[0]["instance"], Note)
        doc = client.get(f"/story/{sid}").json()
        assert doc["notes"] == [{"text": "N1"}] and doc["cover"] == {"text": "C"} and doc["writer"] == bob


# -- OpenAPI -------------------------------------------------------------------------------------------


def test_nested_routes_in_the_openapi_document(sqlite_url):
    import jsonschema
    from openapi_spec_validator import validate

    from bzzlite.openapi import build_document

    app = App(registry_with(), db=sqlite_url)
    doc = build_document(app)
    validate(doc)
    paths = doc["paths"]
    assert set(paths["/post/{id}/comments"]) == {"parameters", "get", "post"}
    assert set(paths["/post/{id}/comments/{comments_index}"]) == {"parameters", "get", "put", "patch", "delete"}
    assert set(paths["/post/{id}/tags/{tags_id}"]) == {"parameters", "get", "delete"}
    assert set(paths["/team/{id}/members/{members_id}/address"]) == {"parameters", "get", "put", "patch", "delete"}
    assert [p["name"] for p in paths["/team/{id}/members/{members_id}/skills/{skills_index}"]["parameters"]] == \
        ["id", "members_id", "skills_index"]
    table = {path for _, path, handler in app.route_table() if handler == "NestedHandler"}
    assert table == {p for p in paths if p.count("/") > 2}  # the route table and the document agree

    def schema_of(path, method, status):
        schema = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})

    with serve(app) as client:
        ann = new_author(client)
        pid = new_post(client, author=ann, tags=[ann])
        appended = client.post(f"/post/{pid}/comments", json={"text": "hi"})
        schema_of("/post/{id}/comments", "post", "201").validate(appended.json())
        schema_of("/post/{id}/comments", "get", "200").validate(client.get(f"/post/{pid}/comments").json())
        schema_of("/post/{id}/author", "get", "200").validate(client.get(f"/post/{pid}/author").json())
        schema_of("/post/{id}/tags", "get", "200").validate(client.get(f"/post/{pid}/tags").json())
        patched = client.patch(f"/post/{pid}/comments/0", json={"votes": 2},
                               headers={"Content-Type": "application/merge-patch+json"})
        schema_of("/post/{id}/comments/{comments_index}", "patch", "200").validate(patched.json())
        request = paths["/post/{id}/comments/{comments_index}"]["patch"]["requestBody"]["content"]
        patch_schema = request["application/merge-patch+json"]["schema"]
        jsonschema.Draft202012Validator({**patch_schema, "components": doc["components"]}).validate({"votes": 2})


# -- the example ---------------------------------------------------------------------------------------


def test_the_blog_example(store_url, capsys):
    from examples.blog_sqlite import app

    app.use_store(store_url)
    with serve(app) as client:
        ada = created(client.post("/author", json={"name": "Ada", "email": "ada@example.org"}))["id"]
        bob = created(client.post("/author", json={"name": "Bob", "email": "bob@example.org"}))["id"]
        pid = created(client.post("/post", json={"title": "Hello", "author": ada}))["id"]
        response = client.post(f"/post/{pid}/comments", json={"text": "Hi"})
        comment = created(response)
        assert comment["who"] == "anonymous" and response.headers["Location"] == f"/post/{pid}/comments/{comment['id']}"
        assert client.patch(f"/post/{pid}/comments/{comment['id']}", json={"likes": 3}).json()["likes"] == 3
        assert client.get(f"/post/{pid}/author").json()["name"] == "Ada"
        assert client.post(f"/post/{pid}/coauthors", json={"id": bob}).code == 201
        assert [a["name"] for a in client.get(f"/post/{pid}/coauthors").json()["items"]] == ["Bob"]
        assert client.delete(f"/post/{pid}/comments/{comment['id']}").code == 204
        assert client.get(f"/post/{pid}").json()["comments"] == []
    assert f"post {pid}: new comment {comment['id']} by anonymous" in capsys.readouterr().out


# -- authentication -----------------------------------------------------------------------------------


def test_nested_routes_follow_the_auth_rules_of_parent_and_referenced_resources(sqlite_url):
    from http.cookies import SimpleCookie

    from bzzlite.auth import Auth, GoogleProvider
    from bzzlite.auth.testing import fake_provider

    registry = Registry()
    registry.resource(auth={"get": True})(Author)  # authors are private, posts readable by anyone
    registry.resource(Post)
    with fake_provider() as fake:
        fake.tokens["ann-token"] = {"sub": "ann-1", "email": "ann@example.com", "name": "Ann"}
        google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
        app = App(registry, db=sqlite_url, auth=Auth("s" * 40, [google], require={"get": False, "list": False}))
        with serve(app) as client:
            response = client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "google"})
            jar: SimpleCookie = SimpleCookie()
            for header in response.headers.get_all("Set-Cookie") or []:
                jar.load(header)
            token = jar["AUTH_TOKEN"].value
            signed_in = {"Authorization": f"Bearer {token}"}
            ann = created(client.post("/author", json={"name": "Ann"}, headers=signed_in))["id"]
            pid = created(client.post("/post", json={"title": "T", "author": ann}, headers=signed_in))["id"]

            assert client.get(f"/post/{pid}/comments").code == 200  # reading the parent is public
            problem(client.post(f"/post/{pid}/comments", json={"text": "x"}), 401)  # writing is an update
            assert client.post(f"/post/{pid}/comments", json={"text": "x"}, headers=signed_in).code == 201
            problem(client.get(f"/post/{pid}/author"), 401)  # the referenced resource's own rule
            assert client.get(f"/post/{pid}/author", headers=signed_in).json()["name"] == "Ann"
            assert client.get(f"/post/{pid}").json()["comments"] == [{"text": "x", "votes": 0, "author": None}]


def test_nested_routes_open_to_anyone_ask_no_user(sqlite_url):
    """Where the app's auth lets anyone read and update, so do the nested routes: following a
    reference reads the parent, deleting an element updates it."""
    from bzzlite.auth import Auth
    from bzzlite.auth.testing import StaticTokenProvider

    app = App(registry_with(), db=sqlite_url, auth=Auth("s" * 40, [StaticTokenProvider("test", {})], require=False))
    with serve(app) as client:
        ann = new_author(client)
        pid = new_post(client, author=ann, comments=[{"text": "a"}, {"text": "b"}], tags=[ann])
        assert client.get(f"/post/{pid}/author").json()["name"] == "Ann"
        assert client.get(f"/post/{pid}/tags/{ann}").json()["name"] == "Ann"  # through the reference
        assert client.delete(f"/post/{pid}/comments/0").code == 204
        assert client.get(f"/post/{pid}").json()["comments"] == [{"text": "b", "votes": 0, "author": None}]


def test_nested_routes_of_a_lookup_resource_and_ids_that_are_none(sqlite_url):
    """The parent named by its lookup field; an id that is no id (or that a receiver turned into
    no text) is a 404 saying so, before anything is read."""
    from bzzlite import Unique

    class Place(BaseModel):
        city: str

    registry = Registry()

    @registry.resource(lookup="username")
    class Member(BaseModel):
        username: Annotated[str, Unique]
        home: Place | None = None

    @registry.on("pre_get_instance", sender=Place)
    def renumber(sender, arguments, handler):
        if arguments["id"] == "ghost":
            arguments["id"] = 7

    with serve(App(registry, db=sqlite_url)) as client:
        assert client.post("/member", json={"username": "alice", "home": {"city": "Oslo"}}).code == 201
        assert client.get("/member/alice/home").json() == {"city": "Oslo"}
        assert client.patch("/member/alice/home", json={"city": "Rome"}).json() == {"city": "Rome"}
        problem(client.get("/member/bob/home"), 404)
        assert problem(client.get("/member/ghost/home"), 404)["detail"] == "No document with that username."
    with served(sqlite_url) as client:
        assert problem(client.get("/post/nope/comments"), 404)["detail"] == \
            "No document with that id (ids are 24 hexadecimal characters)."


def test_a_nested_write_naming_a_missing_document_is_a_422(store_url):
    """The parent is validated whole after a nested change, its new references included."""
    with served(store_url) as client:
        ann = new_author(client)
        pid = new_post(client, comments=[{"text": "a"}])
        body = problem(client.patch(f"/post/{pid}/comments/0", json={"author": MISSING_ID}), 422)
        assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["comments", 0, "author"], "reference_missing")]
        assert client.patch(f"/post/{pid}/comments/0", json={"author": ann}).json()["author"] == ann


@pytest.mark.parametrize("path", ["comments", ["comments", 0], ["address"]], ids=["text", "not text", "other kind"])
def test_a_path_a_receiver_breaks_is_a_404(sqlite_url, path):
    """A pre_* receiver may change the path, to one of the same kind only: anything else is no
    such path (404), never a 500."""
    registry = registry_with()

    @registry.on("pre_get_instance", sender=Comment)
    def misroute(sender, arguments, handler):
        arguments["path"] = path

    with served(sqlite_url, registry) as client:
        pid = new_post(client, comments=[{"text": "a"}], address={"city": "Oslo"})
        assert problem(client.get(f"/post/{pid}/comments/0"), 404)["detail"] == "No such nested path."
