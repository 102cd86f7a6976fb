"""Routes through references (bzz's ``/team/{id}/users/{uid}/addresses`` and
``/student/{id}/person/{pid}``): the referenced document and its own nested routes, under the
referenced resource's auth rules and signals, on every store."""

from __future__ import annotations

import contextlib
from typing import Annotated

import pytest
from pydantic import BaseModel

from bzzlite import App, HTTPError, Ref, Registry
from bzzlite.documents.paths import PathNotFound, parse_path
from bzzlite.models.nested import inspect_nested
from bzzlite.testing import record, serve
from tests._direct import delete_behind_bzzlites_back

MISSING_ID = "0123456789abcdef01234567"


class Address(BaseModel):
    street: str


class Home(BaseModel):
    city: str
    zip: str | None = None


class User(BaseModel):
    name: str
    email: str = ""
    addresses: list[Annotated[str, Ref(Address)]] = []
    home: Home | None = None


class Team(BaseModel):
    name: str
    users: list[Annotated[str, Ref(User)]] = []


class Person(BaseModel):
    name: str


class Student(BaseModel):
    code: str
    person: Annotated[str, Ref(Person)] | None = None


def new_registry(**auth_by_model):
    registry = Registry()
    for model in (Address, User, Team, Person, Student):
        registry.add_resource(model, auth=auth_by_model.get(model.__name__))
    return registry


@contextlib.contextmanager
def served(store_url, registry=None, **options):
    with serve(App(registry or new_registry(), db=store_url, **options)) as client:
        yield client


def ok(response, status=200):
    assert response.code == status, response.text
    return response.json() if response.body else None


def problem(response, status):
    assert response.code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json()


def team_with_user(client):
    """bzz's fixture: an address, a user holding it, a team holding the user."""
    aid = ok(client.post("/address", json={"street": "Somewhere Else"}), 201)["id"]
    uid = ok(client.post("/user", json={"name": "Bernardo Heynemann", "addresses": [aid]}), 201)["id"]
    tid = ok(client.post("/team", json={"name": "test-team", "users": [uid]}), 201)["id"]
    return tid, uid, aid


# -- /team/{id}/users/{uid}/addresses: a list of references inside a referenced document ---------


def test_addresses_of_a_user_in_a_team(store_url):
    with served(store_url) as client:
        tid, uid, aid = team_with_user(client)
        listed = ok(client.get(f"/team/{tid}/users/{uid}/addresses"))
        assert listed == {"items": [{"id": aid, "street": "Somewhere Else"}], "total": 1, "page": 1, "per_page": 20}
        assert ok(client.get(f"/team/{tid}/users/{uid}/addresses/{aid}")) == {"id": aid, "street": "Somewhere Else"}
        assert ok(client.get(f"/team/{tid}/users/{uid}/")) == ok(client.get(f"/user/{uid}"))

        other = ok(client.post("/address", json={"street": "Elsewhere"}), 201)["id"]
        response = client.post(f"/team/{tid}/users/{uid}/addresses", json={"id": other})
        assert ok(response, 201) == {"id": other, "street": "Elsewhere"}
        assert response.headers["Location"] == f"/user/{uid}/addresses/{other}"  # the referenced resource's URL
        assert ok(client.get(f"/user/{uid}"))["addresses"] == [aid, other]

        changed = ok(client.put(f"/team/{tid}/users/{uid}/addresses/{aid}", data={"street": "Somewhere"}))
        assert changed == {"id": aid, "street": "Somewhere"}  # the address itself, as PUT /address/{aid}

        assert client.delete(f"/team/{tid}/users/{uid}/addresses/{aid}").code == 204  # dissociated from the user
        assert ok(client.get(f"/user/{uid}"))["addresses"] == [other]
        assert ok(client.get(f"/address/{aid}"))["street"] == "Somewhere"  # still there
        assert ok(client.get(f"/team/{tid}"))["users"] == [uid]  # the team did not change


def test_embedded_models_inside_a_referenced_document(store_url):
    with served(store_url) as client:
        tid, uid, _ = team_with_user(client)
        assert ok(client.put(f"/team/{tid}/users/{uid}/home", json={"city": "Recife"})) == {"city": "Recife",
                                                                                           "zip": None}
        patched = client.patch(f"/team/{tid}/users/{uid}/home", data={"zip": "50000"})
        assert ok(patched) == {"city": "Recife", "zip": "50000"}
        assert patched.headers["ETag"] == client.get(f"/user/{uid}").headers["ETag"]  # the user's version
        assert ok(client.get(f"/team/{tid}/users/{uid}/home"))["zip"] == "50000"
        assert client.delete(f"/team/{tid}/users/{uid}/home").code == 204
        assert ok(client.get(f"/user/{uid}"))["home"] is None


def test_the_referenced_document_of_a_list_can_be_changed_through_it(store_url):
    with served(store_url) as client:
        tid, uid, _ = team_with_user(client)
        response = client.patch(f"/team/{tid}/users/{uid}", json={"email": "b@h.com"})
        assert ok(response)["email"] == "b@h.com"
        assert response.headers["ETag"] == client.get(f"/user/{uid}").headers["ETag"]
        assert ok(client.put(f"/team/{tid}/users/{uid}", json={"name": "B"})) == {
            "id": uid, "name": "B", "email": "", "addresses": [], "home": None}  # PUT replaces, as at /user/{uid}
        problem(client.put(f"/team/{tid}/users/{uid}", json={"email": "x"}), 422)


# -- /student/{id}/person/{pid}: a single reference, named by the referenced document's id -------


def test_person_in_student(store_url):
    with served(store_url) as client:
        pid = ok(client.post("/person", json={"name": "test-student"}), 201)["id"]
        sid = ok(client.post("/student", json={"code": "foo", "person": pid}), 201)["id"]
        assert ok(client.get(f"/student/{sid}/person/{pid}")) == {"id": pid, "name": "test-student"}
        assert ok(client.get(f"/student/{sid}/person/{pid.upper()}"))["id"] == pid
        assert ok(client.get(f"/student/{sid}/person")) == {"id": pid, "name": "test-student"}

        response = client.put(f"/student/{sid}/person/{pid}", body="name=Rafael",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert ok(response) == {"id": pid, "name": "Rafael"}  # bzz's test: the person itself is updated
        assert ok(client.get(f"/person/{pid}"))["name"] == "Rafael"
        assert ok(client.patch(f"/student/{sid}/person/{pid}", json={"name": "R."}))["name"] == "R."

        other = ok(client.post("/person", json={"name": "Other"}), 201)["id"]
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            problem(client.request(method, f"/student/{sid}/person/{other}", json={"name": "x"}), 404)
        assert ok(client.get(f"/person/{other}"))["name"] == "Other"

        assert client.delete(f"/student/{sid}/person/{pid}").code == 204  # dissociated, as in bzz
        assert ok(client.get(f"/student/{sid}"))["person"] is None
        assert ok(client.get(f"/person/{pid}"))["name"] == "R."  # the person stays
        problem(client.get(f"/student/{sid}/person/{pid}"), 404)


def test_paths_through_references_that_name_nothing_are_404(store_url):
    with served(store_url) as client:
        tid, uid, aid = team_with_user(client)
        pid = ok(client.post("/person", json={"name": "P"}), 201)["id"]
        sid = ok(client.post("/student", json={"code": "c"}), 201)["id"]  # no person
        every, lists = ("GET", "PUT", "PATCH", "DELETE"), ("GET", "POST")
        for path, methods in (
            (f"/team/{tid}/users/{MISSING_ID}/addresses", lists),  # not in the team
            (f"/team/{MISSING_ID}/users/{uid}/addresses", lists),  # no such team
            (f"/team/nope/users/{uid}/addresses", lists),  # a malformed team id
            (f"/team/{tid}/users/{uid}/addresses/{MISSING_ID}", every),  # not among the user's addresses
            (f"/team/{tid}/users/{uid}/nope", every),  # User has no such field
            (f"/team/{tid}/users/{uid}/name", every),  # nor one to walk into
            (f"/team/{tid}/users/{uid}/addresses/{aid}/street", every),  # Address has nothing nested
            (f"/team/{tid}/users/x/addresses", every),  # a malformed id
            (f"/student/{sid}/person/{pid}", every),  # the student references nobody
            (f"/student/{sid}/person/{pid}/name", every),
        ):
            for method in methods:
                problem(client.request(method, path, json={"id": aid}), 404)
        problem(client.delete(f"/user/{uid}"), 409)  # referenced: on_delete="restrict"
        delete_behind_bzzlites_back(store_url, new_registry(), "/user", uid)  # as another program could
        problem(client.get(f"/team/{tid}/users/{uid}/addresses"), 404)  # a reference to a deleted user


def test_methods_through_references_are_those_of_the_referenced_route(store_url):
    with served(store_url) as client:
        tid, uid, aid = team_with_user(client)
        for method, path, allow in (
            ("PUT", f"/team/{tid}/users/{uid}/addresses", "GET, POST"),
            ("POST", f"/team/{tid}/users/{uid}/addresses/{aid}", "GET, PUT, PATCH, DELETE"),
            ("POST", f"/team/{tid}/users/{uid}/home", "GET, PUT, PATCH, DELETE"),
        ):
            response = client.request(method, path, json={})
            problem(response, 405)
            assert response.headers["Allow"] == allow


# -- the referenced resource's signals and auth rules -----------------------------------------------


def test_signals_through_a_reference_are_the_referenced_resources(store_url):
    registry = new_registry()
    signals = registry.signals
    with served(store_url, registry) as client:
        tid, uid, aid = team_with_user(client)
        pid = ok(client.post("/person", json={"name": "P"}), 201)["id"]
        sid = ok(client.post("/student", json={"code": "c", "person": pid}), 201)["id"]
        with record(signals.pre_update_instance) as pre, record(signals.post_update_instance) as post:
            ok(client.patch(f"/student/{sid}/person/{pid}", json={"name": "Q"}))
        assert [c["sender"] for c in pre] == [Person] and [c["sender"] for c in post] == [Person]
        assert pre[0]["arguments"] == {"id": pid, "data": {"name": "Q"}, "partial": True}
        assert post[0]["updated_fields"] == {"name": {"from": "P", "to": "Q"}}
        assert post[0]["instance"].id == pid

        with record(signals.pre_get_instance) as pre_get, record(signals.post_get_instance) as post_get:
            response = client.get(f"/student/{sid}/person/{pid}")
        assert [c["sender"] for c in pre_get] == [Person] and pre_get[0]["arguments"] == {"id": pid}
        assert post_get[0]["instance"].id == pid
        assert response.headers["ETag"] == client.get(f"/person/{pid}").headers["ETag"]
        assert client.get(f"/student/{sid}/person/{pid}", headers={"If-None-Match": response.headers["ETag"]}).code \
            == 304

        with record(signals.pre_get_list) as pre_list, record(signals.post_get_list) as post_list:
            ok(client.get(f"/team/{tid}/users/{uid}/addresses"))
        assert [c["sender"] for c in pre_list] == [Address]
        assert pre_list[0]["arguments"]["id"] == uid and pre_list[0]["arguments"]["path"] == ["addresses"]
        assert [a.id for a in post_list[0]["items"]] == [aid]
        assert pre_list[0]["handler"].parent_id == uid  # the handler serves the referenced document


def test_a_receiver_of_the_referenced_model_guards_every_way_to_it(store_url):
    """A rule written as a receiver on Person applies through /student/{id}/person/{pid} too."""
    registry = new_registry()

    @registry.on("pre_update_instance", sender=Person)
    def frozen(sender, arguments, handler):
        raise HTTPError(403, "People are read-only.")

    @registry.on("pre_get_instance", sender=Person)
    def hidden(sender, arguments, handler):
        if arguments["id"] == hidden_id[0]:
            raise HTTPError(404, "No such person.")

    hidden_id: list[str] = []
    with served(store_url, registry) as client:
        pid = ok(client.post("/person", json={"name": "P"}), 201)["id"]
        sid = ok(client.post("/student", json={"code": "c", "person": pid}), 201)["id"]
        hidden_id.append(pid)
        assert problem(client.get(f"/person/{pid}"), 404)["detail"] == "No such person."
        assert problem(client.get(f"/student/{sid}/person/{pid}"), 404)["detail"] == "No such person."
        assert problem(client.put(f"/person/{pid}", json={"name": "Q"}), 403)["detail"] == "People are read-only."
        assert problem(client.put(f"/student/{sid}/person/{pid}", json={"name": "Q"}), 403)["detail"] == \
            "People are read-only."
        assert ok(client.get("/person"))["items"][0]["name"] == "P"  # unchanged


def test_auth_rules_through_a_reference(sqlite_url):
    """Following the reference needs the parent's read rule; what follows, the referenced resource's."""
    from bzzlite.auth import Auth, GoogleProvider
    from bzzlite.auth.testing import fake_provider

    registry = new_registry(User={"update": True}, Team={"get": False})
    with fake_provider() as fake:
        fake.tokens["ann-token"] = {"sub": "ann-1", "email": "ann@example.com", "name": "Ann"}
        google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
        auth = Auth("s" * 40, [google], require={"get": False, "list": False, "create": False, "update": False,
                                                 "delete": False})
        with served(sqlite_url, registry, auth=auth) as client:
            signed = client.post("/auth/signin/", json={"access_token": "ann-token", "provider": "google"})
            token = signed.headers["Set-Cookie"].split("AUTH_TOKEN=", 1)[1].split(";", 1)[0]
            bearer = {"Authorization": f"Bearer {token}"}
            tid, uid, aid = team_with_user(client)
            assert ok(client.get(f"/team/{tid}/users/{uid}/addresses"))["total"] == 1  # reads are public
            problem(client.patch(f"/team/{tid}/users/{uid}/home", json={"city": "X"}), 401)  # User's own rule
            problem(client.patch(f"/team/{tid}/users/{uid}", json={"name": "X"}), 401)
            problem(client.post(f"/team/{tid}/users/{uid}/addresses", json={"id": aid}), 401)
            assert ok(client.patch(f"/team/{tid}/users/{uid}", json={"name": "X"}, headers=bearer))["name"] == "X"
            assert ok(client.put(f"/team/{tid}/users/{uid}/home", json={"city": "X"}, headers=bearer)) == \
                {"city": "X", "zip": None}

    registry = new_registry(Team={"get": True})  # a private team: its references cannot be followed anonymously
    with fake_provider() as fake:
        google = GoogleProvider(userinfo_url=fake.url("/userinfo"))
        auth = Auth("s" * 40, [google], require={"get": False, "list": False, "create": False, "update": False,
                                                 "delete": False})
        with served(sqlite_url.replace("test.db", "private.db"), registry, auth=auth) as client:
            tid, uid, _ = team_with_user(client)
            assert client.get(f"/user/{uid}/addresses").code == 200
            problem(client.get(f"/team/{tid}/users/{uid}/addresses"), 401)
            problem(client.patch(f"/team/{tid}/users/{uid}", json={"name": "X"}), 401)


# -- the pure path resolution ------------------------------------------------------------------------


def test_parse_paths_through_references():
    registry = new_registry()
    specs = list(registry.resources.values())
    team = inspect_nested(registry.resources["/team"], specs)
    uid, aid = "a" * 24, "b" * 24
    path = parse_path(team, ["users", uid.upper(), "addresses", aid])
    assert path.through and path.endpoint == "through" and path.model is Address
    assert path.own_segments == ["users", uid] and path.segments == ["users", uid, "addresses", aid]
    assert path.inner is not None and path.inner.endpoint == "ref_element"
    assert path.referenced is not None and path.referenced[0] is registry.resources["/user"]
    assert path.methods == ("GET", "PUT", "PATCH", "DELETE")
    assert parse_path(team, ["users", uid, "home"]).methods == ("GET", "PUT", "PATCH", "DELETE")
    assert parse_path(team, ["users", uid]).endpoint == "ref_element"
    student = inspect_nested(registry.resources["/student"], specs)
    assert parse_path(student, ["person", uid]).endpoint == "ref_document"
    assert parse_path(student, ["person"]).endpoint == "ref"
    for bad in (["person", "name"], ["person", uid, "name"], ["users", uid, "nope"], ["person", uid, ""]):
        with pytest.raises(PathNotFound):
            parse_path(student if bad[0] == "person" else team, bad)


# -- what the reference checks walk (bzzlite/documents/references.py) ---------------------------


def test_references_inside_embedded_models_are_checked_where_they_are(store_url):
    registry = Registry()

    @registry.resource
    class Country(BaseModel):
        name: str

    class Place(BaseModel):
        country: Annotated[str, Ref(Country)]

    class Stop(BaseModel):
        place: Place

    @registry.resource
    class Trip(BaseModel):
        start: Place
        stops: list[Stop] = []

    app = App(registry, db=store_url)
    missing = "f" * 24
    with serve(app) as client:
        known = client.post("/country", json={"name": "x"}).json()["id"]
        assert client.post("/trip", json={"start": {"country": known}, "stops": [{"place": {"country": known}}]}
                           ).code == 201
        for body, loc in (({"start": {"country": missing}}, ["start", "country"]),
                          ({"start": {"country": known}, "stops": [{"place": {"country": known}},
                                                                    {"place": {"country": missing}}]},
                           ["stops", 1, "place", "country"])):
            refused = client.post("/trip", json=body)
            assert refused.code == 422 and [(e["loc"], e["type"]) for e in refused.json()["errors"]] == [
                (loc, "reference_missing")]


def test_many_references_are_all_found(store_url):
    """More references than a page of the store holds: every one is looked up."""
    registry = Registry()

    @registry.resource
    class Tag(BaseModel):
        name: str

    @registry.resource
    class Post(BaseModel):
        tags: list[Annotated[str, Ref(Tag)]] = []

    app = App(registry, db=store_url)
    with serve(app) as client:
        tags = [client.post("/tag", json={"name": str(i)}).json()["id"] for i in range(30)]
        created = client.post("/post", json={"tags": tags})
        assert created.code == 201 and created.json()["tags"] == tags


def test_a_cascade_reaches_every_referrer(store_url):
    """More referrers than a page of the store holds: every one is deleted with its target."""
    registry = Registry()

    @registry.resource
    class Author(BaseModel):
        name: str

    @registry.resource
    class Book(BaseModel):
        author: Annotated[str, Ref(Author, on_delete="cascade")]

    app = App(registry, db=store_url)
    with serve(app) as client:
        author = client.post("/author", json={"name": "a"}).json()["id"]
        assert client.post("/book", json=[{"author": author}] * 25).code == 201
        assert client.delete(f"/author/{author}").code == 204
        assert client.get("/book").json()["total"] == 0
