"""CRUD over HTTP as the contract's table describes it, on every store."""

from __future__ import annotations

import contextlib
import datetime
import re
from typing import Annotated

from pydantic import BaseModel

from bzzlite import App, Registry, Unique
from bzzlite.testing import serve

ID_RE = re.compile(r"[0-9a-f]{24}\Z")
MISSING_ID = "0123456789abcdef01234567"


class Address(BaseModel):
    city: str
    zip: str | None = None
    country: str = "FR"


class Person(BaseModel):
    name: str
    age: int = 0
    active: bool = True
    score: float = 0.0
    email: Annotated[str, Unique] | None = None
    nickname: str | None = None
    tags: list[str] = []
    lucky: list[int] = []
    address: Address | None = None


class User(BaseModel):
    name: str


@contextlib.contextmanager
def served(store_url, *models, registry=None, **options):
    registry = registry or Registry()
    for model in models or (Person,):
        registry.resource(model)
    with serve(App(registry, db=store_url, **options)) as client:
        yield client


def defaults(**fields):
    return {"age": 0, "active": True, "score": 0.0, "email": None, "nickname": None, "tags": [], "lucky": [],
            "address": None, **fields}


# -- POST ---------------------------------------------------------------------------------------


def test_post_json_creates_a_document(store_url):
    with served(store_url) as client:
        response = client.post("/person", json={"name": "Ann", "age": 31, "tags": ["a", "b"]})
        assert response.code == 201
        body = response.json()
        assert ID_RE.match(body["id"])
        assert list(body)[0] == "id"
        assert body == {"id": body["id"], "name": "Ann", **defaults(age=31, tags=["a", "b"])}
        assert response.headers["Location"] == f"/person/{body['id']}"
        assert response.headers["X-Created-Id"] == body["id"]
        assert response.headers["Content-Type"] == "application/json"
        etag = response.headers["ETag"]
        assert re.fullmatch(r'"[^"]+"', etag)  # strong
        fetched = client.get(response.headers["Location"])
        assert fetched.code == 200
        assert fetched.json() == body
        assert fetched.headers["ETag"] == etag


def test_post_with_a_name_and_prefix(store_url):
    registry = Registry()
    registry.resource(name="people", prefix="/api")(User)
    with serve(App(registry, db=store_url)) as client:
        response = client.post("/api/people", json={"name": "Ann"})
        assert response.code == 201
        assert response.headers["Location"] == f"/api/people/{response.json()['id']}"
        assert client.get(response.headers["Location"]).code == 200
        assert client.get("/people").code == 404
        assert client.get("/api/people").json()["total"] == 1


def test_unicode_round_trips(store_url):
    with served(store_url) as client:
        name = "Zoë 日本 🎉 \u2028 \"quoted\" \\ back"
        response = client.post("/person", json={"name": name})
        assert client.get(response.headers["Location"]).json()["name"] == name


def test_ids_are_unique_and_sort_by_creation(store_url):
    with served(store_url) as client:
        ids = [client.post("/person", json={"name": str(i)}).json()["id"] for i in range(30)]
        assert len(set(ids)) == 30
        assert ids == sorted(ids)
        listed = [item["id"] for item in client.get("/person?per_page=100").json()["items"]]
        assert listed == ids


def test_the_seeds_form_post_without_content_type(store_url):
    """bzz's example: body 'name=Bernardo%20Heynemann' and no Content-Type header."""
    with served(store_url, User) as client:
        response = client.post("/user", body="name=Bernardo%20Heynemann")
        assert response.code == 201, response.text
        assert response.json()["name"] == "Bernardo Heynemann"
        assert client.get(response.headers["Location"]).json()["name"] == "Bernardo Heynemann"
        assert client.post("/user/", body="name=Second").code == 201


def test_form_fields_are_coerced_to_the_field_types(store_url):
    with served(store_url) as client:
        response = client.post("/person", data={"name": "Ann", "age": "42", "active": "false", "score": "2.5"})
        assert response.code == 201, response.text
        assert response.json() == {"id": response.json()["id"], "name": "Ann",
                                   **defaults(age=42, active=False, score=2.5)}


def test_form_repeated_keys_and_list_fields_give_lists(store_url):
    with served(store_url) as client:
        response = client.post("/person", data=[("name", "Ann"), ("tags", "a"), ("tags", "b"), ("lucky", "7")])
        assert response.code == 201, response.text
        body = response.json()
        assert body["tags"] == ["a", "b"]
        assert body["lucky"] == [7]  # one value of a list field is still a list
        response = client.post("/person", data=[("name", "Ann"), ("name", "Bob")])
        assert response.code == 422  # a repeated key gives a list, and name is a string
        assert response.json()["errors"][0]["loc"] == ["name"]


def test_form_empty_values(store_url):
    with served(store_url) as client:
        response = client.post("/person", data={"name": "Ann", "nickname": "", "email": "", "tags": ""})
        assert response.code == 201, response.text
        body = response.json()
        assert body["nickname"] is None and body["email"] is None  # empty → None for optional fields
        assert body["tags"] == []
        response = client.post("/person", data={"name": ""})
        assert response.code == 201 and response.json()["name"] == ""  # a required string may be empty
        response = client.post("/person", data={"name": "x", "age": ""})
        assert response.code == 422 and response.json()["errors"][0]["loc"] == ["age"]


def test_form_with_content_type_variants(store_url):
    with served(store_url) as client:
        for content_type in ("application/x-www-form-urlencoded; charset=utf-8", "Application/X-WWW-Form-Urlencoded"):
            response = client.post("/person", body="name=Ann&age=3", headers={"Content-Type": content_type})
            assert response.code == 201, (content_type, response.text)
            assert response.json()["age"] == 3
        multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nMulti\r\n"
                     b"--XyZ\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\nt1\r\n--XyZ--\r\n")
        response = client.post("/person", body=multipart, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert response.code == 201, response.text
        assert (response.json()["name"], response.json()["tags"]) == ("Multi", ["t1"])


def test_form_unknown_fields_are_422(store_url):
    with served(store_url) as client:
        response = client.post("/person", data={"name": "Ann", "planet": "Mars"})
        assert response.code == 422
        assert response.json()["errors"][0]["loc"] == ["planet"]


# -- bulk POST -----------------------------------------------------------------------------------


def test_bulk_post_creates_all(store_url):
    with served(store_url) as client:
        response = client.post("/person", json=[{"name": "A"}, {"name": "B", "age": 2}, {"name": "C"}])
        assert response.code == 201
        body = response.json()
        assert [d["name"] for d in body] == ["A", "B", "C"]
        assert body[1] == {"id": body[1]["id"], "name": "B", **defaults(age=2)}
        ids = [d["id"] for d in body]
        assert response.headers["X-Created-Id"] == ",".join(ids)
        assert "Location" not in response.headers
        assert ids == sorted(ids)
        for doc in body:
            assert client.get(f"/person/{doc['id']}").json() == doc
        assert client.get("/person").json()["total"] == 3


def test_bulk_post_is_all_or_nothing(store_url):
    with served(store_url) as client:
        response = client.post("/person", json=[{"name": "A"}, {"age": "x"}, {"name": "C", "planet": 1}, {"name": "D"}])
        assert response.code == 422
        assert response.headers["Content-Type"] == "application/problem+json"
        locs = [e["loc"] for e in response.json()["errors"]]
        assert [1, "name"] in locs and [1, "age"] in locs and [2, "planet"] in locs
        assert all(isinstance(loc[0], int) for loc in locs)
        assert client.get("/person").json()["total"] == 0
        response = client.post("/person", json=[{"name": "A"}, "not an object"])
        assert response.code == 422
        assert response.json()["errors"][0]["loc"] == [1]
        assert client.get("/person").json()["total"] == 0


def test_bulk_post_of_an_empty_array_is_422(store_url):
    with served(store_url) as client:
        response = client.post("/person", json=[])
        assert response.code == 422
        assert response.headers["Content-Type"] == "application/problem+json"
        assert client.get("/person").json()["total"] == 0


def test_a_single_element_bulk_is_still_bulk(store_url):
    with served(store_url) as client:
        response = client.post("/person", json=[{"name": "A"}])
        assert response.code == 201
        assert isinstance(response.json(), list) and len(response.json()) == 1
        assert "Location" not in response.headers
        assert response.headers["X-Created-Id"] == response.json()[0]["id"]


# -- GET ----------------------------------------------------------------------------------------


def test_get_with_if_none_match(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann"})
        url, tag = created.headers["Location"], created.headers["ETag"]
        for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            response = client.get(url, headers={"If-None-Match": header})
            assert response.code == 304, header
            assert response.body == b""
            assert response.headers["ETag"] == tag
        assert client.get(url, headers={"If-None-Match": '"other"'}).code == 200
        updated = client.patch(url, json={"age": 1})
        assert updated.headers["ETag"] != tag
        response = client.get(url, headers={"If-None-Match": tag})
        assert response.code == 200 and response.json()["age"] == 1
        assert client.get(url, headers={"If-None-Match": updated.headers["ETag"]}).code == 304


def test_list_envelope(store_url):
    with served(store_url) as client:
        response = client.get("/person")
        assert response.code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"items": [], "total": 0, "page": 1, "per_page": 20}
        a = client.post("/person", json={"name": "A"}).json()
        b = client.post("/person", json={"name": "B"}).json()
        assert client.get("/person").json() == {"items": [a, b], "total": 2, "page": 1, "per_page": 20}


def test_an_etag_comes_with_every_single_document(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "A"})
        url = created.headers["Location"]
        tags = [created.headers["ETag"], client.get(url).headers["ETag"]]
        tags.append(client.put(url, json={"name": "B"}).headers["ETag"])
        tags.append(client.patch(url, json={"age": 1}).headers["ETag"])
        assert tags[0] == tags[1]
        assert len(set(tags)) == 3
        assert "ETag" not in client.get("/person").headers


# -- PUT ----------------------------------------------------------------------------------------


def test_put_replaces_the_whole_document(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann", "age": 30, "nickname": "A", "tags": ["x"],
                                               "address": {"city": "Paris"}}).json()
        url = f"/person/{created['id']}"
        response = client.put(url, json={"name": "Bob", "score": 1.5})
        assert response.code == 200
        assert response.json() == {"id": created["id"], "name": "Bob", **defaults(score=1.5)}
        assert client.get(url).json() == response.json()
        assert client.get("/person").json()["total"] == 1


def test_put_must_validate_as_a_whole(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann", "age": 30}).json()
        url = f"/person/{created['id']}"
        response = client.put(url, json={"age": 31})
        assert response.code == 422
        assert response.json()["errors"][0]["loc"] == ["name"]
        assert client.get(url).json() == created


# -- PATCH --------------------------------------------------------------------------------------


def test_patch_merges(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann", "age": 30, "tags": ["x"],
                                               "address": {"city": "Paris", "zip": "75001"}}).json()
        url = f"/person/{created['id']}"
        response = client.patch(url, json={"age": 31, "address": {"zip": "75002"}})
        assert response.code == 200
        expected = {**created, "age": 31, "address": {"city": "Paris", "zip": "75002", "country": "FR"}}
        assert response.json() == expected
        assert client.get(url).json() == expected
        assert client.patch(url, json={}).json() == expected  # an empty patch changes nothing
        assert client.patch(url, json={"tags": ["y", "z"]}).json()["tags"] == ["y", "z"]  # arrays replace


def test_patch_null_returns_a_field_to_its_default(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann", "age": 30, "nickname": "A", "tags": ["x"],
                                               "active": False, "address": {"city": "P", "zip": "1", "country": "BE"}}).json()
        url = f"/person/{created['id']}"
        body = client.patch(url, json={"age": None, "nickname": None, "tags": None, "active": None}).json()
        assert (body["age"], body["nickname"], body["tags"], body["active"]) == (0, None, [], True)
        body = client.patch(url, json={"address": {"zip": None, "country": None}}).json()
        assert body["address"] == {"city": "P", "zip": None, "country": "FR"}
        body = client.patch(url, json={"address": None}).json()
        assert body["address"] is None
        assert client.get(url).json() == body


def test_patch_setting_an_unknown_field_to_null_is_422(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann", "address": {"city": "P", "zip": "1"}}).json()
        url = f"/person/{created['id']}"
        for patch, loc in (({"colour": None}, ["colour"]), ({"address": {"street": None}}, ["address", "street"])):
            response = client.patch(url, json=patch)
            assert response.code == 422
            assert response.json()["errors"] == [{"loc": loc, "msg": "Extra inputs are not permitted",
                                                  "type": "extra_forbidden"}]
        assert client.get(url).json() == created


def test_patch_with_the_merge_patch_media_type(store_url):
    with served(store_url) as client:
        url = client.post("/person", json={"name": "Ann"}).headers["Location"]
        response = client.patch(url, body=b'{"age": 5}', headers={"Content-Type": "application/merge-patch+json"})
        assert response.code == 200 and response.json()["age"] == 5


def test_patch_of_a_missing_document_is_404(store_url):
    with served(store_url) as client:
        assert client.patch(f"/person/{MISSING_ID}", json={"age": 1}).code == 404
        assert client.put(f"/person/{MISSING_ID}", json={"name": "x"}).code == 404  # PUT does not create
        assert client.get("/person").json()["total"] == 0


# -- DELETE -------------------------------------------------------------------------------------


def test_delete(store_url):
    with served(store_url) as client:
        keep = client.post("/person", json={"name": "Keep"}).json()
        url = client.post("/person", json={"name": "Ann"}).headers["Location"]
        response = client.delete(url)
        assert response.code == 204
        assert response.body == b""
        assert client.get(url).code == 404
        assert client.delete(url).code == 404
        assert client.get("/person").json() == {"items": [keep], "total": 1, "page": 1, "per_page": 20}


# -- the id is the server's --------------------------------------------------------------------


def test_an_id_in_the_body_is_ignored(store_url):
    with served(store_url) as client:
        response = client.post("/person", json={"id": MISSING_ID, "name": "Ann"})
        assert response.code == 201
        id_ = response.json()["id"]
        assert id_ != MISSING_ID
        assert client.get(f"/person/{MISSING_ID}").code == 404
        for body in ({"id": MISSING_ID, "name": "Bob"}, {"id": "garbage", "name": "Bob"}, {"id": None, "name": "Bob"}):
            response = client.put(f"/person/{id_}", json=body)
            assert response.code == 200 and response.json()["id"] == id_
        response = client.patch(f"/person/{id_}", json={"id": MISSING_ID, "age": 9})
        assert response.code == 200 and response.json()["id"] == id_ and response.json()["age"] == 9
        bulk = client.post("/person", json=[{"id": MISSING_ID, "name": "C"}, {"id": MISSING_ID, "name": "D"}])
        assert bulk.code == 201
        assert MISSING_ID not in bulk.headers["X-Created-Id"]
        assert client.get(f"/person/{MISSING_ID}").code == 404
        assert client.post("/person", data={"id": MISSING_ID, "name": "E"}).json()["id"] != MISSING_ID


# -- trailing slashes ---------------------------------------------------------------------------


def test_trailing_slashes_are_accepted(store_url):
    with served(store_url) as client:
        response = client.post("/person/", json={"name": "Ann"})
        assert response.code == 201
        url = response.headers["Location"]
        assert not url.endswith("/")
        assert client.get("/person/").json()["total"] == 1
        assert client.get("/person/?name=Ann").json()["total"] == 1
        assert client.get(url + "/").code == 200
        put = client.put(url + "/", json={"name": "Bob"})
        assert put.code == 200 and put.json()["name"] == "Bob"
        patched = client.patch(url + "/", json={"age": 1})
        assert patched.code == 200 and (patched.json()["name"], patched.json()["age"]) == ("Bob", 1)
        assert client.get(url).json() == patched.json()  # read back: both writes were stored
        assert client.delete(url + "/").code == 204
        assert client.get(url + "/").code == 404


def test_every_write_changes_the_etag(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann"})
        url = created.headers["Location"]
        first = created.headers["ETag"]
        second = client.patch(url, json={"age": 1}).headers["ETag"]
        third = client.put(url, json={"name": "Bob"}).headers["ETag"]
        assert len({first, second, third}) == 3
        current = client.get(url)
        assert current.headers["ETag"] == third
        assert (current.json()["name"], current.json()["age"]) == ("Bob", defaults()["age"])  # the PUT replaced all


def test_form_fields_work_for_put_and_patch(store_url):
    with served(store_url) as client:
        url = client.post("/person", json={"name": "Ann", "age": 3, "tags": ["a"]}).headers["Location"]
        response = client.patch(url, data={"age": "5", "tags": "x"})
        assert response.code == 200, response.text
        assert (response.json()["name"], response.json()["age"], response.json()["tags"]) == ("Ann", 5, ["x"])
        response = client.put(url, data={"name": "Bob"})
        assert response.code == 200
        assert response.json() == {"id": url.rsplit("/", 1)[1], "name": "Bob", **defaults()}
        assert client.get(url).json() == response.json()  # read back: what was answered was stored


class Event(BaseModel):
    at: datetime.datetime


class Diary(BaseModel):
    title: str
    when: datetime.datetime | None = None
    day: datetime.date | None = None
    events: list[Event] = []


def test_datetimes_are_stored_as_instants_in_one_sortable_form(store_url):
    """Aware datetimes come back in UTC with microseconds, at any depth; naive ones stay naive."""
    with served(store_url, Diary) as client:
        response = client.post("/diary", json={"title": "t", "when": "2024-01-01T10:00:00+01:00", "day": "2024-01-02",
                                               "events": [{"at": "2024-03-01T00:00:00.5Z"}, {"at": "2024-03-01T12:00:00"}]})
        assert response.code == 201
        body = response.json()
        assert body["when"] == "2024-01-01T09:00:00.000000Z"
        assert body["day"] == "2024-01-02"
        assert body["events"] == [{"at": "2024-03-01T00:00:00.500000Z"}, {"at": "2024-03-01T12:00:00.000000"}]
        url = response.headers["Location"]
        assert client.get(url).json() == body
        assert client.patch(url, json={"title": "u"}).json() == {**body, "title": "u"}
