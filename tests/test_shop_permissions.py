"""examples/shop.py, the flagship: every route × {anonymous, buyer A, buyer B, admin} × every
method answers as its declared permission matrix says.

The routes come from the app's own route table (``App.permission_matrix()``, nested routes
expanded), so a new route or route kind is walked without anyone adding it here; a route
whose path this test cannot fill in fails the test instead of being skipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from bzzlite.testclient import session_cookie
from bzzlite.testing import serve
from tests.test_custom_routes import ROOT, SHOP, load_shop

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PERSONAS = {"anonymous": "anonymous", "buyer A": "signed in", "buyer B": "signed in", "admin": "role admin"}
ALLOWED_BUT_NOT = {401, 403, 404, 405}


@pytest.fixture(scope="module")
def shop() -> Any:
    return load_shop()


def test_the_declared_matrix_says_what_the_shop_means(shop: Any) -> None:
    """The cells that make the shop secure, as its owner would write them down."""
    columns, rows = shop.app.permission_matrix()
    assert columns == ["anonymous", "signed in", "role admin"]
    cells = {(method, path): dict(zip(columns, verdicts)) for method, path, verdicts in rows}
    assert cells[("GET", "/product")] == {"anonymous": "yes", "signed in": "yes", "role admin": "yes"}
    for method in ("PUT", "PATCH", "DELETE"):
        assert cells[(method, "/product/{id}")] == {"anonymous": "401", "signed in": "403", "role admin": "yes"}
    assert cells[("GET", "/order/{id}")] == {"anonymous": "401", "signed in": "own buyer", "role admin": "yes"}
    assert cells[("PATCH", "/order/{id}")]["signed in"] == "own buyer and where status='open'"
    assert cells[("DELETE", "/order/{id}")]["signed in"] == "403"
    assert cells[("POST", "/order/{id}/pay")] == {"anonymous": "401", "signed in": "own buyer",
                                                  "role admin": "own buyer"}
    assert cells[("GET", "/stats")]["anonymous"] == "yes"


def fill(template: str, ids: dict[str, str]) -> str:
    """A concrete URL for a route template, naming the documents made for the walk."""
    resource = template.strip("/").split("/")[0]
    known = {"id": ids.get(resource), "lines_index": "0", "name": "swagger-ui.css"}
    missing = [name for name in re.findall(r"\{(\w+)\}", template) if known.get(name) is None]
    assert not missing, f"the walk cannot fill {missing} in {template}: teach fill() about this route kind"
    return re.sub(r"\{(\w+)\}", lambda m: str(known[m.group(1)]), template)


def body(method: str, template: str, ids: dict[str, str]) -> Any:
    if method not in ("POST", "PUT", "PATCH"):
        return None
    return {
        "/product": {"sku": f"s{len(ids)}", "name": "Sock", "price": "1.00"},
        "/order": {"lines": [{"product": ids["product"], "quantity": 1}]},
        "/order/{id}/lines": {"product": ids["product"], "quantity": 1},
        "/order/{id}/lines/{lines_index}": {"product": ids["product"], "quantity": 2},
        "/order/{id}/lines/{lines_index}/product": {"id": ids["product"]},
        "/order/{id}/pay": {"card_last4": "1234"},
    }.get(template, {})


def test_every_route_answers_every_caller_as_declared(shop: Any, tmp_path: Any) -> None:
    shop.app.use_store(f"sqlite:///{tmp_path}/shop.db")
    columns, rows = shop.app.permission_matrix()
    served = {(method, path) for method, path, _ in rows}
    templates = list(dict.fromkeys(path for _, path, _ in rows))
    checked = 0
    people = {"admin": {"id": "admin", "roles": ["admin"]}, "buyer A": {"id": "alice"}, "buyer B": {"id": "bob"}}

    def tokens() -> dict[str, dict[str, str]]:  # new sessions each time: the walk signs out too
        return {"anonymous": {}, **{name: {"Authorization": "Bearer " + session_cookie(shop.app, user)[1]}
                                    for name, user in people.items()}}

    with serve(shop.app) as client:
        for template in templates:
            for method in METHODS:
                verdicts = dict(zip(columns, next((v for m, p, v in rows if (m, p) == (method, template)), [])))
                for persona, column in PERSONAS.items():
                    users = tokens()
                    # fresh documents for each request: a product (admin's), an open order of buyer A's
                    product = client.post("/product", json={"sku": f"p{checked}", "name": "Pen", "price": "2.00",
                                                            "stock": 10}, headers=users["admin"]).json()
                    order = client.post("/order", json={"lines": [{"product": product["id"], "quantity": 1}]},
                                        headers=users["buyer A"]).json()
                    ids = {"product": product["id"], "order": order["id"]}
                    path = fill(template, ids)
                    response = client.request(method, path, json=body(method, template, ids),
                                              headers=users[persona])
                    status = response.code
                    where = f"{persona} {method} {template} -> {status} {response.text[:200]}"
                    checked += 1
                    if (method, template) not in served:
                        assert status in (404, 405), where  # not a route of this method
                        continue
                    verdict = verdicts[column]
                    if verdict in ("401", "403"):
                        assert status == int(verdict), where
                    elif verdict == "yes":
                        assert status not in ALLOWED_BUT_NOT, where
                    else:  # allowed on some documents (own buyer...): the order is buyer A's, no one else's
                        own = persona == "buyer A" or not template.startswith("/order/{id}")
                        if own:
                            assert status not in ALLOWED_BUT_NOT, where
                        else:
                            assert status in (403, 404), where
                        assert persona != "anonymous", where
    assert checked == len(templates) * len(METHODS) * len(PERSONAS)


def test_routes_prints_the_matrix() -> None:
    run = subprocess.run([sys.executable, "-m", "bzzlite", "routes", f"{SHOP}:app", "--permissions"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    header, *lines = run.stdout.splitlines()
    assert header.split() == ["METHOD", "PATH", "anonymous", "signed", "in", "role", "admin"]
    patch = next(line for line in lines if line.startswith("PATCH") and " /order/{id} " in f"{line} ")
    assert "own buyer and where status='open'" in patch


def test_the_openapi_document_shows_who_may_do_what(shop: Any) -> None:
    from bzzlite.openapi import build_document

    document = build_document(shop.app)
    patch = document["paths"]["/order/{id}"]["patch"]
    assert patch["x-bzzlite-allow"] == "(owner('buyer') & where(status='open')) | role('admin')"
    assert patch["x-bzzlite-writable-by"] == {"status": "role('admin')", "total": "role('admin')"}
    assert patch["security"] and {"401", "403", "404"} <= set(patch["responses"])
    listed = document["paths"]["/product"]["get"]
    assert listed["x-bzzlite-allow"] == "anyone" and "security" not in listed and "401" not in listed["responses"]
    created = document["paths"]["/product"]["post"]
    assert created["x-bzzlite-allow"] == "role('admin')" and created["security"] and "403" in created["responses"]
    pay = document["paths"]["/order/{id}/pay"]["post"]
    assert pay["x-bzzlite-allow"] == "owner('buyer')" and pay["security"] and "403" in pay["responses"]
    nested = document["paths"]["/order/{id}/lines"]["post"]
    assert nested["x-bzzlite-allow"] == "(owner('buyer') & where(status='open')) | role('admin')"
