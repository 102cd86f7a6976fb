"""Every row of the contract's status table over HTTP, and no input that gives a 500.

Runs against every store (``store_url``): this is part of the conformance suite.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, HTTPError, Registry, Unique
from bzzlite.testing import serve

MISSING_ID = "0123456789abcdef01234567"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Pet(BaseModel):
    name: str
    vet: Address | None = None


class Person(BaseModel):
    name: str
    age: int = 0
    score: float = 0.0
    email: Annotated[str, Unique] | None = None
    code: Annotated[int, Unique] | None = None
    nickname: str | None = None
    tags: list[str] = []
    address: Address | None = None
    pets: list[Pet] = []


class Limited(BaseModel):
    title: str = Field(max_length=5)


@contextlib.contextmanager
def served(store_url, *models, **app_options):
    registry = Registry()
    for model in models or (Person,):
        registry.resource(model)
    with serve(App(registry, db=store_url, **app_options)) as client:
        yield client


def problem(response, status):
    """Assert a problem+json answer with ``status`` and return its body."""
    assert response.code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "Traceback" not in response.text
    body = response.json()
    assert body["status"] == status
    assert set(body) >= {"type", "title", "status", "detail"}
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def create(client, **fields):
    response = client.post("/person", json={"name": "Ann", **fields})
    assert response.code == 201, response.text
    return response.json()


# -- 400 -------------------------------------------------------------------------------------


MALFORMED = [b"{", b'{"name": }', b'{"name": "a"} trailing', b"{'name': 'a'}", b'{"name": "a",}', b"nul\x00l",
             b"\xff\xfe{}", b'{"name": "\xff"}', b"   ", b""]


def test_malformed_json_is_400(store_url):
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        for body in MALFORMED:
            for method, path in (("POST", "/person"), ("PUT", url), ("PATCH", url)):
                response = client.request(method, path, body=body, headers={"Content-Type": "application/json"})
                problem(response, 400)
        assert client.get("/person").json()["total"] == 1
        assert client.get(url).json() == existing


def test_invalid_utf8_everywhere_is_a_client_error(store_url):
    with served(store_url) as client:
        problem(client.post("/person", body=b'{"name": "caf\xe9"}', headers={"Content-Type": "application/json"}), 400)
        problem(client.post("/person", body=b"name=caf%E9", headers={"Content-Type": "application/x-www-form-urlencoded"}), 400)
        problem(client.post("/person", body=b"name=caf\xe9", headers={"Content-Type": "application/x-www-form-urlencoded"}), 400)
        problem(client.get("/person?name=caf%E9"), 400)
        problem(client.get("/person/caf%E9"), 404)
        assert client.get("/person").json()["total"] == 0


def test_a_bad_query_is_400_naming_the_parameter(store_url):
    with served(store_url) as client:
        body = problem(client.get("/person?age=old"), 400)
        assert body["errors"][0]["loc"] == ["query", "age"]
        body = problem(client.get("/person?planet=Mars"), 400)
        assert body["errors"][0]["loc"] == ["query", "planet"]


def test_a_non_numeric_content_length_is_400():
    with served("sqlite:///:memory:") as client:
        status, _, _ = raw_request(client, b"POST /person HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        assert status == 400


# -- 404 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_unknown_malformed_and_huge_ids_are_404(store_url, method):
    with served(store_url) as client:
        for id_ in (MISSING_ID, "nope", "0123456789ABCDEF01234567", "0" * 23, "0" * 25, "x" * 5000, "%00",
                    "0123456789abcdef0123456%00", "..", "%2e%2e"):
            kwargs = {"json": {"name": "x"}} if method in ("PUT", "PATCH") else {}
            body = problem(client.request(method, f"/person/{id_}", **kwargs), 404)
            assert "id" in body["detail"]


def test_unknown_routes_are_404_problem_json(store_url):
    with served(store_url) as client:
        for path in ("/", "/nope", "/nope/1", "/person/0123456789abcdef01234567/nope/x/y", "/person//", "/people",
                     "/Person", "/%00", "/" + "a" * 5000):
            for method in ("GET", "POST", "DELETE", "PATCH", "BREW"):
                problem(client.request(method, path, body=b"{}"), 404)


# -- 405 -------------------------------------------------------------------------------------


def test_405_on_the_collection_carries_allow(store_url):
    with served(store_url) as client:
        for method in ("PUT", "PATCH", "DELETE", "BREW"):
            response = client.request(method, "/person", json={"name": "x"})
            problem(response, 405)
            assert response.headers["Allow"] == "GET, POST"
        assert client.get("/person").json()["total"] == 0


def test_405_on_an_item_carries_allow(store_url):
    with served(store_url) as client:
        id_ = create(client)["id"]
        for path in (f"/person/{id_}", f"/person/{id_}/", f"/person/{MISSING_ID}"):
            response = client.post(path, json={"name": "x"})
            problem(response, 405)
            assert response.headers["Allow"] == "GET, PUT, PATCH, DELETE"
        assert client.get("/person").json()["total"] == 1


# -- 409 -------------------------------------------------------------------------------------


def test_409_on_a_duplicate_unique_value(store_url):
    with served(store_url) as client:
        create(client, email="a@x.org", code=1)
        body = problem(client.post("/person", json={"name": "B", "email": "a@x.org"}), 409)
        assert body["errors"][0]["loc"] == ["email"]
        body = problem(client.post("/person", json={"name": "B", "code": 1}), 409)
        assert body["errors"][0]["loc"] == ["code"]
        assert client.get("/person").json()["total"] == 1


def test_none_never_conflicts_with_none(store_url):
    with served(store_url) as client:
        create(client)  # email missing → null
        create(client, email=None)
        create(client, email=None, code=None)
        response = client.post("/person", json=[{"name": "C"}, {"name": "D", "email": None}])
        assert response.code == 201
        assert client.get("/person?email=null").json()["total"] == 5


def test_409_on_update_and_nothing_changes(store_url):
    with served(store_url) as client:
        create(client, email="a@x.org")
        other = create(client, email="b@x.org")
        url = f"/person/{other['id']}"
        problem(client.put(url, json={"name": "B", "email": "a@x.org"}), 409)
        problem(client.patch(url, json={"email": "a@x.org"}), 409)
        assert client.get(url).json() == other
        # moving to a free value, and back to null, are fine
        assert client.patch(url, json={"email": "c@x.org"}).code == 200
        assert client.patch(url, json={"email": None}).json()["email"] is None


def test_409_in_a_bulk_create_writes_nothing(store_url):
    with served(store_url) as client:
        create(client, email="a@x.org")
        problem(client.post("/person", json=[{"name": "B", "email": "b@x.org"}, {"name": "C", "email": "a@x.org"}]), 409)
        problem(client.post("/person", json=[{"name": "B", "email": "d@x.org"}, {"name": "C", "email": "d@x.org"}]), 409)
        assert client.get("/person").json()["total"] == 1
        assert client.get("/person?email=b@x.org").json()["total"] == 0


# -- 412 -------------------------------------------------------------------------------------


def test_412_on_a_stale_if_match_and_then_nothing_changed(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann"})
        url = created.headers["Location"]
        stale = created.headers["ETag"]
        current = client.patch(url, json={"age": 1})
        assert current.code == 200 and current.headers["ETag"] != stale
        snapshot = client.get(url)
        for method, body in (("PUT", {"name": "Bob"}), ("PATCH", {"age": 99}), ("DELETE", None)):
            for header in (stale, '"999"', f"W/{snapshot.headers['ETag']}", "garbage", '""'):
                response = client.request(method, url, json=body, headers={"If-Match": header})
                problem(response, 412)
            after = client.get(url)
            assert after.json() == snapshot.json()
            assert after.headers["ETag"] == snapshot.headers["ETag"]


def test_if_match_current_and_star_succeed(store_url):
    with served(store_url) as client:
        created = client.post("/person", json={"name": "Ann"})
        url, tag = created.headers["Location"], created.headers["ETag"]
        response = client.patch(url, json={"age": 2}, headers={"If-Match": tag})
        assert response.code == 200
        tag2 = response.headers["ETag"]
        response = client.put(url, json={"name": "Bea"}, headers={"If-Match": f'"nope", {tag2}'})
        assert response.code == 200
        assert client.patch(url, json={"age": 3}, headers={"If-Match": "*"}).code == 200
        assert client.put(url, json={"name": "Cy"}, headers={"If-Match": "*"}).code == 200
        assert client.delete(url, headers={"If-Match": "*"}).code == 204


def test_if_match_on_a_missing_document_is_404(store_url):
    with served(store_url) as client:
        for method in ("PUT", "PATCH", "DELETE"):
            kwargs = {"json": {"name": "x"}} if method != "DELETE" else {}
            problem(client.request(method, f"/person/{MISSING_ID}", headers={"If-Match": "*"}, **kwargs), 404)
            problem(client.request(method, f"/person/{MISSING_ID}", headers={"If-Match": '"1"'}, **kwargs), 404)


# -- 413 -------------------------------------------------------------------------------------


def test_413_above_max_body_size(store_url):
    with served(store_url, max_body_size=64) as client:
        small = client.post("/person", json={"name": "x"})
        assert small.code == 201
        url = small.headers["Location"]
        big = {"name": "x" * 100}
        problem(client.post("/person", json=big), 413)
        problem(client.put(url, json=big), 413)
        problem(client.patch(url, json=big), 413)
        problem(client.post("/person", data={"name": "y" * 100}), 413)
        assert client.get("/person").json()["total"] == 1
        assert client.get(url).json()["name"] == "x"


def test_413_for_a_chunked_body_above_the_limit():
    with served("sqlite:///:memory:", max_body_size=64) as client:
        chunk = b'{"name": "' + b"x" * 200 + b'"}'
        request = (b"POST /person HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        status, headers, body = raw_request(client, request)
        assert status == 413
        assert b"problem+json" in headers


def test_413_for_an_announced_huge_body_without_sending_it():
    with served("sqlite:///:memory:", max_body_size=64) as client:
        status, _, _ = raw_request(
            client, b"POST /person HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000000000\r\nExpect: 100-continue\r\n\r\n")
        assert status == 413


# -- 415 -------------------------------------------------------------------------------------


def test_415_for_unsupported_content_types(store_url):
    with served(store_url) as client:
        url = create(client)["id"]
        for content_type in ("text/plain", "application/xml", "image/png", "application/jsonx", "text/json-ish"):
            headers = {"Content-Type": content_type}
            problem(client.post("/person", body=b'{"name": "x"}', headers=headers), 415)
            problem(client.put(f"/person/{url}", body=b'{"name": "x"}', headers=headers), 415)
            problem(client.patch(f"/person/{url}", body=b'{"name": "x"}', headers=headers), 415)
        assert client.get("/person").json()["total"] == 1


def test_json_with_parameters_and_suffix_types_are_accepted(store_url):
    with served(store_url) as client:
        for ct in ("application/json; charset=utf-8", "APPLICATION/JSON", "application/merge-patch+json"):
            assert client.post("/person", body=b'{"name": "x"}', headers={"Content-Type": ct}).code == 201


def test_a_content_encoding_bzzlite_cannot_decode_is_refused(store_url):
    with served(store_url) as client:
        for ct, body in (("application/json", b'{"name": "x"}'), ("application/x-www-form-urlencoded", b"name=x")):
            response = client.post("/person", body=body, headers={"Content-Type": ct, "Content-Encoding": "gzip"})
            problem(response, 415)
        assert client.get("/person").json()["total"] == 0


def test_malformed_multipart_is_400(store_url):
    with served(store_url) as client:
        problem(client.post("/person", body=b"name=x", headers={"Content-Type": "multipart/form-data"}), 400)
        problem(client.post("/person", body=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=zz"}), 400)
        assert client.get("/person").json()["total"] == 0


# -- 422 -------------------------------------------------------------------------------------


def test_422_lists_every_problem_with_loc_msg_type(store_url):
    with served(store_url) as client:
        body = problem(client.post("/person", json={"age": "old", "score": [], "extra": 1}), 422)
        errors = body["errors"]
        assert all(set(e) == {"loc", "msg", "type"} for e in errors)
        assert {tuple(e["loc"]) for e in errors} == {("name",), ("age",), ("score",), ("extra",)}
        by_loc = {tuple(e["loc"]): e["type"] for e in errors}
        assert by_loc[("name",)] == "missing"
        assert by_loc[("extra",)] == "extra_forbidden"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "planet": "Mars"}, ["planet"]),
        ({"name": "x", "address": {"city": "P", "planet": "Mars"}}, ["address", "planet"]),
        ({"name": "x", "pets": [{"name": "a"}, {"name": "b", "wings": 2}]}, ["pets", 1, "wings"]),
        ({"name": "x", "pets": [{"name": "a", "vet": {"city": "P", "x": 0}}]}, ["pets", 0, "vet", "x"]),
    ],
)
def test_unknown_fields_at_every_depth_are_422(store_url, body, loc):
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        for method in ("POST", "PUT", "PATCH"):
            response = client.request(method, "/person" if method == "POST" else url, json=body)
            errors = problem(response, 422)["errors"]
            assert loc in [e["loc"] for e in errors], (method, errors)
        assert client.get("/person").json()["total"] == 1
        assert client.get(url).json() == existing


def test_patch_setting_a_required_field_to_null_is_422(store_url):
    with served(store_url) as client:
        existing = create(client, address={"city": "Paris"})
        url = f"/person/{existing['id']}"
        errors = problem(client.patch(url, json={"name": None}), 422)["errors"]
        assert errors[0]["loc"] == ["name"]
        errors = problem(client.patch(url, json={"address": {"city": None}}), 422)["errors"]
        assert errors[0]["loc"] == ["address", "city"]
        problem(client.put(url, json={"name": None}), 422)
        assert client.get(url).json() == existing


UNPORTABLE = [b'{"name": "x", "score": NaN}', b'{"name": "x", "score": Infinity}', b'{"name": "x", "score": -Infinity}',
              b'{"name": "x", "score": 1e400}', b'{"name": "x", "age": 9223372036854775808}',
              b'{"name": "x", "age": -9223372036854775809}', b'{"name": "x", "age": 18446744073709551615}',
              b'{"name": "x", "age": 123456789012345678901234567890}',
              b'{"name": "x", "tags": [], "address": {"city": "P", "zip": 1e999}}']


def test_numbers_json_cannot_carry_portably_are_422(store_url):
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        for raw in UNPORTABLE:
            for method, path in (("POST", "/person"), ("PUT", url), ("PATCH", url)):
                problem(client.request(method, path, body=raw, headers={"Content-Type": "application/json"}), 422)
        assert client.get("/person").json()["total"] == 1
        assert client.get(url).json() == existing


def test_the_largest_portable_numbers_are_fine(store_url):
    with served(store_url) as client:
        response = client.post("/person", body=b'{"name": "x", "age": 9223372036854775807, "score": 1.7976931348623157e308}',
                               headers={"Content-Type": "application/json"})
        assert response.code == 201
        assert response.json()["age"] == 2**63 - 1
        assert client.get(response.headers["Location"]).json()["age"] == 2**63 - 1
        assert client.get("/person?age=9223372036854775807").json()["total"] == 1


def test_unportable_numbers_from_form_fields_are_422(store_url):
    with served(store_url) as client:
        for form in ({"name": "x", "score": "nan"}, {"name": "x", "score": "inf"}, {"name": "x", "score": "-Infinity"},
                     {"name": "x", "score": "1e400"}, {"name": "x", "age": "99999999999999999999"}):
            errors = problem(client.post("/person", data=form), 422)["errors"]
            assert errors[0]["loc"] == [next(k for k in form if k != "name")]
        assert client.get("/person").json()["total"] == 0


def test_unportable_numbers_from_a_receiver_are_422(store_url):
    registry = Registry()
    registry.resource(Person)

    @registry.on("pre_create_instance")
    def huge(sender, arguments, handler):
        arguments["data"]["age"] = 10**30

    with serve(App(registry, db=store_url)) as client:
        problem(client.post("/person", json={"name": "x"}), 422)
        assert client.get("/person").json()["total"] == 0


def test_json_that_is_not_an_object_is_422(store_url):
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        for raw in (b"[1, 2]", b'"a string"', b"42", b"true", b"null", b"[[]]"):
            for method, path in (("POST", "/person"), ("PUT", url), ("PATCH", url)):
                problem(client.request(method, path, body=raw, headers={"Content-Type": "application/json"}), 422)
        assert client.get("/person").json()["total"] == 1


def test_an_array_where_an_object_belongs_is_422(store_url):
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        problem(client.put(url, json=[{"name": "x"}]), 422)
        problem(client.patch(url, json=[{"name": "x"}]), 422)
        errors = problem(client.post("/person", json={"name": "x", "address": [{"city": "P"}]}), 422)["errors"]
        assert errors[0]["loc"] == ["address"]
        errors = problem(client.patch(url, json={"address": ["P"]}), 422)["errors"]
        assert errors[0]["loc"] == ["address"]
        assert client.get(url).json() == existing


def test_field_constraints_are_422(store_url):
    with served(store_url, Limited) as client:
        errors = problem(client.post("/limited", json={"title": "too long"}), 422)["errors"]
        assert errors[0]["loc"] == ["title"]
        assert errors[0]["type"] == "string_too_long"


# -- NUL bytes ---------------------------------------------------------------------------------


def test_nul_characters_in_values_are_422(store_url):
    """NUL cannot be kept faithfully by every store (SQLite's JSON functions cut strings at it),
    so, as DRF does, bzzlite refuses it in any string, wherever it comes from."""
    with served(store_url) as client:
        existing = create(client)
        url = f"/person/{existing['id']}"
        cases = [
            ("POST", "/person", {"name": "a\u0000b"}, ["name"]),
            ("POST", "/person", {"name": "x", "tags": ["ok", "\u0000"]}, ["tags", 1]),
            ("POST", "/person", {"name": "x", "address": {"city": "P\u0000"}}, ["address", "city"]),
            ("POST", "/person", [{"name": "x"}, {"name": "\u0000"}], [1, "name"]),
            ("PUT", url, {"name": "\u0000"}, ["name"]),
            ("PATCH", url, {"nickname": "\u0000"}, ["nickname"]),
        ]
        for method, path, body, loc in cases:
            errors = problem(client.request(method, path, json=body), 422)["errors"]
            assert errors == [{"loc": loc, "msg": "Null characters are not allowed", "type": "string_nul"}]
        errors = problem(client.post("/person", data={"name": "a\x00b"}), 422)["errors"]
        assert errors[0]["loc"] == ["name"]
        assert client.get("/person").json()["total"] == 1
        assert client.get(url).json() == existing


def test_nul_bytes_elsewhere_are_client_errors(store_url):
    with served(store_url) as client:
        create(client)
        problem(client.post("/person", body=b'{"name": "a\x00b"}', headers={"Content-Type": "application/json"}), 400)
        problem(client.post("/person", json={"name": "x", "na\u0000me": 1}), 422)
        problem(client.get("/person?na%00me=x"), 400)
        problem(client.get("/person?sort=na%00me"), 400)
        problem(client.get(f"/person/{MISSING_ID}%00"), 404)
        for query in ("name=a%00b", "name__contains=%00", "name__startswith=%00", "tags=%00", "name__in=%00,x"):
            response = client.get(f"/person?{query}")
            assert response.code == 200, response.text
            assert response.json()["total"] == 0


# -- a pre_* receiver's HTTPError ---------------------------------------------------------------


def test_http_error_from_a_receiver_becomes_the_response(store_url):
    registry = Registry()
    registry.resource(Person)

    @registry.on("pre_create_instance")
    def teapot(sender, arguments, handler):
        raise HTTPError(418, "I am a teapot")

    with serve(App(registry, db=store_url)) as client:
        body = problem(client.post("/person", json={"name": "x"}), 418)
        assert body["detail"] == "I am a teapot"


def test_a_bug_in_a_receiver_is_a_500_without_a_traceback(store_url):
    registry = Registry()
    registry.resource(Person)

    @registry.on("pre_get_list")
    def broken(sender, arguments, handler):
        raise RuntimeError("secret internals")

    with serve(App(registry, db=store_url)) as client:
        response = client.get("/person")
        body = problem(response, 500)
        assert "secret internals" not in response.text
        assert body["detail"]


# -- never a 500 ---------------------------------------------------------------------------------


FUZZ_BODIES = [
    b"", b"{}", b"[]", b"[{}]", b"[1]", b"null", b'"x"', b"0", b"-0", b"1e5", b'{"": ""}', b'{"name": {}}',
    b'{"name": []}', b'{"name": null}', b'{"name": 1}', b'{"name": "x", "address": null}', b'{"name": "x", "pets": null}',
    b'{"name": "x", "pets": [null]}', b'{"name": "x", "pets": [1]}', b'{"name": "x", "tags": "red"}',
    b'{"name": "x", "tags": [null]}', b'{"name": "x", "tags": {"a": 1}}', b'{"name": "x", "email": 5}',
    b'{"name": "x", "address": {"city": {"$ne": 1}}}', b'{"$where": "1"}', b'{"name": "x", "id": "zzz"}',
    b'{"name": "x", "id": null}', b'{"name": "\\ud800"}', b'{"name": "\\u0000"}', b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000, b'{"name": "x"}' * 2, b"\xef\xbb\xbf{}", b"\x00", b"\xc3\x28",
]


def test_fuzzed_bodies_never_get_a_500(store_url):
    with served(store_url) as client:
        url = f"/person/{create(client)['id']}"
        for body in FUZZ_BODIES:
            for method, path in (("POST", "/person"), ("PUT", url), ("PATCH", url)):
                for ct in ("application/json", None, "application/x-www-form-urlencoded"):
                    headers = {"Content-Type": ct} if ct else {}
                    response = client.request(method, path, body=body, headers=headers)
                    assert response.code < 500, (method, ct, body[:50], response.text)
                    assert "Traceback" not in response.text


FUZZ_QUERIES = [
    "?", "?&&", "?=", "?=x", "?name", "?name=x&name=y", "?sort", "?sort=", "?fields", "?fields=", "?page", "?per_page",
    "?after", "?after=%00", "?name__in", "?name__in=,,,", "?age__in=,", "?id", "?id__exists=true", "?id__in=",
    "?tags__exists=true", "?address.city__exists=yes", "?address.city", "?pets=x", "?pets.name=x", "?..=1", "?.=1",
    "?name.x=1", "?name__ne=null", "?age__gt=null", "?nickname__gt=null", "?nickname__contains=null",
    "?age=1e3", "?age=0x10", "?age=%2B1", "?age=1_000", "?score=1e308", "?score=-0", "?email__startswith=%25",
    "?name__contains=%25_", "?name=%27%3B%20DROP%20TABLE%20person%3B--", "?sort=-%27", "?fields=id", "?fields=id,id",
    "?per_page=100&page=999999", "?page=1&after=", "?after=&sort=-age&per_page=1", "?x" * 500,
]


def test_fuzzed_queries_never_get_a_500(store_url):
    with served(store_url) as client:
        create(client, tags=["a"], address={"city": "P"})
        for query in FUZZ_QUERIES:
            response = client.get("/person" + query)
            assert response.code in (200, 400), (query, response.text)
            assert "Traceback" not in response.text
            if response.code == 400:
                assert problem(response, 400)["errors"][0]["loc"][0] == "query"


# -- helpers -------------------------------------------------------------------------------------


def raw_request(client, data: bytes) -> tuple[int, bytes, bytes]:
    """Send raw bytes and read one response: (status, header block, body so far)."""
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body
