"""@resource options: methods=, read_only=, and no misspelled option ever ignored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from bzzlite import App, ConfigurationError, Registry
from bzzlite.testing import serve


class Inner(BaseModel):
    note: str = ""


class Article(BaseModel):
    title: str
    inner: Inner | None = None
    tags: list[Inner] = []


def test_an_unknown_option_names_the_known_ones() -> None:
    registry = Registry()
    with pytest.raises(ConfigurationError, match=r"'per_pgae' \(did you mean 'per_page'\?\).*the options are .*methods"):
        registry.resource(per_pgae=5, methods=["GET"])(Article)
    with pytest.raises(ConfigurationError, match="unknown option"):
        registry.resource(Article, colour="red")
    with pytest.raises(ConfigurationError, match="unknown method"):
        registry.resource(methods=["GET", "FETCH"])(Article)
    with pytest.raises(ConfigurationError, match="takes a list"):
        registry.resource(methods="GET")(Article)
    with pytest.raises(ConfigurationError, match="read_only=True serves GET only"):
        registry.resource(read_only=True, methods=["GET", "POST"])(Article)
    assert registry.resources == {}


def test_options_given_with_the_model_are_applied() -> None:
    registry = Registry()
    spec = registry.add_resource(Article, name="post", read_only=True)
    assert registry.resource(Inner, name="inner_things", per_page=7) is Inner
    assert spec.path == "/post" and spec.methods == ("GET",)
    assert registry.resources["/inner_things"].per_page == 7


def app_with(store_url: str, **options: Any) -> App:
    registry = Registry()
    registry.resource(**options)(Article)
    return App(registry, db=store_url)


def seed(store_url: str) -> str:
    import asyncio

    app = App(_full_registry(), db=store_url)

    async def main() -> str:
        made = await app.documents(Article).create({"title": "a", "inner": {"note": "n"}, "tags": [{"note": "t"}]})
        await app.shutdown()
        return str(made.id)  # type: ignore[attr-defined]

    return asyncio.run(main())


def _full_registry() -> Registry:
    registry = Registry()
    registry.resource(Article)
    return registry


def test_a_read_only_resource_answers_405_to_every_write(store_url: str) -> None:
    id_ = seed(store_url)
    app = app_with(store_url, read_only=True)
    with serve(app) as client:
        item = f"/article/{id_}"
        assert client.get(item).json()["title"] == "a"
        assert client.get("/article").json()["total"] == 1
        assert client.get(f"{item}/inner").json() == {"note": "n"}
        for method, path, body in [("POST", "/article", {"title": "b"}), ("PUT", item, {"title": "b"}),
                                   ("PATCH", item, {"title": "b"}), ("DELETE", item, None),
                                   ("PATCH", f"{item}/inner", {"note": "x"}), ("POST", f"{item}/tags", {"note": "x"}),
                                   ("DELETE", f"{item}/tags/0", None)]:
            response = client.request(method, path, json=body)
            assert response.code == 405, (method, path, response.text)
            assert response.headers["Allow"] == "GET", (method, path)
            assert response.headers["Content-Type"].startswith("application/problem+json")
        assert client.get(item).json()["title"] == "a"
        document = client.get("/openapi.json").json()
    operations = {(path, method) for path, item in document["paths"].items() for method in item
                  if path.startswith("/article") and method != "parameters"}
    assert operations and {method for _, method in operations} == {"get"}, operations
    assert [row for row in app.route_table() if row[1].startswith("/article") and row[0] != "GET"] == []


def test_methods_pick_any_subset(store_url: str) -> None:
    id_ = seed(store_url)
    app = app_with(store_url, methods=["GET", "POST", "DELETE"])
    with serve(app) as client:
        assert client.post("/article", json={"title": "b"}).code == 201
        patch = client.patch(f"/article/{id_}", json={"title": "c"})
        assert (patch.code, patch.headers["Allow"]) == (405, "GET, DELETE")
        assert client.patch(f"/article/{id_}/inner", json={"note": "x"}).code == 405  # nested writes need PATCH
        assert client.delete(f"/article/{id_}").code == 204
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/article"]) >= {"get", "post"} and "patch" not in paths["/article/{id}"]
    assert set(paths["/article/{id}"]) & {"get", "put", "patch", "delete"} == {"get", "delete"}


def lookup_app(store_url: str) -> App:
    from typing import Annotated

    from bzzlite import Unique

    registry = Registry()

    @registry.resource(lookup="username")
    class User(BaseModel):
        username: Annotated[str, Unique]
        age: int = 0
        address: Inner | None = None

    @registry.action(User, "birthday")
    async def birthday(handler: Any, user: User) -> User:
        return await handler.documents(User).patch(user.username, {"age": user.age + 1})

    return App(registry, db=store_url)


def test_a_lookup_field_addresses_items(store_url: str) -> None:
    with serve(lookup_app(store_url)) as client:
        created = client.post("/user", json={"username": "test user", "age": 30})
        assert created.code == 201 and created.headers["Location"] == "/user/test%20user"
        body = created.json()
        assert len(body["id"]) == 24 and body["username"] == "test user"
        item = "/user/test%20user"
        got = client.get(item)
        assert got.json() == body and got.headers["ETag"] == '"1"'
        assert client.get(item, headers={"If-None-Match": '"1"'}).code == 304
        assert client.get(f"/user/{body['id']}").code == 404  # the id is not how items are named now
        assert client.patch(item, json={"age": 31}, headers={"If-Match": '"1"'}).json()["age"] == 31
        assert client.patch(item, json={"age": 32}, headers={"If-Match": '"1"'}).code == 412
        assert client.put(item, json={"username": "test user", "age": 40}).json()["age"] == 40
        assert client.put(f"{item}/address", json={"note": "home"}).code == 200
        assert client.get(f"{item}/address").json() == {"note": "home"}
        assert client.post(f"{item}/birthday").json()["age"] == 41
        assert client.get("/user/nobody").code == 404
        paths = client.get("/openapi.json").json()["paths"]
        parameters = [*paths["/user/{id}"].get("parameters", []), *paths["/user/{id}"]["get"].get("parameters", [])]
        described = [p.get("description", "") for p in parameters if p["name"] == "id"]
        assert described and described[0].startswith("The document's `username`"), parameters
        assert client.delete(item).code == 204
        assert client.get(item).code == 404


def test_a_lookup_field_must_be_unique() -> None:
    registry = Registry()
    with pytest.raises(ConfigurationError, match="must name a unique top-level field"):
        registry.resource(lookup="title")(Article)
