"""Who may do what (bzzlite.permissions, decided in bzzlite/documents/access.py): rules per
operation, action and field, on every path and both stores.

The rules themselves are pure and tested first; then one small shop app, served on each store,
is driven as four callers (anonymous, two buyers, an admin) through every kind of route.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, ConfigurationError, Ref, Registry, Unique
from bzzlite.auth import Auth
from bzzlite.auth.testing import StaticTokenProvider
from bzzlite.documents import Documents
from bzzlite.documents.access import authorize_call, merge_filters
from bzzlite.errors import HTTPError, NotFound
from bzzlite.permissions import (
    ANONYMOUS,
    Caller,
    Check,
    Filters,
    anyone,
    columns,
    nobody,
    owner,
    permissions,
    role,
    route_rule,
    rule,
    signed_in,
    verdict,
    where,
)
from bzzlite.query import All
from bzzlite.testclient import session_cookie
from bzzlite.testing import record, serve


def run(coro: Any) -> Any:
    return asyncio.run(coro)


ANN = Caller({"id": "ann"})
BOB = Caller({"id": "bob"})
ADMIN = Caller({"id": "root"}, frozenset({"admin"}))


# -- the rules, pure -------------------------------------------------------------------------


def test_rules_on_the_user() -> None:
    assert anyone.resolve(ANONYMOUS) is True and not anyone.needs_user
    assert nobody.resolve(ADMIN) is False and not nobody.needs_user
    assert signed_in.resolve(ANONYMOUS) is False and signed_in.resolve(ANN) is True and signed_in.needs_user
    assert role("admin").resolve(ADMIN) is True and role("admin").resolve(ANN) is False
    assert role("admin", "staff").resolve(Caller({"id": "s"}, frozenset({"staff"}))) is True
    assert (~role("admin")).resolve(ANN) is True and (~role("admin")).resolve(ADMIN) is False
    assert (signed_in & ~role("banned")).resolve(ANN) is True


def test_rules_on_documents_resolve_to_filters() -> None:
    assert owner("buyer").resolve(ANONYMOUS) is False
    ((atom,),) = owner("buyer").resolve(ANN)
    assert atom == Filters({"buyer": "ann"}, frozenset({"buyer"}))
    assert (owner("buyer") | role("admin")).resolve(ADMIN) is True
    ((one,),) = (owner("buyer") | role("admin")).resolve(ANN)
    assert one.filters == {"buyer": "ann"}
    ((first, second),) = (owner("buyer") & where(status="open")).resolve(BOB)
    assert (first.filters, second.filters) == ({"buyer": "bob"}, {"status": "open"})
    ((team,),) = where(team=lambda user: user["team"]).resolve(Caller({"id": "x", "team": "red"}))
    assert team.filters == {"team": "red"}
    assert where(team=lambda user: user["team"]).resolve(ANONYMOUS) is False  # never called without a user
    assert where(published=True).resolve(ANONYMOUS) == ((Filters({"published": True}),),)
    assert not where(published=True).needs_user and where(team=lambda u: u["t"]).needs_user


def test_custom_rules() -> None:
    calls = []

    def is_staff(user: dict[str, Any]) -> bool:
        calls.append(user)
        return user.get("staff") is True

    assert rule(is_staff).resolve(ANONYMOUS) is False and calls == []  # not called without a user
    assert rule(is_staff).resolve(Caller({"id": "s", "staff": True})) is True
    ((check,),) = rule(lambda user, doc: doc["n"] > 1).resolve(ANN)
    assert isinstance(check, Check) and check.test(ANN, {"n": 2}) and not check.test(ANN, {"n": 0})
    assert rule(lambda user: user is None, anonymous=True).resolve(ANONYMOUS) is True


def test_needs_user_decides_401_or_403() -> None:
    assert (anyone | role("admin")).needs_user is False
    assert (owner() | role("admin")).needs_user is True
    assert (where(published=True) | owner()).needs_user is False  # anonymous readers see the published ones


def test_rules_describe_themselves() -> None:
    assert repr((owner("buyer") & where(status="open")) | role("admin")) == \
        "(owner('buyer') & where(status='open')) | role('admin')"
    assert repr(~role("a", "b")) == "~role('a', 'b')"
    assert ((owner("x") | role("admin")) & signed_in).roles() == {"admin"}


def test_declaration_mistakes_are_configuration_errors() -> None:
    class Thing(BaseModel):
        owner: str | None = None
        status: str = "open"

    with pytest.raises(ConfigurationError, match="expected a permission rule"):
        Registry().resource(allow={"get": True})(Thing)
    with pytest.raises(ConfigurationError, match="cannot be a query filter"):
        Registry().resource(allow={"read": rule(lambda user, doc: True)})(Thing)
    with pytest.raises(ConfigurationError, match="cannot be a query filter"):
        Registry().resource(allow={"list": owner("owner") | where(status="open")})(Thing)
    with pytest.raises(ConfigurationError, match="not a top-level field"):
        Registry().resource(writable_by={"nope": role("admin")})(Thing)
    with pytest.raises(ConfigurationError, match="only rules on the user can be negated"):
        _ = ~owner()
    with pytest.raises(ConfigurationError, match="role"):
        role()
    registry = Registry()
    registry.resource(allow={"publsh": role("admin")})(Thing)  # a misspelled action
    with pytest.raises(ConfigurationError, match="'publsh' is no operation"):
        App(registry, db="sqlite:///:memory:", auth=_auth())
    registry = Registry()
    registry.resource(allow={"update": owner()})(Thing)
    with pytest.raises(ConfigurationError, match="has no auth"):
        App(registry, db="sqlite:///:memory:")
    registry = Registry()
    with pytest.raises(ConfigurationError, match="reaches none"):
        registry.route("/x", allow=owner())(lambda handler: None)



def test_rules_combine_with_every_kind_of_answer() -> None:
    """``&`` and ``|`` of a rule on the user (True/False) with one on documents keep the filters."""
    own = ((Filters({"buyer": "ann"}, frozenset({"buyer"})),),)
    assert (signed_in & owner("buyer")).resolve(ANN) == own and (owner("buyer") & signed_in).resolve(ANN) == own
    assert (role("admin") | owner("buyer")).resolve(ANN) == own and (owner("buyer") | role("admin")).resolve(ANN) == own
    assert (role("admin") & owner("buyer")).resolve(ANN) is False and (owner("buyer") & nobody).resolve(ANN) is False
    assert (where(a=1) | where(b=2)).resolve(ANN) == ((Filters({"a": 1}),), (Filters({"b": 2}),))
    # what a combination needs: a user (401 rather than 403), documents, a filter
    assert (anyone & signed_in).needs_user is True and (signed_in & anyone).needs_user is True
    assert (~role("banned")).needs_user is False and (~role("banned")).resolve(ANONYMOUS) is True
    assert anyone.needs_user is False and nobody.needs_user is False
    on_documents = rule(lambda user, doc: True)
    assert (owner() | role("admin")).on_documents is True and (role("admin") | owner()).on_documents is True
    assert (owner() & signed_in).on_documents is True and (signed_in & owner()).on_documents is True
    assert (on_documents & signed_in).filterable is False and (signed_in & on_documents).filterable is False
    assert (owner() & where(a=1)).filterable is True
    with pytest.raises(ConfigurationError, match="only rules on the user can be negated"):
        _ = ~(owner() | role("admin"))


def test_custom_rules_say_who_they_are() -> None:
    def is_staff(user: dict[str, Any]) -> bool:
        return True

    class Callable:
        def __call__(self, user: dict[str, Any]) -> bool:
            return True

    assert rule(is_staff).filterable is True and repr(rule(is_staff)) == "rule(is_staff)"
    assert repr(rule(Callable())) == "rule(rule)"  # no __name__
    built_in = rule(bool)  # no signature to read: taken as a rule on the user
    assert built_in.on_documents is False and built_in.filterable is True and built_in.resolve(ANN) is True
    ((check,),) = rule(lambda user, doc: doc["owner"] == user["id"]).resolve(ANN)
    assert check.name == "<lambda>" and check.test(ANN, {"owner": "ann"}) and not check.test(BOB, {"owner": "ann"})

    class Thing(BaseModel):
        x: int = 0

    Registry().resource(allow={"read": rule(is_staff)})(Thing)  # a rule on the user is a filter: reads may have it


def test_permission_roles_are_gathered_from_every_rule() -> None:
    registry = Registry()

    @registry.resource(allow={"get": role("a"), "delete": role("b") | signed_in}, writable_by={"x": role("c")})
    class Thing(BaseModel):
        x: int = 0

    assert registry.spec_for(Thing).permissions.roles() == {"a", "b", "c"}


class _ThreeArguments:  # a callable without a __name__
    def __call__(self, user: Any, doc: Any, more: Any) -> bool:
        return True

    def __repr__(self) -> str:
        return "_ThreeArguments()"


_NOT_A_RULE = "expected a permission rule (anyone, signed_in, role(...), owner(...), where(...), rule(...))"
_ARITY = "the function takes the user (and the document, for a rule on documents): def f(user) or def f(user, doc)"


@pytest.mark.parametrize("mistake, message", [
    pytest.param(lambda: role(""), "role(...) takes one or more role names, e.g. role('admin')", id="role-empty"),
    pytest.param(lambda: role("admin", 1), "role(...) takes one or more role names, e.g. role('admin')",
                 id="role-not-a-string"),
    pytest.param(lambda: owner(""), "owner(...) takes the name of the field holding the owner's id, e.g. "
                                    "owner('author')", id="owner-empty"),
    pytest.param(lambda: owner(1), "owner(...) takes the name of the field holding the owner's id, e.g. "
                                   "owner('author')", id="owner-not-a-string"),
    pytest.param(lambda: where(), "where(...) takes at least one filter, e.g. where(status='open')",
                 id="where-nothing"),
    pytest.param(lambda: rule(5), "rule(...) takes a function, got 5", id="rule-not-callable"),
    pytest.param(lambda: rule(lambda a, b, c: True), f"rule('<lambda>'): {_ARITY}", id="rule-three-arguments"),
    pytest.param(lambda: rule(_ThreeArguments()), f"rule(_ThreeArguments()): {_ARITY}",
                 id="rule-object-three-arguments"),
    pytest.param(lambda: ~owner(), "~owner('owner'): only rules on the user can be negated; for documents write the "
                                   "opposite filter, e.g. where(status__ne='paid')", id="not-on-documents"),
    pytest.param(lambda: signed_in | True, f"|: {_NOT_A_RULE}, got True", id="or-not-a-rule"),
    pytest.param(lambda: signed_in & "admin", f"&: {_NOT_A_RULE}, got 'admin'", id="and-not-a-rule"),
    pytest.param(lambda: route_rule("admin", "@route('/x')"), f"@route('/x'): {_NOT_A_RULE}, got 'admin'",
                 id="route-rule"),
    pytest.param(lambda: permissions("Thing", ["read"], None, ()), "@resource(allow=...) of Thing: a dict from "
                 "operation to rule, e.g. {'read': anyone, 'write': role('admin')}", id="allow-not-a-dict"),
    pytest.param(lambda: permissions("Thing", {"": anyone}, None, ()), "@resource(allow=...) of Thing: keys are "
                 "operation or action names, got ''", id="allow-empty-key"),
    pytest.param(lambda: permissions("Thing", {"get": 1}, None, ()), f"@resource(allow=...) of Thing['get']: "
                 f"{_NOT_A_RULE}, got 1", id="allow-value"),
    pytest.param(lambda: permissions("Thing", None, ["x"], ("x",)), "@resource(writable_by=...) of Thing: a dict "
                 "from field to rule, e.g. {'status': role('admin')}", id="writable-by-not-a-dict"),
    pytest.param(lambda: permissions("Thing", None, {"y": anyone}, ("x", "a")), "@resource(writable_by=...) of "
                 "Thing: 'y' is not a top-level field (fields: a, x)", id="writable-by-unknown-field"),
    pytest.param(lambda: permissions("Thing", None, {"x": 1}, ("x",)), f"@resource(writable_by=...) of "
                 f"Thing['x']: {_NOT_A_RULE}, got 1", id="writable-by-value"),
])
def test_declaration_mistakes_say_how_to_write_it(mistake: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        mistake()
    assert str(caught.value) == message


def test_a_read_rule_that_is_no_filter_says_what_would_do() -> None:
    with pytest.raises(ConfigurationError, match=r"^@resource\(allow=...\) of Thing\['get'\]: rule\(<lambda>\) cannot"):
        permissions("Thing", {"get": rule(lambda user, doc: True), "list": anyone}, None, ())
    with pytest.raises(ConfigurationError) as caught:
        permissions("Thing", {"list": owner("a") | where(b=1)}, None, ())
    assert str(caught.value) == (
        "@resource(allow=...) of Thing['list']: owner('a') | where(b=1) cannot be a query filter, and a list must "
        "show what item reads would: give reads rules on the user (role, signed_in), owner(...) or where(...) "
        "(combined with | only where one side is on the user); keep rules on documents for writes")


def test_allow_groups_come_first_and_single_operations_override_them() -> None:
    found = permissions("Thing", {"create": signed_in, "write": role("admin"), "*": nobody, "read": anyone,
                                  "publish": owner()}, None, ())
    assert {op: repr(r) for op, r in found.rules.items()} == {
        "get": "anyone", "list": "anyone", "create": "signed_in", "update": "role('admin')",
        "delete": "role('admin')", "publish": "owner('owner')"}
    assert found.names() == {"get", "list", "create", "update", "delete", "publish"} and found.declared
    assert not permissions("Thing", None, None, ()).declared
    assert permissions("Thing", None, {"x": role("c")}, ("x",)).declared


def test_the_matrix_cells_say_what_each_caller_may_do() -> None:
    user = Caller({"id": "<user>"})
    assert columns(["staff", "admin"]) == [("anonymous", ANONYMOUS), ("signed in", user),
                                           ("role admin", Caller({"id": "<user>"}, frozenset({"admin"}))),
                                           ("role staff", Caller({"id": "<user>"}, frozenset({"staff"})))]
    assert [verdict(None, caller, True) for caller in (ANONYMOUS, user)] == ["401", "yes"]
    assert [verdict(None, caller, False) for caller in (ANONYMOUS, user)] == ["yes", "yes"]
    assert verdict(role("admin"), ANONYMOUS, True) == "401" and verdict(role("admin"), user, False) == "403"
    assert verdict(nobody, ANONYMOUS, True) == "403"  # no user would pass: not a sign-in question
    assert verdict(owner("buyer") & where(status="open"), user, True) == "own buyer and where status='open'"
    assert verdict(where(a=1, b="x") | where(c=2), user, True) == "where a=1, b='x' or where c=2"
    assert verdict(where(team=lambda u: u["id"]), user, True) == "where team=<user>"
    assert verdict(rule(lambda u, doc: True) & owner(), user, True) == "if rule(<lambda>) and own owner"
    assert repr(where(team=lambda u: u["t"], status="open")) == "where(team=<user>, status='open')"


# -- a shop, served ---------------------------------------------------------------------------


def _auth() -> Auth:
    return Auth("s" * 40, [StaticTokenProvider("test", {})])


def shop() -> tuple[Registry, dict[str, type[BaseModel]]]:
    registry = Registry()

    @registry.resource(allow={"read": anyone, "write": role("admin")})
    class Product(BaseModel):
        sku: Annotated[str, Unique]
        price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
        stock: int = 0

    class Line(BaseModel):
        product: Annotated[str, Ref(Product)]
        quantity: int = Field(ge=1)

    class Address(BaseModel):
        city: str

    @registry.resource(
        allow={"read": owner("buyer") | role("admin"), "create": owner("buyer") | role("admin"),
               "update": (owner("buyer") & where(status="open")) | role("admin"), "delete": role("admin"),
               "pay": owner("buyer")},
        writable_by={"status": role("admin"), "total": role("admin"), "note": role("admin")},
    )
    class Order(BaseModel):
        lines: list[Line] = Field(min_length=1)
        buyer: str | None = None
        status: Literal["open", "paid"] = "open"
        total: Decimal | None = None
        note: Address | None = None

    @registry.resource(allow={"read": anyone, "write": signed_in}, writable_by={"featured": role("admin")})
    class Review(BaseModel):
        text: str
        featured: bool = False

    @registry.action(Order, "pay")
    async def pay(handler: Any, order: Order) -> Order:
        return await handler.application.documents(Order).patch(order.id, {"status": "paid"})

    @registry.action(Order, "audit", allow=role("admin"))
    async def audit(handler: Any, order: Order) -> dict[str, str]:
        return {"audited": order.id}

    @registry.action(Order, "ping", allow=anyone)  # its own rule: anyone, signed in or not
    async def ping(handler: Any, order: Order) -> dict[str, str]:
        return {"pong": order.id}

    @registry.route("/touch/{oid}", methods=["POST"], allow=signed_in)
    async def touch(handler: Any, oid: str) -> Order:
        orders = handler.documents(Order)  # one document API for the request: two operations
        order = await orders.get(oid)
        return await orders.patch(oid, {"lines": [line.model_dump() for line in order.lines]})

    @registry.action(Order, "remind")  # no rule of its own, none named "remind": the update rule's
    async def remind(handler: Any, order: Order) -> dict[str, str]:
        return {"reminded": order.id}

    @registry.route("/mark/{oid}", methods=["POST"], allow=signed_in)
    async def mark(handler: Any, oid: str) -> Order:
        return await handler.documents(Order).patch(oid, {"status": "paid"})

    @registry.route("/report", allow=role("admin"))
    async def report(handler: Any) -> dict[str, int]:
        return {"orders": await handler.application.documents(Order).count()}

    return registry, {"Product": Product, "Order": Order}


def bearer(app: App, user: dict[str, Any] | None) -> dict[str, str]:
    if user is None:
        return {}
    _, token = session_cookie(app, user)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(store_url: str):
    registry, models = shop()
    app = App(registry, db=store_url, auth=_auth())
    users = {name: bearer(app, data) for name, data in {
        "anon": None, "ann": {"id": "ann"}, "bob": {"id": "bob"}, "admin": {"id": "root", "roles": ["admin"]}}.items()}
    with serve(app) as client:
        product = client.post("/product", json={"sku": "p1", "price": "2.50"}, headers=users["admin"]).json()
        order = client.post("/order", json={"lines": [{"product": product["id"], "quantity": 1}]},
                            headers=users["ann"]).json()
        yield client, users, product, order, registry, models


def test_function_level_rules(served) -> None:
    client, users, product, _, _, _ = served
    body = {"sku": "p2", "price": "1.00"}
    assert client.post("/product", json=body).code == 401
    refused = client.post("/product", json=body, headers=users["ann"])
    assert refused.code == 403 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["detail"] == "You may not create Product documents."
    assert client.get(f"/product/{product['id']}").code == 200  # public reads
    assert client.get("/product").json()["total"] == 1
    assert client.patch(f"/product/{product['id']}", json={"price": "0.00"}, headers=users["bob"]).code == 403
    assert client.delete(f"/product/{product['id']}", headers=users["bob"]).code == 403
    assert client.get(f"/product/{product['id']}").json()["price"] == "2.50"


def test_a_document_one_may_not_read_is_unknown_and_one_may_not_change_is_forbidden(served) -> None:
    client, users, product, order, _, _ = served
    oid = order["id"]
    assert order["buyer"] == "ann"  # the owner filled in
    assert client.get(f"/order/{oid}", headers=users["bob"]).code == 404
    assert client.patch(f"/order/{oid}", json={"lines": order["lines"]}, headers=users["bob"]).code == 404
    # refused whatever the document (no buyer deletes orders): 403 before any lookup, as for an unknown id
    assert client.delete(f"/order/{oid}", headers=users["bob"]).code == 403
    assert client.delete("/order/ffffffffffffffffffffffff", headers=users["bob"]).code == 403
    assert client.get(f"/order/{oid}", headers=users["ann"]).code == 200
    assert client.get(f"/order/{oid}", headers=users["admin"]).code == 200
    assert client.delete(f"/order/{oid}", headers=users["ann"]).code == 403  # hers, but only admins delete
    assert client.get("/order", headers=users["bob"]).json() == {"items": [], "total": 0, "page": 1, "per_page": 20}
    assert [o["id"] for o in client.get("/order", headers=users["ann"]).json()["items"]] == [oid]
    assert client.get("/order?buyer=ann", headers=users["bob"]).json()["total"] == 0  # a filter cannot widen it
    assert client.get("/order", headers=users["admin"]).json()["total"] == 1
    assert client.get("/order").code == 401


def test_a_rule_on_the_documents_state(served) -> None:
    client, users, product, order, _, _ = served
    lines = [{"product": product["id"], "quantity": 2}]
    assert client.patch(f"/order/{order['id']}", json={"lines": lines}, headers=users["ann"]).code == 200
    assert client.post(f"/order/{order['id']}/pay", json={}, headers=users["ann"]).json()["status"] == "paid"
    refused = client.patch(f"/order/{order['id']}", json={"lines": lines}, headers=users["ann"])
    assert refused.code == 403  # paid: no longer hers to change
    assert refused.json()["detail"] == "You may not update this Order."
    assert client.patch(f"/order/{order['id']}", json={"lines": lines}, headers=users["admin"]).code == 200
    # "pay" has a rule of its own (the buyer's, whatever the status): not the update rule
    assert client.post(f"/order/{order['id']}/pay", json={}, headers=users["ann"]).code == 200


def test_an_action_with_its_own_rule_follows_it_and_one_document_api_serves_two_operations(served) -> None:
    client, users, _, order, _, _ = served
    assert client.post(f"/order/{order['id']}/ping", json={}).json() == {"pong": order["id"]}  # anyone
    touched = client.post(f"/touch/{order['id']}", json={}, headers=users["ann"])
    assert touched.code == 201 and touched.json()["id"] == order["id"]  # (a POST route answers 201)
    assert client.post(f"/touch/{order['id']}", json={}, headers=users["bob"]).code == 404


def test_an_action_without_a_rule_follows_the_update_rule(served) -> None:
    client, users, _, order, _, _ = served
    remind = f"/order/{order['id']}/remind"
    assert client.post(remind, json={}, headers=users["bob"]).code == 404  # not his to see
    assert client.post(remind, json={}, headers=users["ann"]).json() == {"reminded": order["id"]}
    assert client.post(remind, json={}).code == 401
    client.post(f"/order/{order['id']}/pay", json={}, headers=users["ann"])
    refused = client.post(remind, json={}, headers=users["ann"])  # paid: no longer hers to update
    assert refused.code == 403 and refused.json()["detail"] == "You may not remind this Order."
    assert client.post(remind, json={}, headers=users["admin"]).code == 200


def test_fields_only_some_may_set(served) -> None:
    client, users, product, order, _, _ = served
    oid, lines = order["id"], order["lines"]
    refused = client.patch(f"/order/{oid}", json={"status": "paid", "total": "0.00"}, headers=users["ann"])
    assert refused.code == 403
    assert refused.json()["errors"] == [
        {"loc": ["status"], "msg": "You may not set this field", "type": "field_forbidden"},
        {"loc": ["total"], "msg": "You may not set this field", "type": "field_forbidden"}]
    assert refused.json()["detail"] == "You may not set status, total."
    unchanged_first = client.patch(f"/order/{oid}", json={"status": "open", "total": "1.00"}, headers=users["ann"])
    assert unchanged_first.code == 403 and unchanged_first.json()["detail"] == "You may not set total."
    assert client.get(f"/order/{oid}", headers=users["ann"]).json()["status"] == "open"
    # the same value is no change: a document read back can be sent back
    again = client.get(f"/order/{oid}", headers=users["ann"]).json()
    assert client.put(f"/order/{oid}", json=again, headers=users["ann"]).code == 200
    # a PUT without the field keeps it, as for a read-only field
    client.patch(f"/order/{oid}", json={"total": "9.99"}, headers=users["admin"])
    put = client.put(f"/order/{oid}", json={"lines": lines}, headers=users["ann"])
    assert put.code == 200 and put.json()["total"] == "9.99"
    assert client.put(f"/order/{oid}", json={"lines": lines, "total": "1.00"}, headers=users["ann"]).code == 403
    # creating: bulk (the item's index in loc), form fields, nested routes
    bulk = client.post("/order", json=[{"lines": lines}, {"lines": lines, "status": "paid"}], headers=users["ann"])
    assert bulk.code == 403 and bulk.json()["errors"][0]["loc"] == [1, "status"]
    assert client.get("/order", headers=users["ann"]).json()["total"] == 1  # all or nothing
    form = {**users["ann"], "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/review", body="text=good&featured=true", headers=form).code == 403
    assert client.post("/review", body="text=good", headers=form).json()["featured"] is False
    nested = client.put(f"/order/{oid}/note", json={"city": "Paris"}, headers=users["ann"])
    assert nested.code == 403 and nested.json()["errors"][0]["loc"] == ["note"]
    assert client.put(f"/order/{oid}/note", json={"city": "Paris"}, headers=users["admin"]).code == 200
    created = client.post("/order", json={"lines": lines, "status": "paid"}, headers=users["admin"])
    assert created.code == 201 and created.json()["status"] == "paid"


def test_the_owner_stays_the_owner(served) -> None:
    client, users, _, order, _, _ = served
    lines = order["lines"]
    refused = client.post("/order", json={"lines": lines, "buyer": "bob"}, headers=users["ann"])
    assert refused.code == 403 and refused.json()["detail"] == "You may not create this Order."
    bulk = client.post("/order", json=[{"lines": lines}, {"lines": lines, "buyer": "bob"}], headers=users["ann"])
    assert bulk.code == 403 and bulk.json()["detail"] == "You may not create this Order (item 1)."
    given = client.patch(f"/order/{order['id']}", json={"buyer": "bob"}, headers=users["ann"])
    assert given.code == 403 and given.json()["errors"][0]["loc"] == ["buyer"]
    assert client.post("/order", json={"lines": lines, "buyer": "bob"}, headers=users["admin"]).json()["buyer"] == "bob"


def test_actions_and_custom_routes(served) -> None:
    client, users, _, order, _, _ = served
    oid = order["id"]
    assert client.post(f"/order/{oid}/pay", json={}).code == 401
    assert client.post(f"/order/{oid}/pay", json={}, headers=users["bob"]).code == 404  # not his to see
    assert client.post(f"/order/{oid}/pay", json={}, headers=users["admin"]).code == 403  # not his order
    assert client.post(f"/order/{oid}/audit", json={}, headers=users["ann"]).code == 403
    assert client.post(f"/order/{oid}/audit", json={}, headers=users["admin"]).json() == {"audited": oid}
    assert client.get("/report").code == 401
    assert client.get("/report", headers=users["bob"]).code == 403
    assert client.get("/report", headers=users["admin"]).json() == {"orders": 1}


def test_references_are_read_under_their_targets_rules(served) -> None:
    client, users, product, order, _, _ = served
    through = client.get(f"/order/{order['id']}/lines/0/product", headers=users["ann"])
    assert through.code == 200 and through.json()["id"] == product["id"]
    assert client.get(f"/order/{order['id']}/lines/0/product", headers=users["bob"]).code == 404  # not his order


def test_deleting_a_product_orders_refer_to_inside_a_list(served) -> None:
    client, users, product, _, _, _ = served
    refused = client.delete(f"/product/{product['id']}", headers=users["admin"])
    assert refused.code == 409
    assert refused.json()["errors"] == [{"loc": ["lines.product"], "msg": "1 Order document(s) refer to it",
                                         "type": "referenced"}]
    assert client.get(f"/product/{product['id']}").code == 200


def test_the_document_api_bound_to_a_request_is_limited_the_apps_own_is_not(served) -> None:
    client, users, _, order, _, _ = served
    refused = client.post(f"/mark/{order['id']}", json={}, headers=users["ann"])  # handler.documents: as ann
    assert refused.code == 403 and refused.json()["errors"][0]["loc"] == ["status"]
    assert client.post(f"/mark/{order['id']}", json={}, headers=users["bob"]).code == 404
    assert client.post(f"/mark/{order['id']}", json={}, headers=users["admin"]).json()["status"] == "paid"
    paid = client.post(f"/order/{order['id']}/pay", json={}, headers=users["ann"])  # app.documents inside
    assert paid.code == 200 and paid.json()["status"] == "paid"


def test_an_operation_refused_outright_reaches_no_receiver(served) -> None:
    """As for auth: a 401/403 decided on the caller alone comes before any pre_* receiver; one
    that depends on the document comes after them, when the store is read (the contract)."""
    client, users, _, order, registry, models = served
    with record(registry.signals.pre_delete_instance, sender=models["Order"]) as refused, \
            record(registry.signals.pre_update_instance, sender=models["Order"]) as looked_up:
        assert client.delete(f"/order/{order['id']}", headers=users["bob"]).code == 403
        assert client.patch(f"/order/{order['id']}", json={"status": "paid"}, headers=users["bob"]).code == 404
    assert refused == [] and len(looked_up) == 1


# -- scopes that hold ---------------------------------------------------------------------------


def blog(**post_options: Any) -> Registry:
    registry = Registry()

    @registry.resource(**post_options)
    class Post(BaseModel):
        title: str
        author: str | None = None

    @registry.resource(allow={"read": anyone, "create": owner("author"), "update": owner("author"),
                              "delete": owner("author")})
    class Comment(BaseModel):
        post: Annotated[str, Ref(Post, on_delete="cascade")]
        text: str
        author: str | None = None

    return registry


@pytest.mark.parametrize("declared", ["rules", "scope"])
def test_what_one_may_read_one_may_reference(store_url: str, declared: str) -> None:
    """Reads public, writes own (docs/auth.md): Bob comments on Ann's post."""
    if declared == "rules":
        options: dict[str, Any] = {"allow": {"read": anyone, "create": owner("author"), "update": owner("author"),
                                             "delete": owner("author")}}
    else:  # the same with a scope that is told the operation
        options = {"scope": lambda handler, operation: None if operation in ("get", "list") else
                   {"author": handler.current_user["id"]}}
    app = App(blog(**options), db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        post = client.post("/post", json={"title": "t"}, headers=ann).json()
        assert post["author"] == "ann"
        assert client.get("/post", headers=bob).json()["total"] == 1  # reads are public: the list too
        comment = client.post("/comment", json={"post": post["id"], "text": "hi"}, headers=bob)
        assert comment.code == 201, comment.json()
        changed = client.patch(f"/post/{post['id']}", json={"title": "mine"}, headers=bob)
        assert changed.code == (403 if declared == "rules" else 404)


def test_a_scope_on_the_id(store_url: str) -> None:
    """Users edit only their own profile: a scope on ``id`` (every write was a 404)."""
    registry = Registry()

    @registry.resource(scope=lambda handler: {"id": handler.current_user["id"]})
    class Profile(BaseModel):
        name: str

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        created = client.post("/profile", json={"name": "ann"}, headers=bearer(app, {"id": "someone"}))
        pid = created.json()["id"]  # the user whose id this is edits it
        own = bearer(app, {"id": pid})
        other = bearer(app, {"id": "ffffffffffffffffffffffff"})
        assert client.get(f"/profile/{pid}", headers=own).json()["name"] == "ann"
        assert client.patch(f"/profile/{pid}", json={"name": "Ann"}, headers=own).code == 200
        assert client.put(f"/profile/{pid}", json={"name": "ANN"}, headers=own).code == 200
        assert client.get(f"/profile?id={pid}", headers=own).json()["total"] == 1
        assert client.get(f"/profile/{pid}", headers=other).code == 404
        assert client.patch(f"/profile/{pid}", json={"name": "x"}, headers=other).code == 404
        assert client.get("/profile", headers=other).json()["total"] == 0
        assert client.delete(f"/profile/{pid}", headers=own).code == 204


def test_a_scope_that_needs_a_user_asked_by_nobody_is_401(store_url: str) -> None:
    registry = Registry()

    @registry.resource(auth={"create": False, "list": False}, scope=lambda handler: {"owner": handler.current_user["id"]})
    class Note(BaseModel):
        text: str
        owner: str | None = None

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        for response in (client.post("/note", json={"text": "x"}), client.get("/note")):
            assert response.code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["detail"] == "Sign in first: this operation needs an authenticated user."
        assert client.post("/note", json={"text": "x"}, headers=bearer(app, {"id": "ann"})).json()["owner"] == "ann"



# -- the decision in detail (bzzlite/documents/access.py) --------------------------------------


def test_a_rule_on_documents_is_asked_with_the_caller_and_the_stored_document(store_url: str) -> None:
    registry = Registry()

    def authors(user: dict[str, Any], doc: dict[str, Any]) -> bool:
        return doc["author"] == user["id"]

    @registry.resource(allow={"read": anyone, "create": owner("author"), "update": rule(authors),
                              "delete": rule(authors) | role("admin")},
                       writable_by={"published": owner("author")})
    class Post(BaseModel):
        title: str
        author: str | None = None
        published: bool = False

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        url = f"/post/{client.post('/post', json={'title': 't'}, headers=ann).json()['id']}"
        refused = client.patch(url, json={"title": "bob's"}, headers=bob)
        assert refused.code == 403 and refused.json()["detail"] == "You may not update this Post."
        assert client.patch(url, json={"title": "ann's"}, headers=ann).json()["title"] == "ann's"
        # a field rule on documents: only the author may publish
        assert client.patch(url, json={"published": True}, headers=ann).json()["published"] is True
        assert client.delete(url, headers=bob).code == 403
        assert client.delete(url, headers=ann).code == 204


def test_a_scope_told_the_operation_decides_each_write(store_url: str) -> None:
    """A wiki: a page is created as its author's, anyone edits it, only its author deletes it."""
    registry = Registry()

    @registry.resource(scope=lambda handler, operation: {"author": handler.current_user["id"]}
                       if operation in ("create", "delete") else None)
    class Page(BaseModel):
        text: str
        author: str

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        created = client.post("/page", json={"text": "t"}, headers=ann)
        assert created.code == 201 and created.json()["author"] == "ann"  # the create's scope, filled in
        url = f"/page/{created.json()['id']}"
        assert client.patch(url, json={"text": "bob's"}, headers=bob).code == 200
        assert client.delete(url, headers=bob).code == 404  # not his to delete: unknown to him
        assert client.delete(url, headers=ann).code == 204


def test_a_scope_fills_a_create_with_its_plain_values_only(store_url: str) -> None:
    """Clearance levels: a user reaches documents up to their level; ``level__lte`` is a condition,
    not a value to write into a new document."""
    registry = Registry()

    @registry.resource(scope=lambda handler: {"level__lte": 2, "team": "red"})
    class Report(BaseModel):
        text: str
        level: int = 0
        team: str = ""

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        created = client.post("/report", json={"text": "t", "level": 1}, headers=ann)
        assert created.code == 201, created.json()
        assert (created.json()["level"], created.json()["team"]) == (1, "red")
        assert client.get("/report", headers=ann).json()["total"] == 1


def test_a_scope_that_fails_for_a_signed_in_user_is_the_apps_error_not_a_sign_in(store_url: str) -> None:
    registry = Registry()

    @registry.resource(scope=lambda handler: {"team": handler.current_user["team"]})  # no such claim
    class Plan(BaseModel):
        text: str
        team: str = ""

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        assert client.get("/plan").code == 401  # asked by nobody: sign in
        assert client.get("/plan", headers=bearer(app, {"id": "ann"})).code == 500


class _UnreadableSignature:
    """A scope callable whose signature inspect cannot read (as some callables in C): it is
    called with the handler alone."""

    __signature__ = "unreadable"

    def __call__(self, handler: Any) -> dict[str, Any]:
        return {"owner": handler.current_user["id"]}


def test_a_scope_whose_signature_cannot_be_read_is_given_the_handler(store_url: str) -> None:
    registry = Registry()

    @registry.resource(scope=_UnreadableSignature())
    class Note(BaseModel):
        text: str
        owner: str | None = None

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        assert client.post("/note", json={"text": "x"}, headers=ann).json()["owner"] == "ann"
        assert client.get("/note", headers=ann).json()["total"] == 1
        assert client.get("/note", headers=bob).json()["total"] == 0


def test_filters_given_more_than_once_all_hold() -> None:
    assert merge_filters(None, {"a": 1}) == {"a": 1}
    assert merge_filters({"a": 1}, {"a": 2, "b": 3}) == {"a": All((1, 2)), "b": 3}
    assert merge_filters({"a": All((1, 2))}, {"a": 3}) == {"a": All((1, 2, 3))}  # flat, not nested


def test_what_is_refused_says_why(store_url: str) -> None:
    """401 only where signing in could help; every refusal's message names what was refused."""
    registry = Registry()

    @registry.resource(allow={"read": anyone, "create": anyone, "update": signed_in, "delete": nobody})
    class Thing(BaseModel):
        x: int = 0

    @registry.route("/open", allow=anyone)
    async def open_(handler: Any) -> dict[str, bool]:
        return {"open": True}

    @registry.route("/closed", allow=nobody)
    async def closed(handler: Any) -> dict[str, bool]:
        return {"open": False}

    @registry.route("/plain")
    async def plain(handler: Any) -> dict[str, Any]:
        return {"user": handler.current_user["id"]}

    @registry.route("/members", allow=signed_in)
    async def members(handler: Any) -> dict[str, Any]:
        return {"user": handler.current_user["id"]}

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        url = f"/thing/{client.post('/thing', json={}).json()['id']}"
        for response in (client.delete(url), client.delete(url, headers=ann)):  # nobody: signing in is no help
            assert response.code == 403 and response.json()["detail"] == "You may not delete Thing documents."
        invalid = client.patch(url, json={"x": 1}, headers={"Authorization": "Bearer nonsense"})
        assert invalid.code == 401
        assert invalid.json()["detail"] == "The session token is invalid or has expired; sign in again."
        anonymous = client.patch(url, json={"x": 1})
        assert anonymous.code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert anonymous.json()["detail"] == "Sign in first: this operation needs an authenticated user."
        # custom routes: their own rule decides, else the app's auth (a user)
        assert client.get("/open").json() == {"open": True}
        for response in (client.get("/closed"), client.get("/closed", headers=ann)):
            assert response.code == 403 and response.json()["detail"] == "You may not call this route."
        assert client.get("/plain").code == 401 and client.get("/plain", headers=ann).json() == {"user": "ann"}
        invalid = client.get("/open", headers={"Authorization": "Bearer nonsense"})
        assert invalid.code == 200  # a public route does not ask for the token
        invalid = client.get("/members", headers={"Authorization": "Bearer nonsense"})  # one for members does
        assert invalid.code == 401
        assert invalid.json()["detail"] == "The session token is invalid or has expired; sign in again."
        assert client.get("/members", headers=ann).json() == {"user": "ann"}



def test_a_list_holds_the_scope_and_the_read_rule_together(store_url: str) -> None:
    registry = Registry()

    @registry.resource(scope=lambda handler: {"tenant": handler.current_user["name"]},  # the team, say
                       allow={"read": owner("author"), "write": signed_in})
    class Memo(BaseModel):
        text: str
        tenant: str
        author: str

    async def seed() -> None:  # the app's own access: every tenant
        seeding = App(registry, db=store_url, auth=_auth())
        await seeding.documents(Memo).create_many([{"text": text, "tenant": tenant, "author": author} for
                                                   text, tenant, author in (("mine", "a", "ann"),
                                                                            ("elsewhere", "b", "ann"),
                                                                            ("bob's", "a", "bob"))])
        await seeding.shutdown()

    run(seed())
    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        listed = client.get("/memo", headers=bearer(app, {"id": "ann", "name": "a"})).json()
        assert [m["text"] for m in listed["items"]] == ["mine"] and listed["total"] == 1


class _Handler:
    """A handler of the app's own making, its user set by the app (no ``Auth``)."""

    def __init__(self, user: dict[str, Any] | None) -> None:
        self.current_user = user


def test_without_auth_a_route_rule_asks_the_handlers_own_user() -> None:
    app = App(Registry(), db="sqlite:///:memory:")
    staff = _Handler({"id": "s", "roles": ["staff"]})
    run(authorize_call(app.runtime, staff, role("staff"), required=True))
    run(authorize_call(app.runtime, staff, None, required=True))
    run(authorize_call(app.runtime, _Handler(None), None, required=False))
    run(authorize_call(app.runtime, object(), None, required=False))  # a handler that knows no user at all
    run(authorize_call(app.runtime, _Handler(None), rule(lambda user: user is None, anonymous=True), required=True))
    for handler, allow, status in ((_Handler({"id": "x"}), role("staff"), 403), (_Handler(None), None, 401),
                                   (_Handler(None), role("staff"), 401), (_Handler(None), nobody, 403)):
        with pytest.raises(HTTPError) as refused:
            run(authorize_call(app.runtime, handler, allow, required=True))
        assert refused.value.status == status



def test_field_rules_on_documents_ask_the_stored_document_or_the_new_one(store_url: str) -> None:
    """``writable_by`` with a rule on documents: an update is judged on the document as stored (a
    user cannot make it theirs and set the field at once), a create on the document created."""
    registry = Registry()
    seen: list[dict[str, Any]] = []

    def recorded(user: dict[str, Any], doc: dict[str, Any]) -> bool:
        seen.append(doc)
        return True

    @registry.resource(allow={"read": anyone, "create": rule(recorded), "update": signed_in},
                       writable_by={"published": owner("author")})
    class Post(BaseModel):
        title: str
        author: str | None = None
        published: bool = False

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        created = client.post("/post", json={"title": "t", "author": "ann", "published": True}, headers=ann)
        assert created.code == 201 and created.json()["published"] is True
        assert seen == [{"id": created.json()["id"], "title": "t", "author": "ann", "published": True}]
        url = f"/post/{created.json()['id']}"
        taken = client.patch(url, json={"author": "bob", "published": False}, headers=bob)
        assert taken.code == 403 and taken.json()["errors"][0]["loc"] == ["published"]
        assert client.patch(url, json={"title": "bob's"}, headers=bob).code == 200
        assert client.post("/post", json={"title": "t", "author": "ann", "published": True}, headers=bob).code == 403


def test_every_owner_an_update_was_allowed_by_stays(store_url: str) -> None:
    registry = Registry()

    @registry.resource(allow={"read": anyone, "create": signed_in, "update": owner("author") | owner("editor")})
    class Draft(BaseModel):
        text: str
        author: str
        editor: str

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        created = client.post("/draft", json={"text": "t", "author": "ann", "editor": "ann"}, headers=ann)
        url = f"/draft/{created.json()['id']}"
        for field in ("author", "editor"):
            refused = client.patch(url, json={field: "bob"}, headers=ann)
            assert refused.code == 403 and refused.json()["errors"][0]["loc"] == [field]
        assert client.patch(url, json={"text": "edited"}, headers=ann).code == 200


def test_a_scope_without_rules_leaves_the_sign_in_question_to_the_apps_auth(store_url: str) -> None:
    registry = Registry()

    @registry.resource(scope=lambda handler: {"shelf": "public"}, auth={"list": False})
    class Book(BaseModel):
        title: str
        shelf: str = "public"

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        assert client.get("/book").json()["total"] == 0  # listing needs no user here
        assert client.post("/book", json={"title": "t"}).code == 401  # creating does, as by default
        created = client.post("/book", json={"title": "t"}, headers=bearer(app, {"id": "ann"}))
        assert created.code == 201 and created.json()["shelf"] == "public"
        assert client.get(f"/book/{created.json()['id']}").code == 401


def test_without_auth_the_rules_ask_the_handlers_own_user() -> None:
    """An app that knows its users by itself (no ``Auth``): the document API bound to its handler
    asks the rules with that handler's ``current_user``."""
    registry = Registry()

    @registry.resource(allow={"update": rule(lambda user: user is not None and user["id"] == "ann", anonymous=True)})
    class Memo(BaseModel):
        text: str

    app = App(registry, db="sqlite:///:memory:")

    async def main() -> None:
        memo = await app.documents(Memo).create({"text": "t"})
        patched = await Documents.of(app.runtime, Memo, _Handler({"id": "ann"})).patch(memo.id, {"text": "ann's"})
        assert patched.text == "ann's"
        for who in (_Handler({"id": "bob"}), _Handler(None), object()):
            with pytest.raises(HTTPError) as refused:
                await Documents.of(app.runtime, Memo, who).patch(memo.id, {"text": "x"})
            assert refused.value.status == 403
        await app.shutdown()

    run(main())



def test_an_action_without_any_rule_is_as_open_as_its_operation(store_url: str) -> None:
    """No rule for the action nor for its operation: the app's auth requirement of the operation."""
    registry = Registry()

    @registry.resource(scope=lambda handler: {"shelf": "public"}, auth={"update": False})
    class Counter(BaseModel):
        n: int = 0
        shelf: str = "public"

    @registry.action(Counter, "bump")
    async def bump(handler: Any, counter: Counter) -> Counter:
        return await handler.application.documents(Counter).patch(counter.id, {"n": counter.n + 1})

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        url = f"/counter/{client.post('/counter', json={}, headers=bearer(app, {'id': 'ann'})).json()['id']}"
        assert client.post(f"{url}/bump", json={}).json()["n"] == 1  # no user needed, as for an update


def test_an_anonymous_delete_blocked_by_a_reference_is_a_conflict_not_a_sign_in(store_url: str) -> None:
    registry = Registry()

    @registry.resource(auth=False)
    class Label(BaseModel):
        name: str

    @registry.resource(allow={"read": anyone, "write": anyone})
    class Box(BaseModel):
        label: Annotated[str, Ref(Label, on_delete="restrict")]

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        label = client.post("/label", json={"name": "x"}).json()["id"]
        assert client.post("/box", json={"label": label}).code == 201
        blocked = client.delete(f"/label/{label}")
        assert blocked.code == 409 and blocked.json()["errors"][0]["type"] == "referenced"



def test_a_scope_that_needs_a_user_asked_through_a_handler_without_one_is_401() -> None:
    registry = Registry()

    @registry.resource(scope=lambda handler: {"owner": handler.current_user["id"]})
    class Note(BaseModel):
        text: str
        owner: str | None = None

    app = App(registry, db="sqlite:///:memory:")

    async def main() -> None:
        with pytest.raises(HTTPError) as refused:
            await Documents.of(app.runtime, Note, object()).find()
        assert refused.value.status == 401
        await app.shutdown()

    run(main())


# -- deleting what others refer to ------------------------------------------------------------


def tags(own_scope: bool = True) -> Registry:
    registry = Registry()
    mine = {"scope": lambda handler: {"owner": handler.current_user["id"]}} if own_scope else {}

    @registry.resource(allow={"read": anyone, "write": signed_in})
    class Tag(BaseModel):
        name: str

    @registry.resource(**mine)
    class Pinned(BaseModel):
        tag: Annotated[str, Ref(Tag, on_delete="cascade")]
        owner: str | None = None

    @registry.resource(**mine)
    class Note(BaseModel):
        tag: Annotated[str, Ref(Tag, on_delete="set_null")] | None = None
        owner: str | None = None

    @registry.resource(**mine)
    class Hold(BaseModel):
        tag: Annotated[str, Ref(Tag, on_delete="restrict")]
        owner: str | None = None

    class Item(BaseModel):
        label: str
        tag: Annotated[str, Ref(Tag, on_delete="set_null")] | None = None

    class Meta(BaseModel):
        tags: list[Annotated[str, Ref(Tag, on_delete="set_null")]] = []

    @registry.resource(**mine)
    class Board(BaseModel):
        items: list[Item] = []
        meta: Meta = Meta()
        owner: str | None = None

    return registry


def test_cascade_and_set_null_never_change_what_the_deleter_may_not(store_url: str) -> None:
    app = App(tags(), db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        tag = client.post("/tag", json={"name": "public"}, headers=bob).json()["id"]
        pinned = client.post("/pinned", json={"tag": tag}, headers=alice).json()["id"]
        note = client.post("/note", json={"tag": tag}, headers=alice).json()["id"]
        refused = client.delete(f"/tag/{tag}", headers=bob)
        assert refused.code == 409
        assert refused.json()["detail"] == "The document cannot be deleted: other documents refer to it."
        assert "errors" not in refused.json()  # nothing about documents Bob cannot read
        assert client.get(f"/pinned/{pinned}", headers=alice).code == 200
        assert client.get(f"/note/{note}", headers=alice).json()["tag"] == tag
        # Alice may delete (and change) everything that refers to it: her delete goes through
        assert client.delete(f"/tag/{tag}", headers=alice).code == 204
        assert client.get(f"/pinned/{pinned}", headers=alice).code == 404
        assert client.get(f"/note/{note}", headers=alice).json()["tag"] is None


def test_on_delete_needs_the_deleters_right_to_delete_or_change_each_referrer(store_url: str) -> None:
    """Rules, not scopes: a cascade needs the right to delete each referring document (its rule for
    anyone, and for that document), set_null the right to change it and to set that field; else
    the delete is refused (409) and nothing is written. An admin's goes through."""
    registry = Registry()
    admin = role("admin")

    @registry.resource(allow={"read": anyone, "write": signed_in})
    class Topic(BaseModel):
        name: str

    @registry.resource(allow={"read": anyone, "create": signed_in, "update": signed_in, "delete": admin})
    class Locked(BaseModel):  # cascade: only admins delete
        topic: Annotated[str, Ref(Topic, on_delete="cascade")]

    @registry.resource(allow={"read": anyone, "create": signed_in, "update": signed_in, "delete": owner("owner")})
    class Mine(BaseModel):  # cascade: each its owner's
        topic: Annotated[str, Ref(Topic, on_delete="cascade")]
        owner: str | None = None

    @registry.resource(allow={"read": anyone, "create": signed_in, "update": admin, "delete": signed_in})
    class Frozen(BaseModel):  # set_null: only admins change
        topic: Annotated[str, Ref(Topic, on_delete="set_null")] | None = None

    @registry.resource(allow={"read": anyone, "write": signed_in}, writable_by={"topic": admin})
    class Pinned(BaseModel):  # set_null: only admins set the field
        topic: Annotated[str, Ref(Topic, on_delete="set_null")] | None = None

    @registry.resource(allow={"read": anyone, "write": signed_in}, writable_by={"topic": owner("owner")})
    class Bookmark(BaseModel):  # set_null: each its owner's field
        topic: Annotated[str, Ref(Topic, on_delete="set_null")] | None = None
        owner: str | None = None

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    root = bearer(app, {"id": "root", "roles": ["admin"]})
    with serve(app) as client:
        referrers = {}
        for path, body in (("locked", {}), ("mine", {"owner": "bob"}), ("frozen", {}), ("pinned", {})):
            topic = client.post("/topic", json={"name": path}, headers=ann).json()["id"]
            referrers[path] = (topic, client.post(f"/{path}", json={"topic": topic, **body}, headers=root).json())
        for path, (topic, referrer) in referrers.items():
            assert client.delete(f"/topic/{topic}", headers=ann).code == 409, path
            assert client.get(f"/{path}/{referrer['id']}").json() == referrer, path  # untouched
        for path, (topic, _) in referrers.items():  # Bob may delete his own, admins the rest
            assert client.delete(f"/topic/{topic}", headers=bob if path == "mine" else root).code == 204, path
        assert client.get("/locked").json()["items"] == client.get("/mine").json()["items"] == []
        assert [d["topic"] for path in ("frozen", "pinned") for d in client.get(f"/{path}").json()["items"]] == \
            [None, None]
        topic = client.post("/topic", json={"name": "ann's"}, headers=ann).json()["id"]
        mark = client.post("/bookmark", json={"topic": topic, "owner": "ann"}, headers=ann).json()["id"]
        assert client.delete(f"/topic/{topic}", headers=ann).code == 204  # her own bookmark's field
        assert client.get(f"/bookmark/{mark}").json()["topic"] is None


def test_a_cascade_asks_the_referrers_scope_for_deleting(store_url: str) -> None:
    """Replies are read by anyone and deleted by their authors only (a scope told the
    operation): deleting a topic may not cascade to someone else's reply."""
    registry = Registry()

    @registry.resource(auth=False)
    class Topic(BaseModel):
        title: str

    @registry.resource(scope=lambda handler, operation: {"author": handler.current_user["id"]}
                       if operation in ("update", "delete") else None)
    class Reply(BaseModel):
        topic: Annotated[str, Ref(Topic, on_delete="cascade")]
        author: str

    app = App(registry, db=store_url, auth=_auth())
    ann, bob = bearer(app, {"id": "ann"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        topic = client.post("/topic", json={"title": "t"}).json()["id"]
        reply = client.post("/reply", json={"topic": topic, "author": "bob"}, headers=bob).json()["id"]
        assert client.delete(f"/topic/{topic}", headers=ann).code == 409
        assert client.get(f"/reply/{reply}", headers=ann).code == 200
        assert client.delete(f"/topic/{topic}", headers=bob).code == 204  # his own reply goes with it
        assert client.get(f"/reply/{reply}", headers=bob).code == 404


def test_restrict_names_only_what_the_deleter_may_read(store_url: str) -> None:
    app = App(tags(), db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        tag = client.post("/tag", json={"name": "t"}, headers=bob).json()["id"]
        client.post("/hold", json={"tag": tag}, headers=alice)
        hidden = client.delete(f"/tag/{tag}", headers=bob)
        assert hidden.code == 409 and "1 Hold" not in hidden.text and "errors" not in hidden.json()
        client.post("/hold", json={"tag": tag}, headers=bob)
        named = client.delete(f"/tag/{tag}", headers=bob)
        assert named.code == 409
        assert named.json()["errors"] == [{"loc": ["tag"], "msg": "1 Hold document(s) refer to it", "type": "referenced"}]


def test_on_delete_follows_references_inside_embedded_models_and_lists(store_url: str) -> None:
    app = App(tags(own_scope=False), db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        gone, kept = (client.post("/tag", json={"name": n}, headers=ann).json()["id"] for n in ("gone", "kept"))
        board = client.post("/board", json={"items": [{"label": "a", "tag": gone}, {"label": "b", "tag": kept}],
                                            "meta": {"tags": [gone, kept]}}, headers=ann).json()["id"]
        assert client.delete(f"/tag/{gone}", headers=ann).code == 204
        after = client.get(f"/board/{board}", headers=ann).json()
        assert after["items"] == [{"label": "a", "tag": None}, {"label": "b", "tag": kept}]
        assert after["meta"] == {"tags": [kept]}
        written = client.post("/board", json={"items": [{"label": "c", "tag": gone}]}, headers=ann)
        assert written.code == 422 and written.json()["errors"][0]["type"] == "reference_missing"


# -- change feeds send nothing about what a subscriber may not read --------------------------


def notes(**options: Any) -> Registry:
    registry = Registry()

    @registry.resource(**options)
    class Note(BaseModel):
        text: str
        owner: str | None = None
        done: bool = False

    return registry


OWN_BY_SCOPE = {"scope": lambda handler: {"owner": handler.current_user["id"]}}
OWN_BY_RULE = {"allow": {"read": owner() | role("admin"), "write": owner()}}


@pytest.mark.parametrize("declared", [OWN_BY_SCOPE, OWN_BY_RULE], ids=["scope", "rules"])
def test_a_websocket_subscription_sees_only_what_its_user_may_read(store_url: str, declared: dict[str, Any]) -> None:
    import asyncio

    from tests.test_feeds_ws import Socket

    app = App(notes(**declared), db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})

    async def main(client: Any) -> None:
        ws = await Socket.open(client, "/note/_changes", headers=bob)
        await ws.subscribe("all")
        await asyncio.to_thread(client.post, "/note", json={"text": "alice's"}, headers=alice)
        own = (await asyncio.to_thread(client.post, "/note", json={"text": "bob's"}, headers=bob)).json()
        message = await ws.recv()  # Alice's note, committed first, is not there
        assert (message["type"], message["doc"]) == ("created", own)
        ws.conn.close()

    with serve(app) as client:
        asyncio.run(main(client))


@pytest.mark.parametrize("declared", [OWN_BY_SCOPE, OWN_BY_RULE], ids=["scope", "rules"])
def test_a_server_sent_feed_sees_only_what_its_user_may_read(store_url: str, declared: dict[str, Any]) -> None:
    from bzzlite.feeds.testing import EventStream

    app = App(notes(**declared), db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})
    with serve(app) as client, EventStream(client, "/note", headers=bob) as stream:
        stream.wait_ready()
        client.post("/note", json={"text": "alice's"}, headers=alice)
        own = client.post("/note", json={"text": "bob's"}, headers=bob).json()
        event = stream.next()
        assert (event.type, event.data["doc"]) == ("created", own)


@pytest.mark.parametrize("declared", [OWN_BY_SCOPE, OWN_BY_RULE], ids=["scope", "rules"])
def test_a_change_the_journal_knew_nothing_of_is_not_told_outside_the_subscribers_reach(
        mongo_db_url: str, declared: dict[str, Any]) -> None:
    """On MongoDB, a change made by another program to a document the journal never saw has no
    known before; a subscriber that may not read the document after it hears nothing of it."""
    from bson import ObjectId
    from pymongo import MongoClient

    from bzzlite.feeds.testing import EventStream

    mongo = MongoClient(mongo_db_url)
    collection = mongo.get_default_database()["note"]
    theirs, mine = ObjectId(), ObjectId()
    collection.insert_many([{"_id": theirs, "_v": 1, "text": "alice's", "owner": "alice", "done": False},
                            {"_id": mine, "_v": 1, "text": "bob's", "owner": "bob", "done": False}])
    app = App(notes(**declared), db=mongo_db_url, auth=_auth())
    bob = bearer(app, {"id": "bob"})
    try:
        with serve(app) as client, EventStream(client, "/note?done=false", headers=bob) as stream:
            stream.wait_ready()
            collection.update_one({"_id": theirs}, {"$set": {"done": True}})  # another program, out of Bob's reach
            collection.update_one({"_id": mine}, {"$set": {"done": True}})
            event = stream.next()
            assert event.data["doc"] == {"id": str(mine)} and event.data["matches"] is False
    finally:
        mongo.close()


def test_roles_computed_per_request(store_url: str) -> None:
    """Auth(roles=...): asked once per request, sync or async, only when a rule needs roles."""
    asked: list[str] = []

    async def roles_of(user: dict[str, Any]) -> list[str]:
        asked.append(user["id"])
        return ["admin"] if user["id"] in admins else []

    admins = {"root"}
    registry, _ = shop()
    app = App(registry, db=store_url, auth=Auth("s" * 40, [StaticTokenProvider("test", {})], roles=roles_of))
    root = bearer(app, {"id": "root"})
    with serve(app) as client:
        assert client.post("/product", json={"sku": "r", "price": "1.00"}, headers=root).code == 201
        assert asked == ["root"]
        admins.clear()  # taken effect at once, unlike roles signed into a token
        assert client.post("/product", json={"sku": "s", "price": "1.00"}, headers=root).code == 403
        assert client.get("/product").code == 200 and asked == ["root", "root"]  # anyone: no roles asked


def test_the_caller_is_worked_out_once_per_request_and_user(sqlite_url: str) -> None:
    """AuthPolicy.caller, unit-level: the roles function is asked once per request (every
    Documents of the request shares the answer), again when the request's user changed; a single
    role may come as a string."""
    from types import SimpleNamespace

    asked: list[str] = []

    def roles_of(user: dict[str, Any]) -> Any:
        asked.append(user["id"])
        return "admin" if user["id"] == "root" else None

    app = App(shop()[0], db=sqlite_url, auth=Auth("s" * 40, [StaticTokenProvider("test", {})], roles=roles_of))
    policy = app.runtime.auth
    root, ann = {"id": "root"}, {"id": "ann"}
    handler = SimpleNamespace(current_user=root)
    first = run(policy.caller(handler))
    assert first == Caller(root, frozenset({"admin"})) and asked == ["root"]
    assert run(policy.caller(handler)) is first and asked == ["root"]  # the same request: not asked again
    handler.current_user = ann  # signed in as another user within the request
    assert run(policy.caller(handler)) == Caller(ann, frozenset()) and asked == ["root", "ann"]
    handler.current_user = None
    assert run(policy.caller(handler)) == ANONYMOUS and asked == ["root", "ann"]


def test_a_reference_to_what_a_rule_hides_is_a_missing_reference(store_url: str) -> None:
    """As with a scope, with a read rule: Bob cannot name Alice's private note (422), nor learn
    that it exists; Alice can."""
    registry = Registry()

    @registry.resource(allow={"read": owner("owner"), "write": signed_in})
    class Secret(BaseModel):
        text: str
        owner: str | None = None

    @registry.resource(allow={"read": anyone, "write": signed_in})
    class Mention(BaseModel):
        secret: Annotated[str, Ref(Secret)]

    @registry.action(Mention, "peek", allow=anyone)
    async def peek(handler: Any, mention: Mention) -> dict[str, str]:
        """The request's documents: a hidden one is NotFound, as an unknown id, for app code too."""
        try:
            return {"text": (await handler.documents(Secret).get(mention.secret)).text}
        except NotFound as exc:
            return {"not found": str(exc)}

    app = App(registry, db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        secret = client.post("/secret", json={"text": "s", "owner": "alice"}, headers=alice).json()["id"]
        refused = client.post("/mention", json={"secret": secret}, headers=bob)
        assert refused.code == 422 and [e["type"] for e in refused.json()["errors"]] == ["reference_missing"]
        mention = client.post("/mention", json={"secret": secret}, headers=alice).json()["id"]
        assert client.post(f"/mention/{mention}/peek", json={}, headers=alice).json() == {"text": "s"}
        assert client.post(f"/mention/{mention}/peek", json={}, headers=bob).json() == {"not found": secret}


def test_an_actions_own_rule_on_a_resource_without_rules(store_url: str) -> None:
    """A resource with no scope and no rules: an action's own rule still decides (a role), and an
    action without one follows the update requirement (public here)."""
    registry = Registry()

    @registry.resource(auth={"update": False})
    class Memo(BaseModel):
        text: str

    @registry.action(Memo, "archive", allow=role("admin"))
    async def archive(handler: Any, memo: Memo) -> dict[str, str]:
        return {"archived": memo.id}

    @registry.action(Memo, "touch")
    async def touch(handler: Any, memo: Memo) -> dict[str, str]:
        return {"touched": memo.id}

    app = App(registry, db=store_url, auth=_auth())
    ann, root = bearer(app, {"id": "ann"}), bearer(app, {"id": "root", "roles": ["admin"]})
    with serve(app) as client:
        memo = client.post("/memo", json={"text": "m"}, headers=root).json()["id"]
        assert client.post(f"/memo/{memo}/archive", json={}, headers=ann).code == 403
        assert client.post(f"/memo/{memo}/archive", json={}).code == 401
        assert client.post(f"/memo/{memo}/archive", json={}, headers=root).json() == {"archived": memo}
        assert client.post(f"/memo/{memo}/touch", json={}).json() == {"touched": memo}  # anyone, as updates


def test_a_nested_route_may_not_hand_a_document_to_someone_else(store_url: str) -> None:
    """The owner field of an owner rule is a reference here: its nested route (PUT /car/{id}/owner)
    may not change it either, as a PATCH may not."""
    registry = Registry()

    @registry.resource(allow={"read": anyone, "write": signed_in})
    class Person(BaseModel):
        name: str

    @registry.resource(allow={"read": anyone, "create": owner("owner"), "update": owner("owner")})
    class Car(BaseModel):
        model: str
        owner: Annotated[str, Ref(Person)] | None = None

    app = App(registry, db=store_url, auth=_auth())
    with serve(app) as client:
        someone = bearer(app, {"id": "someone"})
        ann_id, bob_id = (client.post("/person", json={"name": n}, headers=someone).json()["id"] for n in "AB")
        ann = bearer(app, {"id": ann_id})
        car = client.post("/car", json={"model": "T"}, headers=ann).json()
        assert car["owner"] == ann_id
        assert client.patch(f"/car/{car['id']}", json={"owner": bob_id}, headers=ann).code == 403
        assert client.put(f"/car/{car['id']}/owner", json={"id": bob_id}, headers=ann).code == 403
        assert client.get(f"/car/{car['id']}").json()["owner"] == ann_id


def test_a_nested_write_is_judged_on_the_document_with_its_id(store_url: str) -> None:
    """Field rules see the document as stored, its id included, before and after a nested write."""
    registry = Registry()
    unlocked: set[str] = set()

    class Place(BaseModel):
        city: str

    @registry.resource(allow={"read": anyone, "write": signed_in},
                       writable_by={"home": rule(lambda user, doc: doc.get("id") in unlocked)})
    class Flat(BaseModel):
        name: str
        home: Place | None = None

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        flat = client.post("/flat", json={"name": "f"}, headers=ann).json()["id"]
        assert client.put(f"/flat/{flat}/home", json={"city": "Oslo"}, headers=ann).code == 403
        unlocked.add(flat)
        assert client.put(f"/flat/{flat}/home", json={"city": "Oslo"}, headers=ann).json() == {"city": "Oslo"}
        assert client.patch(f"/flat/{flat}/home", json={"city": "Rome"}, headers=ann).json() == {"city": "Rome"}


def test_a_nested_write_is_judged_by_the_documents_update_rule(store_url: str) -> None:
    """A nested route changes its parent: the parent's update rule decides for that document (a
    closed ticket, which its owner may read but not change, is a 403 there too)."""
    registry = Registry()

    class Place(BaseModel):
        city: str

    @registry.resource(allow={"read": owner("owner"), "create": owner("owner"),
                              "update": owner("owner") & where(status="open")})
    class Ticket(BaseModel):
        owner: str | None = None
        status: Literal["open", "closed"] = "open"
        place: Place | None = None

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        opened = client.post("/ticket", json={}, headers=ann).json()["id"]
        closed = client.post("/ticket", json={"status": "closed"}, headers=ann).json()["id"]
        assert client.put(f"/ticket/{opened}/place", json={"city": "Oslo"}, headers=ann).json() == {"city": "Oslo"}
        assert client.put(f"/ticket/{closed}/place", json={"city": "Oslo"}, headers=ann).code == 403
        assert client.get(f"/ticket/{closed}", headers=ann).json()["place"] is None


def test_a_write_in_a_transaction_is_judged_by_the_callers_rules(store_url: str) -> None:
    """Documents bound to the request keep its rules inside handler.transaction(): a document the
    caller may read but not change (its update rule's condition) is refused there too."""
    registry = Registry()

    @registry.resource(allow={"read": owner("owner"), "create": owner("owner"),
                              "update": owner("owner") & where(status="open")})
    class Ticket(BaseModel):
        text: str
        owner: str | None = None
        status: Literal["open", "closed"] = "open"

    @registry.action(Ticket, "retitle", allow=owner("owner"))
    async def retitle(handler: Any, ticket: Ticket) -> Ticket:
        async with handler.transaction():
            return await handler.documents(Ticket).patch(ticket.id, {"text": "retitled"})

    app = App(registry, db=store_url, auth=_auth())
    ann = bearer(app, {"id": "ann"})
    with serve(app) as client:
        opened = client.post("/ticket", json={"text": "a", "owner": "ann"}, headers=ann).json()
        closed = client.post("/ticket", json={"text": "b", "owner": "ann", "status": "closed"}, headers=ann).json()
        assert client.post(f"/ticket/{opened['id']}/retitle", json={}, headers=ann).json()["text"] == "retitled"
        assert client.post(f"/ticket/{closed['id']}/retitle", json={}, headers=ann).code == 403
        assert client.get(f"/ticket/{closed['id']}", headers=ann).json()["text"] == "b"


def test_a_reference_to_what_one_may_not_read_is_a_missing_reference(store_url: str) -> None:
    """Naming another user's document answers exactly as naming one that does not exist: no probe."""
    registry = Registry()
    mine = {"scope": lambda handler: {"owner": handler.current_user["id"]}}

    @registry.resource(**mine)
    class Note(BaseModel):
        text: str
        owner: str | None = None

    @registry.resource(**mine)
    class Link(BaseModel):
        note: Annotated[str, Ref(Note)]
        owner: str | None = None

    @registry.resource()  # shared by everyone
    class Board(BaseModel):
        title: str
        note: Annotated[str, Ref(Note)]

    app = App(registry, db=store_url, auth=_auth())
    alice, bob = bearer(app, {"id": "alice"}), bearer(app, {"id": "bob"})
    with serve(app) as client:
        theirs = client.post("/note", json={"text": "alice's"}, headers=alice).json()["id"]
        missing = "0" * 24
        answers = [client.post("/link", json={"note": note}, headers=bob) for note in (theirs, missing)]
        assert [a.code for a in answers] == [422, 422]
        assert [e["type"] for a in answers for e in a.json()["errors"]] == ["reference_missing"] * 2
        assert answers[0].json()["errors"][0]["msg"].replace(theirs, missing) == answers[1].json()["errors"][0]["msg"]
        assert client.post("/link", json={"note": theirs}, headers=alice).code == 201
        # a reference a document already holds is not judged again: Bob may edit the rest of it
        board = client.post("/board", json={"title": "a", "note": theirs}, headers=alice).json()
        edited = client.patch(f"/board/{board['id']}", json={"title": "b"}, headers=bob)
        assert edited.code == 200 and edited.json() == {**board, "title": "b"}
        replaced = client.put(f"/board/{board['id']}", json={"title": "c", "note": theirs}, headers=bob)
        assert replaced.code == 200 and replaced.json()["title"] == "c"
