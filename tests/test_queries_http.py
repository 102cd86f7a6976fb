"""Collection queries over HTTP, on every store: filters, sort, projection, both paginations."""

from __future__ import annotations

import contextlib
import datetime
import enum
import re
from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from pydantic import BaseModel

from bzzlite import App, Registry, Unique
from bzzlite.testing import serve


class Color(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Item(BaseModel):
    name: str
    price: float = 0.0
    qty: int = 0
    active: bool = True
    added: datetime.date | None = None
    seen: datetime.datetime | None = None
    color: Color = Color.red
    sku: Annotated[str, Unique] | None = None
    note: str | None = None
    tags: list[str] = []
    sizes: list[int] = []
    address: Address | None = None


ROWS = [
    {"name": "Apple", "price": 1.5, "qty": 10, "active": True, "added": "2024-01-10", "seen": "2024-01-10T08:00:00Z",
     "color": "red", "sku": "A1", "note": "fresh", "tags": ["fruit", "red"], "sizes": [1, 2],
     "address": {"city": "Paris", "zip": "75001"}},
    {"name": "banana", "price": 0.5, "qty": 0, "active": False, "added": "2024-02-01",
     "seen": "2024-01-10T08:00:00.5Z", "color": "blue", "sku": "B1", "note": None, "tags": ["fruit"], "sizes": [],
     "address": {"city": "Lyon"}},
    {"name": "Cherry", "price": 3.0, "qty": 5, "active": True, "added": None, "seen": None, "color": "red",
     "sku": None, "note": "Red and ripe", "tags": ["fruit", "red", "small"], "sizes": [3], "address": None},
    {"name": "date", "price": 2.25, "qty": 7, "active": True, "added": "2023-12-31", "seen": "2024-01-10T09:00:00+02:00",
     "color": "green", "sku": "D1", "note": "", "tags": [], "sizes": [2, 5], "address": {"city": "Paris"}},
    {"name": "Eggplant", "price": 1.5, "qty": -3, "active": False, "added": "2024-01-10",
     "seen": "2024-01-11T00:00:00Z", "color": "blue", "note": "fresh!", "tags": ["veg"], "sizes": [10],
     "address": {"city": "paris", "zip": "75002"}},
    {"name": "fig"},
]
ALL = {"Apple", "banana", "Cherry", "date", "Eggplant", "fig"}
ORDER = [row["name"] for row in ROWS]  # creation order = id order


@contextlib.contextmanager
def served(store_url, model=Item, **resource_options):
    registry = Registry()
    registry.resource(**resource_options)(model)
    with serve(App(registry, db=store_url)) as client:
        yield client


@pytest.fixture
def catalog(store_url):
    """A server with the six ROWS created in order; yields (client, {name: id})."""
    with served(store_url) as client:
        ids = {}
        for row in ROWS:  # one by one, so ids follow this order
            response = client.post("/item", json=row)
            assert response.code == 201, response.text
            ids[row["name"]] = response.json()["id"]
        yield client, ids


def names(client, query: str) -> list[str]:
    response = client.get(f"/item?per_page=100&{query}")
    assert response.code == 200, (query, response.text)
    body = response.json()
    assert body["total"] == len(body["items"])
    return [item["name"] for item in body["items"]]


def links(response) -> dict[str, str]:
    header = response.headers.get("Link", "")
    return {rel: url for url, rel in re.findall(r'<([^>]*)>;\s*rel="([^"]+)"', header)}


# -- every operator × type ---------------------------------------------------------------------

FILTERS = [
    # str
    ("name=Apple", {"Apple"}),
    ("name=apple", set()),  # case-sensitive
    ("name__eq=Apple", {"Apple"}),
    ("name__ne=Apple", ALL - {"Apple"}),
    ("name__gt=Cherry", {"Eggplant", "banana", "date", "fig"}),  # code-point order: upper case first
    ("name__gte=Cherry", {"Cherry", "Eggplant", "banana", "date", "fig"}),
    ("name__lt=Cherry", {"Apple"}),
    ("name__lte=Cherry", {"Apple", "Cherry"}),
    ("name__in=Apple,fig,nope", {"Apple", "fig"}),
    ("name__nin=Apple,fig", ALL - {"Apple", "fig"}),
    ("name__contains=an", {"banana", "Eggplant"}),
    ("name__contains=A", {"Apple"}),  # case-sensitive substring
    ("name__contains=%25", set()),  # % and _ are not wildcards
    ("name__contains=_", set()),
    ("name__startswith=b", {"banana"}),
    ("name__startswith=B", set()),
    ("name__startswith=", ALL),
    # optional str, null and missing
    ("note=fresh", {"Apple"}),
    ("note=", {"date"}),
    ("note=null", {"banana", "fig"}),
    ("note__ne=null", {"Apple", "Cherry", "date", "Eggplant"}),
    ("note__ne=fresh", ALL - {"Apple"}),  # __ne also matches null
    ("note__exists=true", {"Apple", "Cherry", "date", "Eggplant"}),
    ("note__exists=false", {"banana", "fig"}),
    ("note__in=fresh,null", {"Apple", "banana", "fig"}),
    ("note__nin=fresh,null", {"Cherry", "date", "Eggplant"}),
    ("note__nin=fresh", ALL - {"Apple"}),
    ("note__gt=a", {"Apple", "Eggplant"}),
    ("note__lt=a", {"Cherry", "date"}),  # null is not less than anything
    ("note__contains=fresh", {"Apple", "Eggplant"}),
    ("note__startswith=Red", {"Cherry"}),
    ("note__startswith=red", set()),
    # int
    ("qty=0", {"banana", "fig"}),
    ("qty=-3", {"Eggplant"}),
    ("qty__ne=0", {"Apple", "Cherry", "date", "Eggplant"}),
    ("qty__gt=5", {"Apple", "date"}),
    ("qty__gte=5", {"Apple", "Cherry", "date"}),
    ("qty__lt=0", {"Eggplant"}),
    ("qty__lte=0", {"banana", "Eggplant", "fig"}),
    ("qty__in=5,7", {"Cherry", "date"}),
    ("qty__nin=5,7,0", {"Apple", "Eggplant"}),
    ("qty__exists=true", ALL),
    # float
    ("price=1.5", {"Apple", "Eggplant"}),
    ("price=1.50", {"Apple", "Eggplant"}),
    ("price=3", {"Cherry"}),
    ("price__ne=1.5", {"banana", "Cherry", "date", "fig"}),
    ("price__gt=1.5", {"Cherry", "date"}),
    ("price__gte=2.25", {"Cherry", "date"}),
    ("price__lt=1", {"banana", "fig"}),
    ("price__lte=0", {"fig"}),
    ("price__in=0.5,3", {"banana", "Cherry"}),
    ("price__nin=0.5,3", {"Apple", "date", "Eggplant", "fig"}),
    # bool
    ("active=true", {"Apple", "Cherry", "date", "fig"}),
    ("active=false", {"banana", "Eggplant"}),
    ("active=0", {"banana", "Eggplant"}),
    ("active__ne=true", {"banana", "Eggplant"}),
    ("active__in=false", {"banana", "Eggplant"}),
    ("active__gt=false", {"Apple", "Cherry", "date", "fig"}),
    # date
    ("added=2024-01-10", {"Apple", "Eggplant"}),
    ("added__ne=2024-01-10", {"banana", "Cherry", "date", "fig"}),
    ("added__gt=2024-01-10", {"banana"}),
    ("added__gte=2024-01-01", {"Apple", "banana", "Eggplant"}),
    ("added__lt=2024-01-01", {"date"}),
    ("added__lte=2024-01-10", {"Apple", "date", "Eggplant"}),
    ("added__in=2023-12-31,2024-02-01", {"banana", "date"}),
    ("added=null", {"Cherry", "fig"}),
    ("added__exists=true", {"Apple", "banana", "date", "Eggplant"}),
    # datetime: instants compare as instants, whatever the offset or the fraction of a second
    ("seen=2024-01-10T08:00:00Z", {"Apple"}),
    ("seen=2024-01-10T08:00:00.000Z", {"Apple"}),
    ("seen=2024-01-10T10:00:00" + quote("+") + "02:00", {"Apple"}),
    ("seen=2024-01-10T07:00:00Z", {"date"}),
    ("seen__gt=2024-01-10T08:00:00Z", {"banana", "Eggplant"}),
    ("seen__gte=2024-01-10T08:00:00.5Z", {"banana", "Eggplant"}),
    ("seen__lt=2024-01-10T08:00:00Z", {"date"}),
    ("seen__lte=2024-01-10T08:00:00.4Z", {"Apple", "date"}),
    ("seen__in=2024-01-10T07:00:00Z,2024-01-11T00:00:00Z", {"date", "Eggplant"}),
    ("seen__ne=2024-01-10T08:00:00Z", ALL - {"Apple"}),
    ("seen__exists=false", {"Cherry", "fig"}),
    # enum
    ("color=red", {"Apple", "Cherry", "fig"}),
    ("color__ne=red", {"banana", "date", "Eggplant"}),
    ("color__in=green,blue", {"banana", "date", "Eggplant"}),
    ("color__nin=green,blue", {"Apple", "Cherry", "fig"}),
    ("color__gt=green", {"Apple", "Cherry", "fig"}),
    # unique field
    ("sku=A1", {"Apple"}),
    ("sku=null", {"Cherry", "Eggplant", "fig"}),
    ("sku__startswith=B", {"banana"}),
    # list fields: member match
    ("tags=red", {"Apple", "Cherry"}),
    ("tags=fruit", {"Apple", "banana", "Cherry"}),
    ("tags=fruit&tags=red", {"Apple", "Cherry"}),  # every condition holds
    ("tags__ne=red", {"banana", "date", "Eggplant", "fig"}),
    ("tags__in=veg,small", {"Cherry", "Eggplant"}),
    ("tags__nin=fruit,veg", {"date", "fig"}),
    ("tags__contains=ru", {"Apple", "banana", "Cherry"}),
    ("tags__startswith=s", {"Cherry"}),
    ("tags__exists=true", ALL),
    ("sizes=2", {"Apple", "date"}),
    ("sizes__in=3,10", {"Cherry", "Eggplant"}),
    ("sizes__nin=2", {"banana", "Cherry", "Eggplant", "fig"}),
    ("sizes__ne=2", {"banana", "Cherry", "Eggplant", "fig"}),
    # nested paths (a missing parent is a missing value)
    ("address.city=Paris", {"Apple", "date"}),
    ("address.city__ne=Paris", {"banana", "Cherry", "Eggplant", "fig"}),
    ("address.city__in=Lyon,paris", {"banana", "Eggplant"}),
    ("address.city__gt=M", {"Apple", "date", "Eggplant"}),
    ("address.city__startswith=P", {"Apple", "date"}),
    ("address.city__contains=ari", {"Apple", "date", "Eggplant"}),
    ("address.zip=null", {"banana", "Cherry", "date", "fig"}),
    ("address.zip__exists=true", {"Apple", "Eggplant"}),
    ("address.city__exists=false", {"Cherry", "fig"}),
    # combinations and repeated parameters
    ("active=true&price__gt=1", {"Apple", "Cherry", "date"}),
    ("qty__gt=0&qty__gt=6", {"Apple", "date"}),
    ("price__gte=1&price__lte=2.5", {"Apple", "date", "Eggplant"}),
    ("name=Apple&name=banana", set()),
    ("name__in=Apple&name__in=banana", {"Apple", "banana"}),
    ("name__nin=Apple&name__nin=banana,Cherry", {"date", "Eggplant", "fig"}),
    ("tags=fruit&color__ne=red&note=null", {"banana"}),
    ("address.city=Paris&sizes=2&added__lt=2024-01-01", {"date"}),
]


def test_filters(catalog):
    """Every row of FILTERS, on one server per store (a server per row would be slow)."""
    client, _ = catalog
    wrong = []
    for query, expected in FILTERS:
        found = names(client, query)
        if found != [n for n in ORDER if n in expected]:  # default order: by id, i.e. creation
            wrong.append((query, found, sorted(expected)))
    assert wrong == []


def test_filters_by_id(catalog):
    client, ids = catalog
    assert names(client, f"id={ids['Cherry']}") == ["Cherry"]
    assert names(client, f"id__in={ids['fig']},{ids['Apple']}") == ["Apple", "fig"]
    assert names(client, f"id__nin={ids['fig']},{ids['Apple']}") == ["banana", "Cherry", "date", "Eggplant"]
    assert names(client, f"id__ne={ids['Apple']}") == ORDER[1:]
    assert names(client, f"id__gt={ids['Cherry']}") == ["date", "Eggplant", "fig"]
    assert names(client, f"id__lte={ids['banana']}") == ["Apple", "banana"]
    assert names(client, "id=" + "0" * 24) == []


def test_datetimes_come_back_as_the_same_instants(catalog):
    client, ids = catalog
    seen = {n: client.get(f"/item/{ids[n]}").json()["seen"] for n in ("Apple", "banana", "date")}
    parsed = {n: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")) for n, v in seen.items()}
    utc = datetime.timezone.utc
    assert parsed["Apple"] == datetime.datetime(2024, 1, 10, 8, 0, tzinfo=utc)
    assert parsed["banana"] == datetime.datetime(2024, 1, 10, 8, 0, 0, 500000, tzinfo=utc)
    assert parsed["date"] == datetime.datetime(2024, 1, 10, 7, 0, tzinfo=utc)


# -- sort ----------------------------------------------------------------------------------------


SORTS = [
    ("sort=name", ["Apple", "Cherry", "Eggplant", "banana", "date", "fig"]),
    ("sort=-name", ["fig", "date", "banana", "Eggplant", "Cherry", "Apple"]),
    ("sort=price", ["fig", "banana", "Apple", "Eggplant", "date", "Cherry"]),  # tie Apple/Eggplant by id
    ("sort=-price", ["Cherry", "date", "Eggplant", "Apple", "banana", "fig"]),  # ties by id, the last key's way
    ("sort=-active,price", ["fig", "Apple", "date", "Cherry", "banana", "Eggplant"]),
    ("sort=color,-qty", ["banana", "Eggplant", "date", "Apple", "Cherry", "fig"]),
    ("sort=note", ["banana", "fig", "date", "Cherry", "Apple", "Eggplant"]),  # nulls first
    ("sort=-note", ["Eggplant", "Apple", "Cherry", "date", "fig", "banana"]),  # nulls last
    ("sort=added,-name", ["fig", "Cherry", "date", "Eggplant", "Apple", "banana"]),
    ("sort=seen", ["Cherry", "fig", "date", "Apple", "banana", "Eggplant"]),
    ("sort=address.city", ["Cherry", "fig", "banana", "Apple", "date", "Eggplant"]),
    ("sort=-address.city,name", ["Eggplant", "Apple", "date", "banana", "Cherry", "fig"]),
    ("sort=id", ORDER),
    ("sort=-id", ORDER[::-1]),
    ("sort=qty", ["Eggplant", "banana", "fig", "Cherry", "date", "Apple"]),
    ("sort=sku", ["Cherry", "Eggplant", "fig", "Apple", "banana", "date"]),
    ("sort=name%2C%20-price", ["Apple", "Cherry", "Eggplant", "banana", "date", "fig"]),
]


def test_sort(catalog):
    client, _ = catalog
    wrong = [(query, found, expected) for query, expected in SORTS if (found := names(client, query)) != expected]
    assert wrong == []


def test_sort_with_a_filter(catalog):
    client, _ = catalog
    assert names(client, "tags=fruit&qty__gte=5&sort=-price") == ["Cherry", "Apple"]


def test_sort_is_stable_across_pages(store_url):
    with served(store_url) as client:
        response = client.post("/item", json=[{"name": f"n{i:02d}", "price": float(i % 3)} for i in range(30)])
        assert response.code == 201
        ids = response.headers["X-Created-Id"].split(",")
        seen: list[str] = []
        for page in (1, 2, 3, 4):
            body = client.get(f"/item?sort=price&per_page=8&page={page}").json()
            seen += [item["id"] for item in body["items"]]
        expected = sorted(ids, key=lambda i: (ids.index(i) % 3, i))
        assert seen == expected


# -- projection ------------------------------------------------------------------------------------


def test_projection(catalog):
    client, ids = catalog
    body = client.get("/item?fields=name,price&sort=name&per_page=2").json()
    assert body["items"] == [{"id": ids["Apple"], "name": "Apple", "price": 1.5},
                             {"id": ids["Cherry"], "name": "Cherry", "price": 3.0}]
    items = client.get("/item?fields=address.city&per_page=100").json()["items"]
    assert items[0] == {"id": ids["Apple"], "address": {"city": "Paris"}}
    assert items[2] == {"id": ids["Cherry"]}  # no address: nothing to show but the id
    items = client.get("/item?fields=id").json()["items"]
    assert items == [{"id": ids[n]} for n in ORDER]
    items = client.get("/item?fields=tags,address&name=Apple").json()["items"]
    assert items == [{"id": ids["Apple"], "tags": ["fruit", "red"], "address": {"city": "Paris", "zip": "75001"}}]
    items = client.get("/item?fields=note&note=null").json()["items"]
    assert items == [{"id": ids["banana"], "note": None}, {"id": ids["fig"], "note": None}]
    # repeated keys, as generated clients send arrays, mean the comma-separated list
    repeated = client.get("/item?fields=name&fields=price&sort=price&sort=-name&per_page=3").json()
    assert repeated == client.get("/item?fields=name,price&sort=price,-name&per_page=3").json()
    assert [item["name"] for item in repeated["items"]] == ["fig", "banana", "Eggplant"]  # fig: no price


# -- page / per_page ------------------------------------------------------------------------------


def test_pages_and_links(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": f"n{i:02d}", "qty": i} for i in range(25)])
        first = client.get("/item")
        body = first.json()
        assert (body["total"], body["page"], body["per_page"], len(body["items"])) == (25, 1, 20, 20)
        assert links(first).keys() == {"first", "next", "last"}
        response = client.get("/item?per_page=10&page=2&qty__gte=0&sort=-qty")
        body = response.json()
        assert [i["qty"] for i in body["items"]] == list(range(14, 4, -1))
        assert (body["total"], body["page"], body["per_page"]) == (25, 2, 10)
        rels = links(response)
        assert rels.keys() == {"first", "prev", "next", "last"}
        for rel, page in (("first", "1"), ("prev", "1"), ("next", "3"), ("last", "3")):
            url = urlsplit(rels[rel])
            assert url.path == "/item"
            params = parse_qs(url.query)
            assert params["page"] == [page]
            assert params["per_page"] == ["10"] and params["qty__gte"] == ["0"] and params["sort"] == ["-qty"]
        last = client.get(rels["last"])
        assert [i["qty"] for i in last.json()["items"]] == [4, 3, 2, 1, 0]
        assert "next" not in links(last)


def test_following_next_links_visits_everything_once(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": f"n{i:02d}", "price": float(i % 4)} for i in range(23)])
        url, seen = "/item?sort=-price&per_page=5", []
        while url:
            response = client.get(url)
            assert response.code == 200
            seen += [i["name"] for i in response.json()["items"]]
            url = links(response).get("next")
        assert len(seen) == 23 and len(set(seen)) == 23
        assert seen == names(client, "sort=-price")


def test_a_page_past_the_end_is_empty(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": "a"}, {"name": "b"}])
        response = client.get("/item?page=5")
        assert response.code == 200
        body = response.json()
        assert (body["items"], body["total"], body["page"]) == ([], 2, 5)
        assert "next" not in links(response)
        empty = client.get("/item")
        assert empty.code == 200 and client.get("/item?name=zzz&page=3").json()["items"] == []


def test_per_page_is_capped_at_100(store_url):
    with served(store_url) as client:
        assert client.post("/item", json=[{"name": f"n{i:03d}"} for i in range(120)]).code == 201
        body = client.get("/item?per_page=1000").json()
        assert (len(body["items"]), body["per_page"], body["total"]) == (100, 100, 120)
        body = client.get("/item?per_page=100&page=2").json()
        assert len(body["items"]) == 20


def test_pagination_is_configurable_per_resource(store_url):
    with served(store_url, per_page=3, max_per_page=4) as client:
        client.post("/item", json=[{"name": f"n{i}"} for i in range(10)])
        body = client.get("/item").json()
        assert (len(body["items"]), body["per_page"]) == (3, 3)
        body = client.get("/item?per_page=50").json()
        assert (len(body["items"]), body["per_page"]) == (4, 4)


def test_pages_below_one_are_400(store_url):
    with served(store_url) as client:
        for query in ("page=0", "page=-1", "per_page=0", "per_page=-10", "page=x", "per_page=1.5"):
            response = client.get(f"/item?{query}")
            assert response.code == 400, query
            assert response.json()["errors"][0]["loc"] == ["query", query.split("=")[0]]


# -- keyset pagination -----------------------------------------------------------------------------


def walk(client, url: str) -> tuple[list[dict], int]:
    """Follow ``next`` links from ``url``; returns (every item, number of pages)."""
    items, pages = [], 0
    while url:
        response = client.get(url)
        assert response.code == 200, response.text
        body = response.json()
        assert body["total"] is None  # keyset pages are not counted
        items += body["items"]
        pages += 1
        rels = links(response)
        assert "first" in rels and parse_qs(urlsplit(rels["first"]).query, keep_blank_values=True)["after"] == [""]
        url = rels.get("next")
        assert pages < 100
    return items, pages


def python_order(docs, keys):
    """The contract's order: each key with nulls lowest, ties broken by id in the direction of
    the last key (so one index serves both directions)."""
    import functools

    def compare(a, b):
        for key in keys:
            desc = key.startswith("-")
            path = key.lstrip("-")
            x, y = get(a, path), get(b, path)
            if x == y:
                continue
            if x is None:
                result = -1
            elif y is None:
                result = 1
            else:
                result = -1 if x < y else 1
            return -result if desc else result
        by_id = -1 if a["id"] < b["id"] else (1 if a["id"] > b["id"] else 0)
        return -by_id if keys and keys[-1].startswith("-") else by_id

    return sorted(docs, key=functools.cmp_to_key(compare))


def get(doc, path):
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


@pytest.mark.parametrize(
    "sort",
    ["", "sort=-id", "sort=note", "sort=-note", "sort=price,-qty", "sort=-price,note", "sort=note,-price,qty",
     "sort=address.city", "sort=-active,seen"],
)
def test_keyset_pages_visit_every_document_once_in_order(store_url, sort):
    rows = []
    for i in range(37):
        rows.append({
            "name": f"n{i:02d}",
            "price": float(i % 3),
            "qty": i % 4,
            "active": i % 2 == 0,
            "note": [None, "a", "b"][i % 3] if i % 5 else None,
            "seen": None if i % 4 == 0 else f"2024-01-0{1 + i % 3}T00:00:0{i % 2}.{i % 7}Z",
            "address": None if i % 6 == 0 else {"city": ["Lyon", "Paris"][i % 2]},
        })
    with served(store_url) as client:
        for chunk in (rows[:20], rows[20:]):
            assert client.post("/item", json=chunk).code == 201
        everything = client.get(f"/item?per_page=100&{sort}").json()["items"]
        keys = parse_qs(sort)["sort"][0].split(",") if sort else []
        assert [d["id"] for d in everything] == [d["id"] for d in python_order(everything, keys)]
        items, pages = walk(client, f"/item?per_page=4&after=&{sort}")
        assert [d["id"] for d in items] == [d["id"] for d in everything]
        assert pages == 10


def test_keyset_with_a_filter_and_projection(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": f"n{i:02d}", "qty": i % 5} for i in range(30)])
        items, _ = walk(client, "/item?qty__gte=3&sort=-qty&fields=qty&per_page=5&after=")
        assert len(items) == 12
        assert all(set(item) == {"id", "qty"} for item in items)
        assert [i["qty"] for i in items] == [4] * 6 + [3] * 6


def test_keyset_on_an_empty_or_exact_collection(store_url):
    with served(store_url) as client:
        assert walk(client, "/item?after=")[0] == []
        client.post("/item", json=[{"name": "a"}, {"name": "b"}])
        items, pages = walk(client, "/item?per_page=2&after=")
        assert [i["name"] for i in items] == ["a", "b"] and pages == 1


def test_keyset_sees_documents_added_after_the_cursor(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": f"n{i}"} for i in range(4)])
        response = client.get("/item?per_page=2&after=")
        client.post("/item", json={"name": "late"})
        client.delete(f"/item/{response.json()['items'][0]['id']}")  # deleting what was seen changes nothing
        rest, _ = walk(client, links(response)["next"])
        assert [i["name"] for i in rest] == ["n2", "n3", "late"]


def test_bad_cursors_are_400(store_url):
    with served(store_url) as client:
        client.post("/item", json=[{"name": f"n{i}"} for i in range(5)])
        next_url = links(client.get("/item?sort=name&per_page=2&after="))["next"]
        cursor = parse_qs(urlsplit(next_url).query)["after"][0]
        assert client.get(f"/item?sort=name&per_page=2&after={cursor}").code == 200
        for query in (f"sort=-name&after={cursor}", f"after={cursor}", f"sort=price&after={cursor}",
                      "after=garbage", "after=%7B%7D", f"sort=name&after={cursor[:-3]}", f"sort=name&page=2&after={cursor}",
                      f"sort=name&after={cursor}&after={cursor}"):
            response = client.get(f"/item?{query}")
            assert response.code == 400, (query, response.text)
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json()["errors"][0]["loc"] == ["query", "after"]


# -- bad queries: 400 naming the parameter, never a 500 ----------------------------------------------


BAD = [
    ("nope=1", "nope"),
    ("name__like=x", "name__like"),
    ("name__regex=.*", "name__regex"),
    ("name[$ne]=x", "name[$ne]"),
    ("name__$ne=x", "name__$ne"),
    ("$where=1", "$where"),
    ("address=Paris", "address"),
    ("address.nope=1", "address.nope"),
    ("qty=abc", "qty"),
    ("qty=1.5", "qty"),
    ("qty=99999999999999999999", "qty"),
    ("qty__in=1,x", "qty__in"),
    ("price=cheap", "price"),
    ("price=nan", "price"),
    ("price__gt=inf", "price__gt"),
    ("active=maybe", "active"),
    ("added=2024-02-30", "added"),
    ("seen__gt=tomorrow", "seen__gt"),
    ("color=purple", "color"),
    ("sizes=x", "sizes"),
    ("note__exists=perhaps", "note__exists"),
    ("qty__contains=1", "qty__contains"),
    ("tags__gt=a", "tags__gt"),
    ("id=123", "id"),
    ("id__in=" + "0" * 24 + ",zz", "id__in"),
    ("sort=nope", "sort"),
    ("sort=tags", "sort"),
    ("sort=name&sort=tags", "sort"),  # repeated keys join the list; each key is still checked
    ("fields=nope", "fields"),
    ("page=0", "page"),
    ("per_page=0", "per_page"),
    ("page=99999999999999999999999", "page"),
]


def test_bad_queries_are_400_naming_the_parameter(store_url):
    with served(store_url) as client:
        client.post("/item", json={"name": "x"})
        for query, parameter in BAD:
            response = client.get(f"/item?{query}")
            assert response.code == 400, (query, response.text)
            assert response.headers["Content-Type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == 400
            assert body["errors"][0]["loc"] == ["query", parameter], query
            assert parameter in body["detail"]
