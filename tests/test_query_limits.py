"""What clients may ask of a list: filterable/sortable allowlists and the cap on page × per_page."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated

import pytest
from pydantic import BaseModel

from bzzlite import App, Registry, Unique
from bzzlite.errors import ConfigurationError
from bzzlite.testing import serve

NEXT = re.compile(r'<([^>]*)>; rel="next"')


class Address(BaseModel):
    city: str | None = None


class Item(BaseModel):
    name: str
    sku: Annotated[str, Unique] | None = None
    price: float = 0.0
    secret: str = ""
    address: Address | None = None


@contextlib.contextmanager
def served(store_url, seed=True, **options):
    registry = Registry()
    registry.resource(**options)(Item)
    app = App(registry, db=store_url)
    with serve(app) as client:
        for n in range(3 if seed else 0):
            assert client.post("/item", json={"name": f"n{n}", "sku": f"s{n}", "price": n, "secret": "x"}).code == 201
        yield app, client


def problem(response, code: int = 400) -> dict:
    assert response.code == code, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return response.json()


def test_every_field_can_be_filtered_and_sorted_by_default(store_url):
    with served(store_url) as (_, client):
        assert client.get("/item?secret=x&sort=-secret").code == 200
        assert client.get("/item?address.city=Paris").code == 200


def test_allowlists_refuse_other_fields_and_name_the_allowed_ones(store_url):
    with served(store_url, filterable=["name", "price"], sortable=["price"]) as (_, client):
        body = client.get("/item?price__gte=1&sort=-price").json()
        assert [i["name"] for i in body["items"]] == ["n2", "n1"]
        refused = problem(client.get("/item?secret=x"))
        assert refused["errors"] == [{"loc": ["query", "secret"], "type": "query_not_filterable",
                                      "msg": "'secret' cannot be filtered on here; the fields that can: id, name, price"}]
        assert problem(client.get("/item?secret__startswith=x"))["errors"][0]["loc"] == ["query", "secret__startswith"]
        refused = problem(client.get("/item?sort=name"))
        assert refused["errors"][0]["type"] == "query_not_sortable"
        assert "the fields that can: id, price" in refused["detail"]
        # the id is always allowed (its index is the primary key); unknown fields stay "unknown"
        assert client.get("/item?sort=-id&id__ne=" + "0" * 24).code == 200
        assert problem(client.get("/item?nope=1"))["errors"][0]["type"] == "query_unknown_field"


def test_receivers_may_still_filter_on_fields_clients_may_not(store_url):
    registry = Registry()
    registry.resource(filterable=["name"])(Item)

    @registry.on("pre_get_list", sender=Item)
    def scope(sender, arguments, handler):
        arguments["filters"]["secret"] = "x"

    with serve(App(registry, db=store_url)) as client:
        client.post("/item", json={"name": "kept", "secret": "x"})
        client.post("/item", json={"name": "hidden", "secret": "y"})
        assert [i["name"] for i in client.get("/item").json()["items"]] == ["kept"]


def test_indexed_allows_unique_and_indexed_fields_only(store_url):
    with served(store_url, indexes=["price"], filterable="indexed", sortable="indexed") as (app, client):
        assert client.get("/item?sku=s1&price__gt=0&sort=-price").json()["total"] == 1
        assert problem(client.get("/item?name=n1"))["errors"][0]["type"] == "query_not_filterable"
        assert problem(client.get("/item?sort=name"))["errors"][0]["type"] == "query_not_sortable"
        spec = next(iter(app.registry.resources.values()))
        assert spec.filterable == spec.sortable == frozenset({"sku", "price"})


def test_deep_pages_are_capped_and_the_message_points_to_cursors(store_url):
    with served(store_url, per_page=2, max_per_page=10, max_offset=10) as (_, client):
        assert client.get("/item?page=5&per_page=2").code == 200  # 5 × 2 = 10: allowed, past the end
        refused = problem(client.get("/item?page=2&per_page=6"))
        assert refused["errors"][0]["loc"] == ["query", "page"]
        assert refused["errors"][0]["type"] == "query_page_too_deep"
        assert "at most 10" in refused["detail"] and "after=" in refused["detail"]
        # cursors go as deep as they like
        url, seen = "/item?per_page=2&after=", []
        while url:
            response = client.get(url)
            assert response.code == 200
            seen += [i["name"] for i in response.json()["items"]]
            found = NEXT.search(response.headers.get("Link", ""))
            url = found.group(1) if found else ""
        assert seen == ["n0", "n1", "n2"]


def test_the_default_cap_is_ten_thousand(store_url):
    with served(store_url) as (_, client):
        assert client.get("/item?page=500&per_page=20").code == 200
        assert problem(client.get("/item?page=501&per_page=20"))["errors"][0]["type"] == "query_page_too_deep"
    with served(store_url, seed=False, max_offset=None) as (_, client):
        assert client.get("/item?page=100000&per_page=100").json()["items"] == []


def test_openapi_shows_only_what_may_be_asked(sqlite_url):
    with served(sqlite_url, filterable=["name"], sortable=["price"], max_offset=500) as (_, client):
        doc = client.get("/openapi.json").json()
    parameters = {p["name"]: p for p in doc["paths"]["/item"]["get"]["parameters"]}
    assert "name" in parameters and "name__startswith" in parameters and "id__in" in parameters
    assert not any(n.split("__")[0] in ("secret", "price", "sku") for n in parameters)
    assert parameters["sort"]["schema"]["items"]["enum"] == ["id", "price", "-id", "-price"]
    assert "at most 500" in parameters["page"]["description"] and "after" in parameters["page"]["description"]


@pytest.mark.parametrize(("options", "message"), [
    ({"filterable": ["nope"]}, "filterable= names 'nope'"),
    ({"sortable": "name"}, 'a list of field names or "indexed"'),
    ({"max_offset": 5}, "max_offset"),
    ({"query_timeout": -1}, "query_timeout"),
])
def test_bad_limits_are_configuration_errors(options, message):
    with pytest.raises(ConfigurationError, match=message):
        Registry().resource(**options)(Item)
