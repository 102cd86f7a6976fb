"""The OpenAPI 3.1 document: valid for a standard validator, and saying what the routes do."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from bzzlite import App, Registry, Unique
from bzzlite.auth import Auth, AuthProvider
from bzzlite.openapi import build, build_document
from bzzlite.testing import serve

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s" * 40


class Color(str, Enum):
    red = "red"
    blue = "blue"


class Address(BaseModel):
    city: str
    zip: str | None = None


def registry() -> Registry:
    reg = Registry()

    @reg.resource
    class TodoItem(BaseModel):
        """Something to do."""

        title: str = Field(min_length=1, max_length=200)
        done: bool = False
        due: datetime | None = None
        tags: list[str] = []
        color: Color = Color.red
        address: Address | None = None
        slug: Annotated[str, Unique] | None = None
        count: int = 0

    @reg.resource(name="people", prefix="/api", per_page=5, max_per_page=50)
    class Person(BaseModel):
        name: str

    reg.mock([
        ("GET", "/much/api", {"body": "much api", "headers": {"X-Wow": "such"}}),
        ("POST", "/much/api", {"body": {"ok": True}, "status": 201, "cookies": {"c": "v"}}),
        ("*", r"/such/.*", {"body": "regex"}),
        ("GET", "/dynamic", {"body": lambda request: "x"}),
    ])
    return reg


@pytest.fixture
def app(sqlite_url: str) -> App:
    return App(registry(), db=sqlite_url, title="Todo API", version="2.1.0", servers=["https://api.example.com"])


@pytest.fixture
def doc(app: App) -> dict[str, Any]:
    return build_document(app)


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = doc["components"][kind][name]
    return node


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator for a schema of the document (its $refs resolve inside it)."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)  # raises on any violation of the OpenAPI 3.1 specification
    assert doc["openapi"] == "3.1.0"
    assert_references_resolve(doc)


def assert_references_resolve(doc: dict[str, Any]) -> None:
    """Every ``$ref`` names a component (the validator does not check it)."""
    refs = set(re.findall(r'"\$ref": "#/components/(\w+)/([^"]+)"', json.dumps(doc)))
    assert refs
    assert not [f"{kind}/{name}" for kind, name in refs if name not in doc["components"].get(kind, {})]


def test_title_version_and_servers_come_from_the_app(doc: dict[str, Any], sqlite_url: str) -> None:
    assert doc["info"] == {"title": "Todo API", "version": "2.1.0"}
    assert doc["servers"] == [{"url": "https://api.example.com"}]
    plain = build_document(App(Registry(), db=sqlite_url))
    assert plain["info"] == {"title": "bzzlite API", "version": "0.1.0"}
    assert "servers" not in plain


def test_every_resource_operation_is_documented(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert set(paths["/todo_item"]) == {"get", "post"}
    assert set(paths["/todo_item/{id}"]) == {"parameters", "get", "put", "patch", "delete"}
    assert set(paths["/api/people"]) == {"get", "post"}
    ids = {op["operationId"] for item in paths.values() for method, op in item.items() if method != "parameters"
           and "operationId" in op}
    assert {"list_todo_item", "create_todo_item", "get_todo_item", "replace_todo_item", "update_todo_item",
            "delete_todo_item", "list_api_people", "create_api_people", "health"} <= ids
    (id_param,) = paths["/todo_item/{id}"]["parameters"]
    assert id_param["in"] == "path" and id_param["required"] is True
    assert id_param["schema"]["pattern"] == "^[0-9a-f]{24}$"
    assert [t["name"] for t in doc["tags"]] == ["todo_item", "people"]
    assert doc["tags"][0]["description"] == "Something to do."


def test_request_and_response_schemas_come_from_the_model(doc: dict[str, Any]) -> None:
    post = doc["paths"]["/todo_item"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    request = resolve(doc, body[0])
    assert body[1]["type"] == "array" and body[1]["minItems"] == 1
    assert request["additionalProperties"] is False
    assert request["required"] == ["title"]
    assert request["properties"]["title"]["maxLength"] == 200
    assert request["properties"]["id"]["type"] == "string"  # accepted and ignored
    address = resolve(doc, request["properties"]["address"]["anyOf"][0])
    assert address["additionalProperties"] is False  # unknown keys refused at every depth

    created = post["responses"]["201"]
    document = resolve(doc, created["content"]["application/json"]["schema"]["oneOf"][0])
    assert list(document["properties"])[0] == "id"
    assert set(document["required"]) == {"id", "title", "done", "due", "tags", "color", "address", "slug", "count"}
    assert resolve(doc, created["headers"]["X-Created-Id"])["required"] is True
    assert created["links"]["get_todo_item"]["parameters"] == {"id": "$response.body#/id"}

    # form fields for flat models only (TodoItem has a nested address; Person is flat): documented on
    # PUT and named on POST, whose JSON body (an object or an array) generators cannot mix with a form
    assert set(post["requestBody"]["content"]) == {"application/json"}
    assert set(doc["paths"]["/todo_item/{id}"]["put"]["requestBody"]["content"]) == {"application/json"}
    people = doc["paths"]["/api/people"]["post"]
    assert set(people["requestBody"]["content"]) == {"application/json"}
    assert "`PersonForm`" in people["description"]
    people_put = doc["paths"]["/api/people/{id}"]["put"]["requestBody"]["content"]
    assert set(people_put) == {"application/json", "application/x-www-form-urlencoded"}
    patch = doc["paths"]["/todo_item/{id}"]["patch"]["requestBody"]["content"]
    assert set(patch) == {"application/json", "application/merge-patch+json"}
    merge = resolve(doc, patch["application/json"]["schema"])
    assert "required" not in merge
    assert merge["properties"]["title"]["type"] == "string"  # required field: null is a 422
    assert {"type": "null"} in merge["properties"]["done"]["anyOf"]  # null returns it to its default


def test_request_schemas_refuse_what_no_store_keeps(doc: dict[str, Any]) -> None:
    request = resolve(doc, doc["paths"]["/todo_item"]["post"]["requestBody"]["content"]["application/json"]
                      ["schema"]["oneOf"][0])
    check = validator(doc, request)
    assert check.is_valid({"title": "ok", "count": 2**63 - 1})
    assert not check.is_valid({"title": "ok", "count": 2**63})
    assert not check.is_valid({"title": "nul\x00"})
    assert not check.is_valid({"title": "ok", "unknown": 1})
    assert check.is_valid({"id": "5f0c6b2e9d1a4c3b2a190807", "title": "ok"})


def test_list_envelope_pagination_and_query_parameters(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/todo_item"]["get"]
    page = resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert page["required"] == ["items", "total", "page", "per_page"]
    item = resolve(doc, page["properties"]["items"]["items"])
    assert item["required"] == ["id"]  # ?fields= projects
    assert "Link" in op["responses"]["200"]["headers"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"page", "per_page", "sort", "fields", "after"} <= set(params)
    assert params["per_page"]["schema"]["default"] == 20
    people = {p["name"]: p for p in doc["paths"]["/api/people"]["get"]["parameters"]}
    assert people["per_page"]["schema"]["default"] == 5
    assert "-due" in params["sort"]["schema"]["items"]["enum"]
    assert "tags" not in params["sort"]["schema"]["items"]["enum"]  # lists do not sort
    assert "explode" not in params["sort"]  # form style, exploded: the default generated clients send
    # one parameter per field and operator that applies to its type
    assert {"title", "title__ne", "title__gt", "title__in", "title__contains", "title__startswith",
            "title__exists"} <= set(params)
    assert "done__contains" not in params and "done__gt" in params
    assert "tags__gt" not in params and "tags__contains" in params
    assert "address.city__startswith" in params
    assert {"id", "id__in", "id__nin", "id__gt"} <= set(params)
    assert params["count__gte"]["schema"] == {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    assert params["due__in"]["schema"]["type"] == "array" and "explode" not in params["due__in"]
    assert params["color"]["schema"]["enum"] == ["red", "blue"]
    assert {"const": "null"} in params["due"]["schema"]["anyOf"]  # ?due=null matches null
    assert params["done__exists"]["schema"] == {"type": "boolean"}


def test_etags_and_error_statuses(doc: dict[str, Any]) -> None:
    item = doc["paths"]["/todo_item/{id}"]
    get = item["get"]
    assert get["responses"]["200"]["headers"]["ETag"] == {"$ref": "#/components/headers/ETag"}
    assert "304" in get["responses"]
    assert [p["name"] for p in get["parameters"]] == ["If-None-Match"]
    for method in ("put", "patch", "delete"):
        assert [p["name"] for p in item[method]["parameters"]] == ["If-Match"]
    statuses = {method: sorted(op["responses"]) for method, op in item.items() if method != "parameters"}
    assert statuses == {
        "get": ["200", "304", "403", "404", "503"],  # 403: any pre_* receiver may refuse
        "put": ["200", "400", "403", "404", "409", "412", "413", "415", "422", "503"],
        "patch": ["200", "400", "403", "404", "409", "412", "413", "415", "422", "503"],
        "delete": ["204", "403", "404", "409", "412", "503"],
    }
    collection = doc["paths"]["/todo_item"]
    assert sorted(collection["get"]["responses"]) == ["200", "400", "403", "503"]
    assert sorted(collection["post"]["responses"]) == ["201", "400", "403", "409", "413", "415", "422", "503"]
    bad = doc["components"]["responses"]["UnprocessableContent"]["content"]
    assert resolve(doc, bad["application/problem+json"]["schema"])["required"] == ["type", "title", "status", "detail"]
    assert doc["components"]["responses"]["ServiceUnavailable"]["headers"]["Retry-After"]
    assert "security" not in collection["get"] and "securitySchemes" not in doc["components"]


def test_health_docs_and_mock_routes(doc: dict[str, Any], sqlite_url: str) -> None:
    paths = doc["paths"]
    assert set(paths["/_health"]["get"]["responses"]) == {"200", "503"}
    assert "/openapi.json" in paths and "/docs" in paths
    much = paths["/much/api"]
    assert set(much) == {"get", "post"}
    assert much["get"]["responses"]["200"]["content"]["text/plain"]["example"] == "much api"
    assert much["get"]["responses"]["200"]["headers"]["X-Wow"]["schema"]["const"] == "such"
    assert much["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {"type": "object"}
    assert "Set-Cookie" in much["post"]["responses"]["201"]["headers"]
    assert paths["/dynamic"]["get"]["responses"]["200"]["content"] == {"*/*": {"schema": {}}}
    assert doc["x-bzzlite-mock-patterns"] == [{"method": "*", "url": r"/such/.*", "status": 200}]
    undocumented = build_document(App(registry(), db=sqlite_url, docs=False))
    assert "/openapi.json" not in undocumented["paths"] and "/docs" not in undocumented["paths"]


class FakeProvider(AuthProvider):
    name = "fake"

    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        return {"id": "u1"} if access_token == "good" else None


def test_auth_routes_and_security_when_configured(sqlite_url: str) -> None:
    reg = registry()
    app = App(reg, db=sqlite_url, auth=Auth(SECRET, [FakeProvider()], require={"list": False, "get": False}))
    doc = build_document(app)
    validate(doc)
    assert_references_resolve(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["tokenCookie"] == {**schemes["tokenCookie"], "type": "apiKey", "in": "cookie",
                                      "name": "AUTH_TOKEN"}
    assert schemes["bearerToken"]["scheme"] == "bearer"
    signin = doc["paths"]["/auth/signin/"]["post"]
    assert signin["requestBody"]["content"]["application/json"]["schema"]["properties"]["provider"]["enum"] == ["fake"]
    assert "/auth/signout/" in doc["paths"] and "/auth/me/" in doc["paths"]
    collection = doc["paths"]["/todo_item"]
    assert "security" not in collection["get"] and "401" not in collection["get"]["responses"]
    assert collection["post"]["security"] == [{"tokenCookie": []}, {"bearerToken": []}]
    assert {"401", "403"} <= set(collection["post"]["responses"])


def test_auth_policy_may_describe_itself() -> None:
    class Policy:
        def openapi(self) -> dict[str, Any]:
            return {"paths": {"/login": {"post": {"responses": {"200": {"description": "in"}}}}},
                    "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}}}

        def required(self, spec: Any, operation: str) -> bool:
            return operation == "delete"

    doc = build(registry(), auth=Policy())
    validate(doc)
    assert "/login" in doc["paths"]
    assert doc["paths"]["/todo_item/{id}"]["delete"]["security"] == [{"key": []}]
    assert "security" not in doc["paths"]["/todo_item/{id}"]["put"]


def test_served_document_and_real_responses_match(app: App, doc: dict[str, Any]) -> None:
    with serve(app) as client:
        served = client.get("/openapi.json")
        assert served.code == 200
        assert served.headers["Content-Type"] == "application/json"
        assert served.json() == json.loads(json.dumps(doc))
        created = client.post("/todo_item", json={"title": "doc", "address": {"city": "Paris"}})
        listed = client.get("/todo_item", params={"fields": "title,address.city"})
        missing = client.get("/todo_item/5f0c6b2e9d1a4c3b2a190807")
    post = doc["paths"]["/todo_item"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    validator(doc, post).validate(created.json())
    page = doc["paths"]["/todo_item"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    validator(doc, page).validate(listed.json())
    assert listed.json()["items"][0]["address"] == {"city": "Paris"}
    problem = doc["components"]["responses"]["NotFound"]["content"]["application/problem+json"]["schema"]
    validator(doc, problem).validate(missing.json())


def test_the_command_line_prints_the_same_document() -> None:
    result = subprocess.run([sys.executable, "-m", "bzzlite", "openapi", "examples/todo.py:app"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    validate(printed)
    assert "/todo_item" in printed["paths"]


@pytest.mark.parametrize("module", [*(f"openapi/{p.name}" for p in sorted((ROOT / "bzzlite" / "openapi").glob("*.py"))),
                                    "mocks.py"])
def test_the_generator_imports_no_tornado(module: str) -> None:
    tree = ast.parse((ROOT / "bzzlite" / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith(("tornado", "motor", "pymongo", "sqlite3")) for name in imported)


def test_change_feed_route_is_documented_and_answers_as_documented(app: App, doc: dict[str, Any]) -> None:
    changes = doc["paths"]["/todo_item/_changes"]["get"]
    assert set(changes["responses"]) == {"101", "400", "403", "503"}
    with serve(app) as client:
        plain = client.get("/todo_item/_changes")  # not a WebSocket upgrade
        wrong = client.post("/todo_item/_changes")
    assert plain.code == 400
    assert plain.headers["Content-Type"] == "application/problem+json"
    assert "WebSocket" in plain.json()["detail"]
    assert wrong.code == 405
    assert wrong.headers["Allow"] == "GET"
    assert wrong.headers["Content-Type"] == "application/problem+json"


from odmantic import Model, Reference  # noqa: E402

odm_registry = Registry()


@odm_registry.resource
class Writer(Model):
    name: str


@odm_registry.resource
class Article(Model):
    title: str
    writer: Writer = Reference()


def test_odmantic_reference_is_documented_as_an_id() -> None:
    """Bodies and responses carry a referenced document's id, so the document says so."""
    app = App(registry=odm_registry, db="mongodb://127.0.0.1:9/openapi_only")  # never connected
    schemas = build_document(app)["components"]["schemas"]
    for component in ("ArticleRequest", "ArticleDocument"):
        writer = schemas[component]["properties"]["writer"]
        assert writer["type"] == "string"
        assert writer["pattern"] == "^[0-9a-fA-F]{24}$"


# -- what client generators and /docs make of the document (issue 15) ---------------------------


def shop_doc() -> dict[str, Any]:
    from examples.catalog import make_app

    return build_document(make_app("sqlite:///:memory:"))


@pytest.mark.parametrize("which", ["todo", "shop"])
def test_every_component_has_its_own_title(app: App, doc: dict[str, Any], which: str) -> None:
    """Generators name classes after titles: two components with one title lose a type."""
    document = doc if which == "todo" else shop_doc()
    schemas = document["components"]["schemas"]
    titles = [schema["title"] for schema in schemas.values() if "title" in schema]
    assert len(titles) == len(set(titles)), sorted(titles)
    for name in ("TodoItemRequest", "TodoItemPatch", "TodoItemDocument", "TodoItemListItem", "TodoItemList") \
            if which == "todo" else ("ProductRequest", "ProductPatch", "ProductDocument", "Problem"):
        assert schemas[name]["title"] == name
    assert (shop_doc() if which == "shop" else build_document(app)) == document  # stable: same app, same names


def test_strings_carry_no_pattern_swagger_ui_would_fill_with_garbage(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert "[^\\\\u0000]" not in text  # the NUL rule is a `not`, which sample makers skip
    request = resolve(doc, doc["paths"]["/todo_item"]["post"]["requestBody"]["content"]["application/json"]
                      ["schema"]["oneOf"][0])
    assert request["properties"]["title"]["not"] == {"pattern": "\\u0000"}
    assert "pattern" not in request["properties"]["title"]
    assert validator(doc, request).is_valid({"title": "café ☕"})


def test_request_bodies_say_defaults_in_words_and_require_only_what_has_none(doc: dict[str, Any]) -> None:
    """A ``default`` reads as "always present" to client generators (openapi-typescript makes such a
    field required): true of a document, not of a request, where the server fills it in."""
    schemas = doc["components"]["schemas"]
    request = schemas["TodoItemRequest"]
    assert request["required"] == ["title"]
    assert not [key for key, prop in request["properties"].items() if "default" in prop]
    assert request["properties"]["done"]["description"] == "Default: `false`."
    assert request["properties"]["color"]["description"].endswith("Default: `\"red\"`.")
    assert not [key for key, prop in schemas["Address-Input"]["properties"].items() if "default" in prop]
    assert not [key for key, prop in schemas["PersonForm"]["properties"].items() if "default" in prop]
    assert schemas["TodoItemDocument"]["properties"]["done"]["default"] is False  # responses keep theirs
    assert doc["paths"]["/todo_item"]["post"]["requestBody"]["content"]["application/json"]["examples"][
        "one"]["value"]["done"] is False  # examples still show the default


def test_patch_bodies_have_no_defaults_and_nothing_required() -> None:
    document = shop_doc()
    patch = document["components"]["schemas"]["ProductPatch"]
    assert "required" not in patch
    assert not [key for key, prop in patch["properties"].items() if "default" in prop]
    assert validator(document, patch).is_valid({"price": 5})
    assert not validator(document, patch).is_valid({"price": -1})


def test_examples_are_what_a_person_would_write() -> None:
    from examples.catalog import Product

    document = shop_doc()
    create = document["paths"]["/products"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    one, many = create["one"]["value"], create["many"]["value"]
    assert "id" not in one and one["name"] == "Espresso cup"  # Field(examples=...) first
    assert one["price"] == 9.99 and one["sku"] == "SKU-1001" and one["supplier"] == {"city": "Paris"}
    Product.model_validate(one)
    assert len(many) == 2 and all("id" not in item for item in many)
    assert len({item["sku"] for item in many}) == 2  # a unique field differs: the example does not 409
    item = document["paths"]["/products/{id}"]
    assert item["put"]["requestBody"]["content"]["application/json"]["example"] == one
    patch = item["patch"]["requestBody"]["content"]["application/json"]["example"]
    assert len(patch) == 1 and "id" not in patch
    shown = item["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert re.fullmatch("[0-9a-f]{24}", shown["id"]) and shown["stock"] == 0 and shown["name"] == "Espresso cup"
    request = document["components"]["schemas"]["ProductRequest"]
    assert validator(document, request).is_valid(one)


def test_model_examples_win_and_invalid_ones_are_left_out() -> None:
    reg = Registry()

    @reg.resource
    class Book(BaseModel):
        model_config = {"json_schema_extra": {"examples": [{"title": "Dune", "pages": 412, "id": "x"}]}}
        title: str
        pages: int

    @reg.resource
    class Code(BaseModel):
        value: str = Field(pattern="^[A-Z]{3}$")

    document = build(reg)
    book = document["paths"]["/book/{id}"]["put"]["requestBody"]["content"]["application/json"]
    assert book["example"] == {"title": "Dune", "pages": 412}
    code = document["paths"]["/code/{id}"]["put"]["requestBody"]["content"]["application/json"]
    assert "example" not in code  # "value text" does not match the pattern: no wrong example


def test_list_valued_parameters_say_repeat_or_comma(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/todo_item"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    for name in ("sort", "fields", "title__in", "title__nin", "id__in"):
        assert params[name]["schema"]["type"] == "array"
        assert "style" not in params[name] and "explode" not in params[name]  # form, exploded: the default
        assert "repeat" in params[name]["description"].lower() and "comma" in params[name]["description"]
    assert "| `title` | `=` `__ne` `__in` `__nin` `__exists` `__gt`" in op["description"]


def test_every_refusal_a_receiver_or_auth_can_give_is_documented() -> None:
    document = shop_doc()
    for path, item in document["paths"].items():
        if not path.startswith("/products"):
            continue
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "403" in op["responses"], (path, method)
            if method in ("post", "put", "patch"):
                assert {"409", "412", "413", "415", "422", "503"} <= set(op["responses"]) or path == "/products", \
                    (path, method)
            for code, response in op["responses"].items():
                if code >= "400":
                    content = resolve(document, response)["content"]
                    assert resolve(document, content["application/problem+json"]["schema"])["title"] == "Problem"
