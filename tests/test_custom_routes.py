"""Custom routes and actions (bzzlite/routing.py, handlers/custom.py), and examples/shop.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from bzzlite import App, ConfigurationError, HTTPError, Registry, etag_of
from bzzlite.testing import serve

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop.py"


def load_shop() -> Any:
    spec = importlib.util.spec_from_file_location("bzzlite_example_shop", SHOP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def sign_in(client: Any, token: str) -> dict[str, str]:
    response = client.post("/auth/signin/", json={"provider": "local-dev", "access_token": token})
    assert response.code == 200
    return {"Authorization": "Bearer " + response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body  # type: ignore[no-any-return]


def test_the_shop_pays_orders_all_or_nothing(store_url: str) -> None:
    shop = load_shop()
    shop.app.use_store(store_url)
    with serve(shop.app) as client:
        alice, bob = sign_in(client, "alice-local-token"), sign_in(client, "bob-local-token")
        admin = sign_in(client, "admin-local-token")
        pen, ink = client.post("/product", json=[{"sku": "pen", "name": "Pen", "price": "1.50", "stock": 5},
                                                 {"sku": "ink", "name": "Ink", "price": 3, "stock": 1}],
                               headers=admin).json()
        order = client.post("/order", json={"lines": [{"product": pen["id"], "quantity": 2},
                                                      {"product": ink["id"], "quantity": 1}]}, headers=alice).json()
        assert order["buyer"] == "alice" and order["status"] == "open"
        pay = f"/order/{order['id']}/pay"
        problem(client.post(pay, json={"card_last4": "1234"}), 401)
        unknown = problem(client.post(f"/order/{'0' * 24}/pay", json={"card_last4": "1234"}, headers=bob), 404)
        assert problem(client.post(pay, json={"card_last4": "1234"}, headers=bob), 404) == unknown
        errors = problem(client.post(pay, json={"card_last4": "12", "tip": 1}, headers=alice), 422)["errors"]
        assert {tuple(e["loc"]) for e in errors} == {("card_last4",), ("tip",)}
        problem(client.post(pay, body=b"{", headers={**alice, "Content-Type": "application/json"}), 400)

        paid = client.post(pay, json={"card_last4": "1234"}, headers=alice)
        assert paid.code == 200 and paid.headers["ETag"] == '"2"'
        assert (paid.json()["status"], paid.json()["total"]) == ("paid", "6.00")
        read = client.get(f"/order/{order['id']}", headers=alice).json()
        assert list(paid.json()) == list(read) and list(read)[0] == "id"  # id first, as every document answer
        stock = {p["sku"]: p["stock"] for p in client.get("/product").json()["items"]}
        assert stock == {"pen": 3, "ink": 0}
        assert "already paid" in problem(client.post(pay, json={"card_last4": "1234"}, headers=alice), 409)["detail"]

        # too little ink for a second order: nothing changes, not even the pens' stock
        second = client.post("/order", json={"lines": [{"product": pen["id"], "quantity": 1},
                                                       {"product": ink["id"], "quantity": 1}]}, headers=alice).json()
        assert "Only 0 of Ink" in problem(client.post(f"/order/{second['id']}/pay", json={"card_last4": "1234"},
                                                      headers=alice), 409)["detail"]
        stock = {p["sku"]: p["stock"] for p in client.get("/product").json()["items"]}
        assert stock == {"pen": 3, "ink": 0}
        assert client.get(f"/order/{second['id']}", headers=alice).json()["status"] == "open"

        assert client.get("/stats").json() == {"products": 2, "in_stock": 1}
        document = client.get("/openapi.json").json()
    validate(document)
    operation = document["paths"]["/order/{id}/pay"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Payment"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("OrderDocument")
    assert {"401", "404", "409", "412", "422"} <= set(operation["responses"])
    assert document["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Stats"}
    assert "security" not in document["paths"]["/stats"]["get"]


def test_routes_lists_custom_routes_and_actions() -> None:
    run = subprocess.run([sys.executable, "-m", "bzzlite", "routes", str(SHOP) + ":app"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any("POST" in line and "/order/{id}/pay" in line for line in lines), run.stdout
    assert any("GET" in line and "/stats" in line for line in lines), run.stdout


class Note(BaseModel):
    text: str = Field(min_length=1)


class Rename(BaseModel):
    text: str = Field(min_length=1)


def notes_app(store_url: str) -> App:
    registry = Registry()
    registry.resource(Note)

    @registry.action(Note, "rename")
    async def rename(handler: Any, note: Note, body: Rename) -> Note:
        """Rename a note; If-Match makes it conditional."""
        if body.text == "forbidden":
            raise HTTPError(403, "Not that name.")
        return await handler.documents(Note).patch(note.id, {"text": body.text},  # type: ignore[attr-defined]
                                                   if_match=handler.request.headers.get("If-Match"))

    @registry.route("/add/{a}/{b}")
    def add(handler: Any, a: int, b: float) -> dict[str, float]:
        return {"sum": a + b}

    @registry.route("/nothing", methods=["DELETE"])
    async def nothing(handler: Any) -> None:
        return None

    @registry.route("/raw/{name}", methods=["GET"])
    class Raw(tornado.web.RequestHandler):
        def initialize(self, runtime: Any) -> None:
            self.runtime = runtime

        async def get(self, name: str) -> None:  # the bound document API, as docs/beyond-crud.md shows
            notes = await self.runtime.documents(Note, self).count()
            self.write({"hello": name, "resources": len(self.runtime.registry.resources), "notes": notes})

    return App(registry, db=store_url)


def test_actions_and_routes_answer_problems(store_url: str) -> None:
    with serve(notes_app(store_url)) as client:
        note = client.post("/note", json={"text": "a"})
        url = f"/note/{note.json()['id']}/rename"
        problem(client.post(url, json={"text": "forbidden"}), 403)
        problem(client.post(url, json={"text": "b"}, headers={"If-Match": '"7"'}), 412)
        renamed = client.post(url, json={"text": "b"}, headers={"If-Match": note.headers["ETag"]})
        assert (renamed.code, renamed.json()["text"], renamed.headers["ETag"]) == (200, "b", '"2"')
        problem(client.post(url, json={"text": ""}), 422)
        problem(client.post(url, body=b"x=1", headers={"Content-Type": "text/plain"}), 415)
        problem(client.get(url), 405)
        assert client.get(url).headers["Allow"] == "POST"
        problem(client.post("/note/nope/rename", json={"text": "c"}), 404)
        assert client.get("/add/2/0.5").json() == {"sum": 2.5}
        assert problem(client.get("/add/two/1"), 422)["errors"][0]["loc"] == ["path", "a"]
        assert client.delete("/nothing").code == 204
        assert client.get("/raw/bob").json() == {"hello": "bob", "resources": 1, "notes": 1}


def test_declaration_mistakes_name_the_fix() -> None:
    registry = Registry()
    registry.resource(Note)
    with pytest.raises(ConfigurationError, match="path parameter"):
        registry.route("/x/{a}")(lambda handler, b: None)
    with pytest.raises(ConfigurationError, match="needs POST"):
        @registry.route("/y")
        def y(handler: Any, body: Rename) -> None: ...
    with pytest.raises(ConfigurationError, match="declare the model with @resource"):
        registry.action(Rename, "go")
    registry.route("/z", methods=["POST"])(lambda handler: None)
    with pytest.raises(ConfigurationError, match="both answer POST /z"):
        registry.route("/z", methods=["POST", "GET"])(lambda handler: None)
    with pytest.raises(ConfigurationError, match="methods"):
        registry.route("/w", methods=["FETCH"])(lambda handler: None)

    class Plain(tornado.web.RequestHandler):
        def get(self) -> None: ...

    registry.route("/plain")(Plain)
    with pytest.raises(ConfigurationError, match="initialize"):
        App(registry, db="sqlite:///:memory:")


def test_etag_of_is_sent_by_custom_routes_returning_documents(store_url: str) -> None:
    app = notes_app(store_url)

    async def main() -> None:
        note = await app.documents(Note).create({"text": "x"})
        assert etag_of(note) == '"1"'
        await app.shutdown()

    import asyncio

    asyncio.run(main())


def test_answers_holding_documents_are_json_without_write_only_fields(sqlite_url: str) -> None:
    from typing import Annotated

    from bzzlite import WriteOnly

    registry = Registry()

    @registry.resource
    class Account(BaseModel):
        name: str
        password: Annotated[str, WriteOnly]

    class Admin(Account):  # a subclass of a resource's model keeps its hidden fields hidden
        level: int = 1

    @registry.route("/accounts/all", methods=["GET"])
    async def all_accounts(handler: Any) -> Any:
        return (await handler.documents(Account).find()).items

    @registry.route("/accounts/summary", methods=["GET"])
    async def summary(handler: Any) -> Any:
        found = await handler.documents(Account).find()
        admin = Admin(**found.items[0].model_dump())
        return {"first": found.items[0], "admins": (admin,), "count": found.total}

    @registry.route("/accounts/page", methods=["GET"])
    async def page(handler: Any) -> Any:
        return await handler.documents(Account).find()

    with serve(App(registry, db=sqlite_url)) as client:
        created = client.post("/account", json={"name": "ann", "password": "s3cret"}).json()
        assert "password" not in created
        answers = [client.get(path) for path in ("/accounts/all", "/accounts/summary", "/accounts/page")]
        assert [a.code for a in answers] == [200, 200, 200]
        assert all(b"s3cret" not in a.body for a in answers)
        assert answers[0].json() == [created]
        assert list(answers[0].json()[0]) == list(created) == ["id", "name"]  # id first, in lists too
        assert list(answers[1].json()["first"]) == ["id", "name"]
        assert answers[1].json() == {"first": created, "admins": [{"name": "ann", "level": 1}], "count": 1}
        assert answers[2].json() == {"items": [created], "total": 1, "page": 1, "per_page": 20, "next": None}
