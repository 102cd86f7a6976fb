"""Real clients: the served ``/openapi.json`` of examples/catalog.py, fed to openapi-python-client
and to openapi-typescript + openapi-fetch, drives the app through each generated client; and every
app in examples/ gets both clients, which create, list and get its documents.

The TypeScript toolchain is npm's: ``scripts/ts-client-deps`` installs its pinned versions into a
cache directory (once) and the test type-checks with ``tsc --noEmit`` under default options, then
runs the compiled client with node. Skipped when node/npm or openapi-python-client are missing.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bzzlite.testing import serve
from examples.catalog import make_app
from tests._processes import free_port, http, stop

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    with serve(make_app(f"sqlite:///{tmp_path / 'shop.db'}")) as client:
        yield client


def _document(client: Any, folder: Path) -> Path:
    path = folder / "openapi.json"
    path.write_bytes(client.get("/openapi.json").body)
    return path


def _generate_python_client(document: Path, package: str, folder: Path) -> None:
    """openapi-python-client's package ``package`` in ``folder``, generated without a warning."""
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if generator is None:
        pytest.skip("pip install openapi-python-client (see pyproject's test extras)")
    (folder / "config.yaml").write_text("post_hooks: []\n")
    done = subprocess.run(
        [generator, "generate", "--path", str(document), "--meta", "none",
         "--output-path", str(folder / package), "--config", str(folder / "config.yaml")],
        capture_output=True, text=True, timeout=60, check=False, cwd=folder,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_python_client_generated_without_warnings_drives_the_app(shop: Any, tmp_path: Path) -> None:
    _generate_python_client(_document(shop, tmp_path), "shop_client", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        _drive_python_client(shop.base_url)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "shop_client" or m.startswith("shop_client.")]:
            del sys.modules[name]


def _drive_python_client(base_url: str) -> None:
    models = importlib.import_module("shop_client.models")
    ops = {name: importlib.import_module(f"shop_client.api.products.{name}_products")
           for name in ("create", "list", "get", "update", "delete")}
    client = importlib.import_module("shop_client").Client(base_url=base_url, raise_on_unexpected_status=True)

    def product(name: str, sku: str, price: float) -> Any:
        return models.ProductRequest(name=name, sku=sku, price=price)

    created = ops["create"].sync_detailed(client=client, body=product("Cup", "PY-1", 4.0))
    assert created.status_code == 201 and isinstance(created.parsed, models.ProductDocument)
    assert created.parsed.stock == 0 and created.parsed.active is True
    bulk = ops["create"].sync_detailed(client=client, body=[product("Plate", "PY-2", 9.0), product("Bowl", "PY-3", 6.0)])
    assert bulk.status_code == 201 and [p.sku for p in bulk.parsed] == ["PY-2", "PY-3"]

    listed = ops["list"].sync_detailed(
        client=client, sku_in=["PY-1", "PY-3"], sort=[models.ListProductsSortItem("-price")],
        fields=[models.ListProductsFieldsItem("name"), models.ListProductsFieldsItem("price")],
    )
    assert listed.status_code == 200 and listed.parsed.total == 2
    items = listed.parsed.items
    assert [(i.name, i.price) for i in items] == [("Bowl", 6.0), ("Cup", 4.0)]
    assert isinstance(items[0].stock, importlib.import_module("shop_client.types").Unset)  # projected out

    cup = created.parsed.id
    got = ops["get"].sync_detailed(cup, client=client)
    etag = got.headers["ETag"]
    assert got.status_code == 200 and got.parsed.name == "Cup"
    assert ops["get"].sync_detailed(cup, client=client, if_none_match=etag).status_code == 304

    patched = ops["update"].sync_detailed(cup, client=client, body=models.ProductPatch(price=5.0), if_match=etag)
    assert patched.status_code == 200 and patched.parsed.price == 5.0 and patched.parsed.name == "Cup"
    stale = ops["update"].sync_detailed(cup, client=client, body=models.ProductPatch(stock=7), if_match=etag)
    assert stale.status_code == 412 and isinstance(stale.parsed, models.Problem) and stale.parsed.status == 412

    assert ops["delete"].sync_detailed(cup, client=client).status_code == 204
    gone = ops["get"].sync_detailed(cup, client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, models.Problem)


def _typescript_toolchain(work: Path) -> tuple[Path, Any]:
    """The pinned toolchain's ``.bin`` linked into ``work``, and a runner of its commands there."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript client")
    deps = subprocess.run([str(ROOT / "scripts" / "ts-client-deps")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert deps.returncode == 0, deps.stderr
    modules = Path(deps.stdout.strip()) / "node_modules"
    work.mkdir(exist_ok=True)
    (work / "node_modules").symlink_to(modules, target_is_directory=True)

    def run(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return modules / ".bin", run


def test_typescript_client_type_checks_and_drives_the_app(shop: Any, tmp_path: Path) -> None:
    work = tmp_path / "ts"
    bin_, run = _typescript_toolchain(work)
    run(str(bin_ / "openapi-typescript"), str(_document(shop, tmp_path)), "-o", "schema.d.ts")
    shutil.copy(Path(__file__).parent / "clients" / "catalog.ts", work / "shop.ts")
    (work / "config.ts").write_text(f"export const BASE_URL = {json.dumps(shop.base_url)};\n")
    run(str(bin_ / "tsc"), "--noEmit", "shop.ts")  # default options: no flag loosens the check
    run(str(bin_ / "tsc"), "--outDir", "out", "shop.ts")
    seen = json.loads(run("node", "out/shop.js").strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert seen["created"] == "Cup" and seen["bulk"] == ["TS-2", "TS-3"]
    assert seen["listed"] == [["Bowl", 6], ["Cup", 4]] and seen["listed_keys"] == ["id", "name", "price"]
    assert seen["got"] == "Bowl" and seen["not_modified"] == 304 and seen["patched"] == 5
    assert seen["stale"] == [412, 412, "Precondition Failed"]
    assert seen["deleted"] == 204 and seen["gone"] == 404


# -- every app in examples/: both generated clients create, list and get its documents ----------


@dataclass(frozen=True)
class Ref:
    """In a body: the id of the document an earlier step created for ``resource``."""

    resource: str


@dataclass(frozen=True)
class Fresh:
    """In a body: a value of a unique field, prefixed by the client that sends it (``py-``, ``ts-``)."""

    value: str


@dataclass(frozen=True)
class Step:
    """Create one document of a resource (only its required fields), list them, get it back."""

    tag: str  # the resource's name: the OpenAPI tag, the generated Python package's folder
    model: str
    path: str
    body: dict[str, Any]
    user: str | None = None  # the local provider's token to sign in with (a Bearer token), if any


@dataclass(frozen=True)
class Example:
    target: str
    steps: list[Step]
    mongo: bool = False  # ODMantic models: MongoDB only


EXAMPLES = {
    "todo": Example("todo.py:app", [Step("todo_item", "TodoItem", "/todo_item", {"title": "try bzzlite"})]),
    "catalog": Example("catalog.py:app", [Step("products", "Product", "/products",
                                               {"name": "Cup", "sku": Fresh("C-1"), "price": 4.5})]),
    "blog_sqlite": Example("blog_sqlite.py:app", [
        Step("author", "Author", "/author", {"name": "Ada", "email": Fresh("ada@example.org")}),
        Step("post", "Post", "/post", {"title": "Hello", "author": Ref("author")}),
    ]),
    "blog": Example("blog.py:app", [
        Step("author", "Author", "/author", {"name": "Ada", "email": Fresh("ada@example.org")}),
        Step("post", "Post", "/post", {"title": "Hello", "author": Ref("author")}),
    ], mongo=True),
    "auth": Example("auth.py:app", [Step("note", "Note", "/note", {"text": "buy milk"}, "alice-local-token")]),
    "shop": Example("shop.py:app", [
        Step("product", "Product", "/product", {"sku": Fresh("S-1"), "name": "Cup", "price": 4.5},
             "admin-local-token"),  # admins manage products
        Step("order", "Order", "/order", {"lines": [{"product": Ref("product"), "quantity": 1}]},
             "alice-local-token"),
    ]),
    "live": Example("live.py:app", [Step("task", "Task", "/task", {"title": "milk"})]),
    "signals": Example("signals.py:app", [Step("user", "User", "/user", {"name": "Bernardo Heynemann"})]),
}


def test_every_example_is_covered() -> None:
    apps = {path.stem for path in (ROOT / "examples").glob("*.py")}
    assert apps == set(EXAMPLES)


@dataclass
class Served:
    port: int
    procs: list[Any] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # local provider's token -> session token

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def examples_served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every example app served by ``python -m bzzlite serve`` on a fresh store, as its docstring says."""
    folder = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    served: dict[str, Served] = {}
    try:
        for name, example in EXAMPLES.items():
            if example.mongo:
                mongo = request.getfixturevalue("mongo_url")
                db = f"{mongo}/examples_{uuid.uuid4().hex}"
            else:
                db = f"sqlite:///{folder / name}.db"
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bzzlite", "serve", str(ROOT / "examples" / example.target),
                 "--port", str(port), "--db", db, "--log-level", "warning"],
                cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            served[name] = Served(port, [proc])
        for name, example in EXAMPLES.items():
            _wait_until_served(served[name])
            for user in {step.user for step in example.steps if step.user is not None}:
                status, headers, body = http(served[name].port, "POST", "/auth/signin/", json.dumps(
                    {"provider": "local-dev", "access_token": user}).encode())
                assert status == 200, body
                served[name].tokens[user] = headers["Set-Cookie"].split("=", 1)[1].split(";", 1)[0]
        yield served
    finally:
        for one in served.values():
            for proc in one.procs:
                stop(proc)


def _wait_until_served(one: Served) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if one.procs[0].poll() is not None:
            raise AssertionError(f"the example's server exited with {one.procs[0].returncode}")
        try:
            if http(one.port, "GET", "/_health")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the example's server did not start")


def _body(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, Ref):
        return ids[value.resource]
    if isinstance(value, Fresh):
        return f"py-{value.value}"
    if isinstance(value, dict):
        return {key: _body(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_body(item, ids) for item in value]
    return value


def _fetch_document(one: Served, folder: Path) -> Path:
    status, _, body = http(one.port, "GET", "/openapi.json")
    assert status == 200
    path = folder / "openapi.json"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_has_a_python_client_that_imports_and_drives_it(
    name: str, examples_served: dict[str, Served], tmp_path: Path
) -> None:
    one, package = examples_served[name], f"{name}_client"
    _generate_python_client(_fetch_document(one, tmp_path), package, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        generated = importlib.import_module(package)
        for module in pkgutil.walk_packages(generated.__path__, f"{package}."):
            importlib.import_module(module.name)  # every operation and model imports
        models = importlib.import_module(f"{package}.models")
        ids: dict[str, str] = {}
        for step in EXAMPLES[name].steps:
            client = (generated.AuthenticatedClient(base_url=one.base_url, token=one.tokens[step.user]) if step.user
                      else generated.Client(base_url=one.base_url))
            operation = step.path.strip("/").replace("/", "_")
            api = f"{package}.api.{step.tag}"
            body = getattr(models, f"{step.model}Request").from_dict(_body(step.body, ids))
            created = importlib.import_module(f"{api}.create_{operation}").sync_detailed(client=client, body=body)
            assert created.status_code == 201, created.content
            assert isinstance(created.parsed, getattr(models, f"{step.model}Document"))
            ids[step.tag] = created.parsed.id
            listed = importlib.import_module(f"{api}.list_{operation}").sync_detailed(client=client)
            assert listed.status_code == 200, listed.content
            assert ids[step.tag] in [item.id for item in listed.parsed.items]
            got = importlib.import_module(f"{api}.get_{operation}").sync_detailed(ids[step.tag], client=client)
            assert got.status_code == 200 and got.parsed.id == ids[step.tag], got.content
    finally:
        sys.path.remove(str(tmp_path))
        for module_name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[module_name]


def _typescript_body(value: Any) -> str:
    """``value`` as a TypeScript expression; a ``Ref`` reads the id an earlier step created."""
    if isinstance(value, Ref):
        return f"ids[{json.dumps(value.resource)}]"
    if isinstance(value, Fresh):
        return json.dumps(f"ts-{value.value}")
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)}: {_typescript_body(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_typescript_body(v) for v in value) + "]"
    return json.dumps(value)


def _typescript_program(one: Served, example: Example) -> str:
    """A client of the example, typed by the generated ``schema.d.ts``: each step's create body
    is a ``<Model>Request`` holding only the required fields, then a list and a get."""
    steps = []
    for step in example.steps:
        item = f"{step.path}/{{id}}"
        headers = {"Authorization": f"Bearer {one.tokens[step.user]}"} if step.user else {}
        steps.append(f"""
function step_{step.tag}(ids: {{ [key: string]: string }}) {{
  const client = createClient<paths>({{ baseUrl: {json.dumps(one.base_url)}, headers: {json.dumps(headers)} }});
  const body: components["schemas"][{json.dumps(step.model + "Request")}] = {_typescript_body(step.body)};
  return client.POST({json.dumps(step.path)}, {{ body: body }}).then(function (created) {{
    if (!created.data || Array.isArray(created.data)) throw new Error("create: " + created.response.status);
    const id = created.data.id;
    ids[{json.dumps(step.tag)}] = id;
    return client.GET({json.dumps(step.path)}).then(function (listed) {{
      const found = listed.data ? listed.data.items.some(function (one) {{ return one.id === id; }}) : false;
      return client.GET({json.dumps(item)}, {{ params: {{ path: {{ id: id }} }} }}).then(function (got) {{
        seen[{json.dumps(step.tag)}] = [created.response.status, found, got.response.status,
                                         got.data ? got.data.id === id : false];
      }});
    }});
  }});
}}""")
    first, *rest = example.steps  # ES5, the default target, has no Promise value: chain the steps' own
    chain = f"step_{first.tag}(ids)" + "".join(f".then(function () {{ return step_{s.tag}(ids); }})" for s in rest)
    return f"""// Generated by tests/test_clients.py: drives one app of examples/ through openapi-fetch.
import createClient from "openapi-fetch";
import type {{ components, paths }} from "./schema";

const seen: {{ [key: string]: unknown }} = {{}};
const ids: {{ [key: string]: string }} = {{}};
{"".join(steps)}

{chain}.then(function () {{
  console.log(JSON.stringify(seen));
}}, function (error) {{
  console.log(JSON.stringify({{ error: String(error), seen: seen }}));
}});
"""


def test_every_example_has_a_typescript_client_that_type_checks_and_drives_it(
    examples_served: dict[str, Served], tmp_path: Path
) -> None:
    work = tmp_path / "ts"
    bin_, run = _typescript_toolchain(work)
    for name, example in EXAMPLES.items():
        (work / name).mkdir()
        run(str(bin_ / "openapi-typescript"), str(_fetch_document(examples_served[name], work / name)),
            "-o", f"{name}/schema.d.ts")
        (work / name / "client.ts").write_text(_typescript_program(examples_served[name], example))
    programs = [f"{name}/client.ts" for name in EXAMPLES]
    run(str(bin_ / "tsc"), "--outDir", "out", *programs)  # default options; a type error fails it, as --noEmit
    for name, example in EXAMPLES.items():
        seen = json.loads(run("node", f"out/{name}/client.js").strip().splitlines()[-1])
        assert seen == {step.tag: [201, True, 200, True] for step in example.steps}, (name, seen)
