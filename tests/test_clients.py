"""Real clients: the served ``/openapi.json`` of examples/catalog.py, fed to openapi-python-client
and to openapi-typescript + openapi-fetch, drives the app through each generated client.

The TypeScript toolchain is npm's: ``scripts/ts-client-deps`` installs its pinned versions into a
cache directory (once) and the test type-checks with ``tsc --noEmit`` under default options, then
runs the compiled client with node. Skipped when node/npm or openapi-python-client are missing.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bzzlite.testing import serve
from examples.catalog import make_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    with serve(make_app(f"sqlite:///{tmp_path / 'shop.db'}")) as client:
        yield client


def _document(client: Any, folder: Path) -> Path:
    path = folder / "openapi.json"
    path.write_bytes(client.get("/openapi.json").body)
    return path


def test_python_client_generated_without_warnings_drives_the_app(shop: Any, tmp_path: Path) -> None:
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if generator is None:
        pytest.skip("pip install openapi-python-client (see pyproject's test extras)")
    (tmp_path / "config.yaml").write_text("post_hooks: []\n")
    done = subprocess.run(
        [generator, "generate", "--path", str(_document(shop, tmp_path)), "--meta", "none",
         "--output-path", str(tmp_path / "shop_client"), "--config", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
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


def test_typescript_client_type_checks_and_drives_the_app(shop: Any, tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript client")
    deps = subprocess.run([str(ROOT / "scripts" / "ts-client-deps")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert deps.returncode == 0, deps.stderr
    modules = Path(deps.stdout.strip()) / "node_modules"
    work = tmp_path / "ts"
    work.mkdir()
    (work / "node_modules").symlink_to(modules, target_is_directory=True)
    bin_ = modules / ".bin"

    def run(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

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
