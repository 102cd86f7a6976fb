"""bzz's form conventions for inner properties (``child.first_name=``, ``users[]=``) on every
write route, over HTTP on every store; plus the pure parsing of ``bzzlite/handlers/forms.py``."""

from __future__ import annotations

import contextlib
from typing import Annotated

import pytest
from pydantic import BaseModel

from bzzlite import App, Ref, Registry
from bzzlite.errors import ValidationFailed
from bzzlite.handlers.forms import form_data
from bzzlite.testing import serve


class Address(BaseModel):
    city: str
    zip: str | None = None


class Child(BaseModel):
    first_name: str
    last_name: str
    age: int = 0
    address: Address | None = None
    tags: list[str] = []


class User(BaseModel):
    name: str


class Parent(BaseModel):
    name: str
    child: Child | None = None
    kids: list[Child] = []
    users: list[Annotated[str, Ref(User)]] = []
    scores: list[int] = []


@contextlib.contextmanager
def served(store_url):
    registry = Registry()
    registry.resource(User)
    registry.resource(Parent)
    with serve(App(registry, db=store_url)) as client:
        yield client


def problem(response, status=422):
    assert response.code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json()


def locs(response):
    return [e["loc"] for e in problem(response)["errors"]]


# -- the pure conversion --------------------------------------------------------------------------


def test_dotted_keys_fill_embedded_models_at_any_depth():
    fields = {"name": ["Bernardo"], "child.first_name": ["Rodrigo"], "child.last_name": ["Lucena"],
              "child.address.city": ["Recife"], "child.address.zip": [""]}
    assert form_data(fields, Parent) == {
        "name": "Bernardo",
        "child": {"first_name": "Rodrigo", "last_name": "Lucena", "address": {"city": "Recife", "zip": None}},
    }


def test_brackets_repeats_and_list_fields_give_lists():
    fields = {"users[]": ["a", "b"], "scores": ["7"], "child.tags[]": ["x"], "name": ["n", "m"], "kids[]": [""]}
    assert form_data(fields, Parent) == {"users": ["a", "b"], "scores": ["7"], "child": {"tags": ["x"]},
                                         "name": ["n", "m"], "kids": []}


def test_without_a_model_only_the_key_syntax_applies():
    assert form_data({"a.b": ["1"], "c[]": ["2", ""], "d": [""]}) == {"a": {"b": "1"}, "c": ["2"], "d": ""}


@pytest.mark.parametrize("key", ["child..first_name", ".name", "name.", "child[]x", "a[0]", "[]", "x" + ".x" * 40])
def test_malformed_keys_are_errors_naming_the_key(key):
    with pytest.raises(ValidationFailed) as caught:
        form_data({key: ["v"], "name": ["ok"]}, Parent)
    assert caught.value.errors == [{"loc": [key], "type": "form_key",
                                    "msg": "Malformed form key: use name, name.inner or name[]"}]


@pytest.mark.parametrize("fields, loc", [
    ({"child": ["x"], "child.first_name": ["y"]}, ["child"]),
    ({"child.address.city": ["y"], "child.address": ["x"]}, ["child", "address"]),
    ({"scores": ["1"], "scores[]": ["2"]}, ["scores"]),
])
def test_one_field_given_two_ways_is_an_error(fields, loc):
    with pytest.raises(ValidationFailed) as caught:
        form_data(fields, Parent)
    assert [e["loc"] for e in caught.value.errors] == [loc]


# -- over HTTP: POST, PUT, PATCH ------------------------------------------------------------------


def test_bzz_inner_property_form_post(store_url):
    """The bzz example that answered 422 extra_forbidden on ``child.first_name``."""
    with served(store_url) as client:
        response = client.post("/parent", body="name=Bernardo&child.first_name=Rodrigo&child.last_name=Lucena",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.code == 201, response.text
        body = response.json()
        assert body["child"] == {"first_name": "Rodrigo", "last_name": "Lucena", "age": 0, "address": None,
                                 "tags": []}
        assert client.get(response.headers["Location"]).json()["child"]["first_name"] == "Rodrigo"


def test_form_lists_of_references_and_coerced_values(store_url):
    with served(store_url) as client:
        ann = client.post("/user", json={"name": "Ann"}).json()["id"]
        bob = client.post("/user", json={"name": "Bob"}).json()["id"]
        response = client.post("/parent", data=[("name", "P"), ("users[]", ann), ("users[]", bob.upper()),
                                                ("scores[]", "3"), ("child.first_name", "R"),
                                                ("child.last_name", "L"), ("child.age", "9"),
                                                ("child.tags[]", "x"), ("child.address.city", "Recife")])
        assert response.code == 201, response.text
        body = response.json()
        assert body["users"] == [ann, bob]  # the Ref validator lowercases ids
        assert body["scores"] == [3]
        assert body["child"] == {"first_name": "R", "last_name": "L", "age": 9, "tags": ["x"],
                                 "address": {"city": "Recife", "zip": None}}
        assert [u["name"] for u in client.get(f"/parent/{body['id']}/users").json()["items"]] == ["Ann", "Bob"]


def test_form_errors_point_at_the_dotted_field(store_url):
    with served(store_url) as client:
        response = client.post("/parent", data={"name": "P", "child.first_name": "R", "child.last_name": "L",
                                                "child.age": "old"})
        assert locs(response) == [["child", "age"]]
        response = client.post("/parent", data={"name": "P", "child.first_name": "R"})
        assert locs(response) == [["child", "last_name"]]
        response = client.post("/parent", data={"name": "P", "child.first_name": "R", "child.last_name": "L",
                                                "child.nickname": "x", "child.address.city": "C",
                                                "child.address.planet": "Mars"})
        errors = problem(response)["errors"]
        assert {tuple(e["loc"]) for e in errors} == {("child", "nickname"), ("child", "address", "planet")}
        assert {e["type"] for e in errors} == {"extra_forbidden"}
        response = client.post("/parent", data={"name": "P", "users[]": "not-an-id"})
        assert locs(response) == [["users", 0]]
        response = client.post("/parent", data={"name": "P", "child": "x", "child.first_name": "R"})
        assert locs(response) == [["child"]]
        response = client.post("/parent", data={"name": "P", "child..first_name": "R"})
        assert locs(response) == [["child..first_name"]]
        assert client.get("/parent").json()["total"] == 0


def test_form_put_replaces_and_patch_merges_inner_fields(store_url):
    with served(store_url) as client:
        created = client.post("/parent", data={"name": "P", "child.first_name": "R", "child.last_name": "L",
                                               "child.age": "3", "scores[]": "1"}).json()
        url = f"/parent/{created['id']}"
        response = client.patch(url, data={"child.last_name": "Silva", "child.address.city": "Natal"})
        assert response.code == 200, response.text
        assert response.json()["child"] == {"first_name": "R", "last_name": "Silva", "age": 3, "tags": [],
                                            "address": {"city": "Natal", "zip": None}}
        assert response.json()["scores"] == [1]
        response = client.put(url, data={"name": "Q", "child.first_name": "A", "child.last_name": "B"})
        assert response.code == 200, response.text
        body = response.json()
        assert (body["name"], body["scores"], body["child"]["age"], body["child"]["address"]) == ("Q", [], 0, None)
        assert locs(client.put(url, data={"name": "Q", "child.first_name": "A"})) == [["child", "last_name"]]
        assert locs(client.patch(url, data={"child.age": "x"})) == [["child", "age"]]


def test_form_bodies_on_nested_routes(store_url):
    with served(store_url) as client:
        pid = client.post("/parent", json={"name": "P"}).json()["id"]
        response = client.put(f"/parent/{pid}/child", data={"first_name": "R", "last_name": "L",
                                                             "address.city": "Recife", "tags[]": ["a", "b"]})
        assert response.code == 200, response.text
        assert response.json()["address"] == {"city": "Recife", "zip": None}
        assert response.json()["tags"] == ["a", "b"]
        response = client.patch(f"/parent/{pid}/child", data={"address.zip": "50000"})
        assert response.code == 200, response.text
        assert response.json()["address"] == {"city": "Recife", "zip": "50000"}
        response = client.patch(f"/parent/{pid}/child/address", data={"city": "Olinda"})
        assert response.json() == {"city": "Olinda", "zip": "50000"}
        response = client.post(f"/parent/{pid}/kids", data={"first_name": "K", "last_name": "L",
                                                            "address.city": "Natal", "age": "4"})
        assert response.code == 201, response.text
        assert response.json()["address"]["city"] == "Natal" and response.json()["age"] == 4
        response = client.post(f"/parent/{pid}/kids", data={"first_name": "K", "last_name": "L", "address.city": ""})
        assert response.code == 201  # an empty value is a string for a required str field
        response = client.post(f"/parent/{pid}/kids", data={"first_name": "K", "last_name": "L", "age": "x"})
        assert locs(response) == [["kids", 2, "age"]]
        assert len(client.get(f"/parent/{pid}").json()["kids"]) == 2
