"""Field roles: ReadOnly, WriteOnly, Field(exclude=True) and @computed_field, on every route."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, computed_field

from bzzlite import App, ConfigurationError, ReadOnly, Registry, WriteOnly
from bzzlite.documents.conversion import as_json, without_read_only
from bzzlite.feeds.testing import EventStream
from bzzlite.stores.base import Record
from bzzlite.testing import serve


class Profile(BaseModel):
    bio: str = ""


def accounts(store_url: str) -> App:
    registry = Registry()

    @registry.resource
    class Account(BaseModel):
        name: str
        password_hash: Annotated[str, WriteOnly]
        pin: str = Field(default="0000", exclude=True)
        karma: Annotated[int, ReadOnly] = 0
        verified: bool = Field(default=False, json_schema_extra={"readOnly": True})
        profile: Profile | None = None

        @computed_field  # type: ignore[prop-decorator]
        @property
        def display(self) -> str:
            return self.name.title()

    @registry.on("pre_create_instance", sender=Account)
    def starting_karma(sender: Any, arguments: dict[str, Any], handler: Any) -> None:
        arguments["data"]["karma"] = 10  # the server sets read-only fields

    @registry.action(Account, "upvote")
    async def upvote(handler: Any, account: Account) -> Account:
        return await handler.documents(Account).patch(account.id, {"karma": account.karma + 1})  # type: ignore[attr-defined]

    return App(registry, db=store_url)


SECRET, PIN = "s3cret-hash", "4321"


def no_secret(value: Any) -> None:
    text = json.dumps(value)
    assert SECRET not in text and "password_hash" not in text and PIN not in text and '"pin"' not in text, text


def test_field_roles_on_every_route(store_url: str) -> None:
    app = accounts(store_url)
    with serve(app) as client, EventStream(client, "/account") as feed:
        feed.wait_ready()
        created = client.post("/account", json={"name": "ann lee", "password_hash": SECRET, "pin": PIN,
                                                "karma": 999, "verified": True, "display": "X"})
        assert created.code == 201, created.text
        body = created.json()
        no_secret(body)
        assert (body["karma"], body["verified"], body["display"]) == (10, False, "Ann Lee")
        url = f"/account/{body['id']}"
        for response in (client.get(url), client.get("/account"), client.get("/account?fields=name"),
                         client.patch(url, json={"karma": 5, "name": "ann b"}),
                         client.put(url, json={**body, "name": "ann c", "password_hash": SECRET, "karma": 0}),
                         client.post(f"{url}/upvote"),
                         client.post("/account", json=[{"name": "bo", "password_hash": SECRET}]),
                         client.post("/account", data={"name": "cy", "password_hash": SECRET, "karma": "7"})):
            assert response.code in (200, 201), response.text
            no_secret(response.json())
        current = client.get(url).json()
        assert (current["name"], current["karma"], current["display"]) == ("ann c", 11, "Ann C")  # PUT kept karma
        assert client.get("/account?password_hash=" + SECRET).code == 400  # no oracle by filter
        assert client.get("/account?sort=password_hash").code == 400
        assert client.get("/account?fields=password_hash").code == 400
        assert client.get(f"{url}/password_hash").code == 404
        events = [feed.next() for _ in range(6)]  # every write above, none missing: no secret in any
        assert [e.type if e is not None else None for e in events] == [
            "created", "updated", "updated", "updated", "created", "created"]
        assert all(e is not None and e.data["doc"]["id"] for e in events)
        no_secret([e.data for e in events if e is not None])
        document = client.get("/openapi.json").json()

    async def stored() -> None:  # the app's own access sees what was stored
        account = (await app.documents(app.registry.resources["/account"].model).find({"name": "ann c"})).items[0]
        assert account.password_hash == SECRET  # type: ignore[attr-defined]
        assert account.pin == "0000"  # type: ignore[attr-defined] # the PUT replaced it: write-only fields too
        await app.shutdown()

    import asyncio

    asyncio.run(stored())
    schemas = document["components"]["schemas"]
    request, response = schemas["AccountRequest"], schemas["AccountDocument"]
    assert request["properties"]["password_hash"]["writeOnly"] is True
    assert request["properties"]["karma"]["readOnly"] is True and "karma" not in request.get("required", [])
    assert "password_hash" not in response["properties"] and "pin" not in response["properties"]
    assert response["properties"]["display"]["readOnly"] is True and "display" in response["required"]
    assert "password_hash" not in json.dumps(schemas["AccountListItem"])
    params = {p["name"] for p in document["paths"]["/account"]["get"]["parameters"]}
    assert "password_hash" not in params and "name" in params


def test_roles_are_top_level_and_exclusive() -> None:
    registry = Registry()

    class Inner(BaseModel):
        secret: Annotated[str, WriteOnly] = ""

    class Outer(BaseModel):
        inner: Inner

    with pytest.raises(ConfigurationError, match="top-level fields only"):
        registry.resource(Outer)

    class Both(BaseModel):
        x: Annotated[str, ReadOnly, WriteOnly] = ""

    with pytest.raises(ConfigurationError, match="not both"):
        registry.resource(Both)


def test_no_route_of_the_table_sends_a_write_only_field(store_url: str) -> None:
    """Every route of the app (from its route table, so a new kind is covered), every method."""
    import re

    app = accounts(store_url)
    with serve(app) as client:
        account = client.post("/account", json={"name": "ann", "password_hash": SECRET, "pin": PIN,
                                                "profile": {"bio": "hi"}}).json()
        urls = set()
        for route in app.routes:
            if route.kind == "nested":
                from bzzlite.models.nested import routes as nested_routes

                urls |= {f"/account/{account['id']}/{n.template}" for n in nested_routes(route.kwargs["tree"])}
            elif route.kind not in ("docs", "mock"):
                urls.add(route.template)
        urls = {re.sub(r"\{[^}]+\}", account["id"], u) for u in urls}
        seen = 0
        for url in sorted(urls):
            for method in ("GET", "POST", "PUT", "PATCH"):
                body = {"name": "ann", "password_hash": SECRET, "bio": "x"} if method != "GET" else None
                response = client.request(method, url, json=body)
                if response.body:
                    seen += 1
                    assert SECRET not in response.text and PIN not in response.text, (method, url, response.text)
        assert seen >= 12, seen


def test_routes_inside_a_read_only_field_are_listed_as_served_get_only(sqlite_url: str) -> None:
    registry = Registry()

    @registry.resource
    class Badge(BaseModel):
        shown: Profile | None = None
        earned: Annotated[Profile | None, ReadOnly] = None
        history: Annotated[list[Profile], ReadOnly] = []

    app = App(registry, db=sqlite_url)
    table = {template: methods for methods, template, _ in app.route_table()}
    assert table["/badge/{id}/earned"] == "GET"  # was GET,PUT,PATCH,DELETE, each write a 405
    assert table["/badge/{id}/history"] == table["/badge/{id}/history/{history_index}"] == "GET"
    assert table["/badge/{id}/shown"] == "GET,PUT,PATCH,DELETE"
    with serve(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert set(paths["/badge/{id}/earned"]) - {"parameters"} == {"get"}
        assert set(paths["/badge/{id}/history"]) - {"parameters"} == {"get"}
        badge = client.post("/badge", json={}).json()
        refused = client.put(f"/badge/{badge['id']}/earned", json={"bio": "x"})
        assert refused.code == 405 and refused.headers["Allow"] == "GET"  # what the listing now says


# -- the two functions every route goes through (bzzlite/documents/conversion.py) ---------------


def test_a_body_loses_exactly_the_fields_a_client_may_not_set() -> None:
    registry = Registry()

    class Note(BaseModel):  # read-only fields, no computed one
        text: str
        karma: Annotated[int, ReadOnly] = 0

    class Plain(BaseModel):
        text: str

    note, plain = registry.add_resource(Note), registry.add_resource(Plain)
    assert without_read_only(note, {"text": "t", "karma": 99, "id": "x"}) == {"text": "t", "id": "x"}
    assert without_read_only(note, ["not", "an", "object"]) == ["not", "an", "object"]  # refused later, as it is
    body = {"text": "t", "karma": 99}
    assert without_read_only(plain, body) is body


def test_computed_fields_are_served_as_json_and_one_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()

    class Line(BaseModel):
        price: Decimal
        quantity: int

        @computed_field  # type: ignore[prop-decorator]
        @property
        def total(self) -> Decimal:
            if self.quantity < 0:
                raise ValueError("no negative quantities")
            return self.price * self.quantity

    spec = registry.add_resource(Line)
    served = as_json(spec, Record("a" * 24, 1, {"price": "1.25", "quantity": 2}))
    assert served == {"id": "a" * 24, "price": "1.25", "quantity": 2, "total": "2.50"}  # JSON, as the feeds send it
    with caplog.at_level(logging.ERROR, logger="bzzlite"):
        broken = as_json(spec, Record("b" * 24, 1, {"price": "1.25", "quantity": -1}))
    assert broken == {"id": "b" * 24, "price": "1.25", "quantity": -1}  # the document is still served
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("bzzlite", f"a computed field of Line failed for {'b' * 24}")]
