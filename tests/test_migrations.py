"""Models change, stored documents stay: model versions, migrations, bzzlite check and migrate.

Every scenario stores documents with one version of a model (an App on one Registry) and reads,
checks or migrates them with the next (an App on another Registry, the same store), on SQLite
and on MongoDB. docs/changing-models.md describes the behaviour; its cookbook's recipes are run
here (test_recipe), straight from the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from bzzlite import App, Registry, Unique
from bzzlite.errors import ConfigurationError, ConstraintBroken, InvalidDocument
from bzzlite.feeds.events import Change, Decoded
from bzzlite.feeds.testing import EventStream
from bzzlite.models.migrations import MARK, Fitted, fingerprint, rename, stored_version
from bzzlite.stores import migration
from bzzlite.testing import record, serve

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "changing-models.md"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def model_of(registry: Registry) -> type[BaseModel]:
    return next(iter(registry.resources.values())).model


def spec_of(registry: Registry) -> Any:
    return next(iter(registry.resources.values()))


async def store_docs(registry: Registry, url: str, docs: list[dict[str, Any]]) -> list[str]:
    """Create ``docs`` with the app of ``registry`` (one version of the model); their ids."""
    app = App(registry, db=url)
    try:
        return [d.id for d in await app.documents(model_of(registry)).create_many(docs)]  # type: ignore[attr-defined]
    finally:
        await app.shutdown()


def stored(registry: Registry, url: str, docs: list[dict[str, Any]]) -> list[str]:
    return run(store_docs(registry, url, docs))


async def _with_store(registry: Registry, url: str, work: Any) -> Any:
    app = App(registry, db=url)
    app.runtime.store.tolerate_broken = True
    await app.startup()
    try:
        return await work(app.runtime.store, list(registry.resources.values()))
    finally:
        await app.shutdown()


def migrate(registry: Registry, url: str, **options: Any) -> migration.Report:
    return run(_with_store(registry, url, lambda store, specs: migration.migrate(store, specs, **options)))[0]


def check(registry: Registry, url: str, **options: Any) -> migration.Report:
    return run(_with_store(registry, url, lambda store, specs: migration.check(store, specs, **options)))[0]


def raw(registry: Registry, url: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every stored document as the store keeps it: id -> (version, fields with the mark)."""
    async def scan(store: Any, specs: list[Any]) -> Any:
        return await store.scan(specs[0], None, 10_000)

    return {r.id: (r.version, r.doc) for r in run(_with_store(registry, url, scan))}


def problem_names(response: Any, resource: str, id_: str) -> None:
    """The deliberate answer to a stored document that does not fit: 500 problem+json naming it."""
    assert response.code == 500, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500 and f"{resource}/{id_}" in body["detail"]
    assert "Traceback" not in response.text and "does not match" in body["detail"]


# -- the models of the scenarios -----------------------------------------------------------


def person_v1() -> Registry:
    registry = Registry()

    @registry.resource(name="person")
    class Person(BaseModel):
        name: str
        age: int = 0

    return registry


def person_v2(migrations: dict[int, Any] | None = None) -> Registry:
    """The issue's change: ``age`` becomes a string, ``email`` is added and required."""
    registry = Registry()

    @registry.resource(name="person", migrations=migrations)
    class Person(BaseModel):
        name: str
        age: str
        email: str

    return registry


def to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    doc["age"] = str(doc["age"])
    doc["email"] = f"{doc['name']}@example.org"
    return doc


# -- declaring migrations ----------------------------------------------------------------------


class Thing(BaseModel):
    name: str


@pytest.mark.parametrize("migrations, message", [
    ({3: to_v2}, "from 2 .* missing 2"),
    ({1: to_v2}, "1 is not a version"),
    ({2: to_v2, 4: to_v2}, "missing 3"),
    ({"2": to_v2}, "keys are the versions"),
    ({2: "to_v2"}, "not a function"),
    ({2: lambda: None}, "must take the stored document"),
    ({2: lambda doc, id, more: None}, "must take the stored document"),
    ([to_v2], "takes a dict"),
])
def test_a_wrong_declaration_is_a_configuration_error_naming_the_fix(migrations, message):
    with pytest.raises(ConfigurationError, match=message):
        Registry().resource(migrations=migrations)(Thing)


def thing(migrations: dict[int, Any] | None = None) -> Any:
    registry = Registry()
    registry.resource(migrations=migrations)(Thing)
    return spec_of(registry).versions


def test_the_version_is_the_last_step_and_the_mark_carries_it():
    assert thing({2: to_v2, 3: to_v2}).version == 3
    versions = thing()
    assert versions.version == 1
    assert re.fullmatch(r"1:[0-9a-f]{12}", versions.mark)


def test_the_fingerprint_follows_the_shape_not_the_descriptions():
    class A(BaseModel):
        name: str

    class B(BaseModel):
        name: str = Field(description="what it is called", title="Name!")

    class C(BaseModel):
        name: int

    class D(BaseModel):
        title: str  # a field named like a schema keyword is a field: it counts

    assert fingerprint(A) == fingerprint(B)
    assert fingerprint(A) != fingerprint(C)
    assert fingerprint(A) != fingerprint(D)


FINGERPRINTED = """
import datetime, enum, sys
from pydantic import BaseModel, Field
from bzzlite.models.migrations import fingerprint

class Color(enum.Enum):
    RED = "red"

class Opaque:
    pass

class Address(BaseModel):
    city: str = "Paris"

class Model(BaseModel, arbitrary_types_allowed=True):
    when: datetime.datetime = datetime.datetime(2024, 1, 1)
    color: Color = Color.RED
    address: Address = Field(default_factory=Address)
    opaque: Opaque = Field(default_factory=Opaque)  # an address in its repr, no JSON schema

class Plain(BaseModel):
    when: datetime.datetime = datetime.datetime(2024, 1, 1)
    color: Color = Color.RED
    address: Address = Field(default_factory=Address)

print(fingerprint(Model), fingerprint(Plain))
"""


def test_every_process_computes_the_same_fingerprint(tmp_path):
    """Workers and restarts must agree on the mark, or every document would be fitted on every read."""
    from tests.test_docs import checkout_env

    script = tmp_path / "fingerprint.py"
    script.write_text(FINGERPRINTED)
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                           env={**checkout_env(), "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)]
    assert runs[0] == runs[1]
    opaque, plain = runs[0].split()
    assert opaque == "None" and re.fullmatch(r"[0-9a-f]{12}", plain)  # no schema: every read validates


def test_reading_a_current_document_is_a_dict_lookup():
    versions = thing({2: to_v2})
    doc = {"name": "a", MARK: versions.mark}
    assert versions.load("x", doc) is doc and doc == {"name": "a"}  # the mark popped, nothing validated
    bad = {"name": 3, MARK: versions.mark}  # trusted: written by this very model
    assert versions.load("x", bad) == {"name": 3}


def test_a_step_may_take_the_id_change_the_dict_in_place_and_rename():
    registry = Registry()

    @registry.resource(migrations={2: lambda doc: doc.update(kind="x"), 3: lambda doc, id: {**doc, "from": id},
                                   4: rename("from", "origin")})
    class Item(BaseModel):
        kind: str
        origin: str

    assert spec_of(registry).versions.load("abc", {}) == {"kind": "x", "origin": "abc"}


@pytest.mark.parametrize("doc, reason", [
    ({"name": "a", MARK: "3:abc"}, "stored by version 3 of the model, newer than this app's version 2"),
    ({"name": "a", MARK: "zz"}, "unreadable model version"),
    ({"other": "a"}, "KeyError"),
])
def test_what_cannot_be_fitted_is_an_invalid_document_saying_why(doc, reason):
    registry = Registry()

    @registry.resource(migrations={2: lambda doc: {**doc, "name": doc["name"].upper()}})
    class Thing2(BaseModel):
        name: str

    with pytest.raises(InvalidDocument) as caught:
        spec_of(registry).versions.load("0123456789abcdef01234567", dict(doc))  # load pops the mark: the
        # parameter stays whole for another run in the same process (mutmut's runs fork from one)
    assert caught.value.resource == "/thing2" and caught.value.id == "0123456789abcdef01234567"
    assert reason in str(caught.value)



def test_the_stored_mark_names_the_version():
    assert [stored_version(mark) for mark in (None, "1:abc", "2:abc", "3", "0:abc", "-1:abc", "x:abc", 2, b"2:abc")] \
        == [1, 1, 2, 3, None, None, None, None, None]


def test_why_a_document_cannot_be_fitted_is_told_as_an_error_list():
    """``fit`` (what ``bzzlite check`` reports, and the 500's reasons): the version it was stored
    by, and errors typed as the model's validation errors are."""

    def boom(doc):
        raise ValueError("no")

    versions = thing({2: boom})
    assert versions.fit({"name": "a"}, 5) == Fitted(None, None, [
        {"loc": [MARK], "msg": "unreadable model version 5", "type": "model_version"}])
    assert versions.fit({"name": "a"}, "3:abc") == Fitted(None, 3, [
        {"loc": [], "msg": "stored by version 3 of the model, newer than this app's version 2",
         "type": "model_version"}])
    assert versions.fit({"name": "a"}, None) == Fitted(None, 1, [
        {"loc": [], "msg": "the migration to version 2 (boom) failed: ValueError: no", "type": "migration_failed"}])
    assert thing({2: lambda doc: [doc]}).fit({"name": "a"}, None) == Fitted(None, 1, [
        {"loc": [], "msg": "the migration to version 2 (<lambda>) returned list, not a dict",
         "type": "migration_failed"}])
    with pytest.raises(InvalidDocument) as caught:
        versions.load("0123456789abcdef01234567", {"name": "a", MARK: "3:abc"})
    assert caught.value.model == "Thing" and "does not match the Thing model" in str(caught.value)


def test_fit_validates_and_dumps_or_says_why_not():
    registry = Registry()

    @registry.resource(migrations={2: lambda doc: doc})
    class Priced(BaseModel):
        name: str
        price: Decimal = Decimal(0)

    versions = spec_of(registry).versions
    # values JSON has no type for are validated as their text; the document as the model dumps it
    assert versions.fit({"name": "a", "price": Decimal("1.50")}, None) == Fitted({"name": "a", "price": "1.50"}, 1)
    assert versions.fit({"name": "a", "price": Decimal("1.50")}, None, dump=False) == Fitted(
        {"name": "a", "price": Decimal("1.50")}, 1)  # validated only: the document as it was
    assert versions.fit({"name": "a", "gone": 1}, None, dump=False) == Fitted({"name": "a"}, 1, [], ("gone",))
    assert versions.fit({"name": 3, "gone": 1}, None) == Fitted(None, 1, [
        {"loc": ["name"], "msg": "Input should be a valid string", "type": "string_type"}], ("gone",))
    assert versions.fit({"name": 2 ** 70, "gone": 1}, "2:other") == Fitted(None, 2, [
        {"loc": [], "msg": "a value cannot be read: Integer exceeds 64-bit range", "type": "unreadable"}], ("gone",))


def test_the_document_a_step_is_given_the_id_of_is_the_one_read():
    registry = Registry()

    @registry.resource(migrations={2: lambda doc, id: {**doc, "origin": id}, 3: rename("old", "new")})
    class Item(BaseModel):
        origin: str
        new: str = ""

    versions = spec_of(registry).versions
    assert versions.fit({}, None).doc == {"origin": "", "new": ""}  # no id given: an empty one
    assert versions.read("abc", {"old": "x"}) == {"origin": "abc", "new": "x"}  # the journal's copy, version 1
    # stored by version 3 under another fingerprint: validated as version 3, no step run again
    assert versions.read("abc", {"origin": "o", "new": "n", MARK: "3:other"}) == {"origin": "o", "new": "n"}
    with pytest.raises(InvalidDocument) as caught:
        versions.read("abc", {"origin": 1, MARK: "3:other"})
    assert caught.value.id == "abc" and caught.value.resource == "/item"


def test_the_journals_documents_are_read_whatever_values_they_hold():
    """A change the journal keeps may hold values JSON has no type for (a Decimal): still read."""
    registry = Registry()

    @registry.resource(migrations={2: lambda doc: doc})
    class Priced(BaseModel):
        price: Decimal

    journal_doc = {"price": Decimal("1.50")}  # stored by version 1
    assert spec_of(registry).versions.read("x", journal_doc) == {"price": "1.50"}  # as the model dumps it
    assert journal_doc == {"price": Decimal("1.50")}  # shared with other subscribers: left as it is


# -- reading: served as the model says, or a deliberate 500 -----------------------------------


def test_a_document_that_fails_the_model_is_never_served_as_valid(store_url):
    """The issue's first case: ``age`` became a string and ``email`` was added, no migration."""
    [id_] = stored(person_v1(), store_url, [{"name": "a", "age": 3}])
    registry = person_v2()
    app = App(registry, db=store_url)
    with serve(app) as client:
        for response in (client.get(f"/person/{id_}"), client.get("/person"), client.get("/person?name=a"),
                         client.patch(f"/person/{id_}", json={"name": "b"}),  # not a 422 about age and email
                         client.put(f"/person/{id_}", json={"name": "b", "age": "3", "email": "e"}),
                         client.delete(f"/person/{id_}")):
            problem_names(response, "/person", id_)
        assert client.get("/person?name=zzz").json()["total"] == 0  # pages without it are served
    assert raw(person_v1(), store_url)[id_][1]["age"] == 3  # nothing written


def test_the_document_api_raises_invalid_document(store_url):
    [id_] = stored(person_v1(), store_url, [{"name": "a", "age": 3}])
    registry = person_v2()

    async def main() -> None:
        app = App(registry, db=store_url)
        try:
            people = app.documents(model_of(registry))
            with pytest.raises(InvalidDocument) as caught:
                await people.get(id_)
            assert caught.value.id == id_ and {e["loc"][0] for e in caught.value.errors} == {"age", "email"}
            with pytest.raises(InvalidDocument):
                await people.find()
        finally:
            await app.shutdown()

    run(main())


def test_the_500_is_logged_with_the_reasons_and_a_pointer_to_check(store_url, caplog):
    [id_] = stored(person_v1(), store_url, [{"name": "a", "age": 3}])
    with caplog.at_level(logging.WARNING, logger="bzzlite"), serve(App(person_v2(), db=store_url)) as client:
        assert client.get(f"/person/{id_}").code == 500
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"/person/{id_}" in logged and "age: Input should be a valid string" in logged
    assert "bzzlite check" in logged


def test_nested_routes_and_references_answer_the_same(store_url):
    before, after = Registry(), Registry()

    class Address(BaseModel):
        city: str

    @before.resource(name="shop")
    class ShopV1(BaseModel):
        name: str
        address: Address

    [id_] = stored(before, store_url, [{"name": "s", "address": {"city": "P"}}])

    class Address2(BaseModel):
        city: str
        zip: str  # required now, no migration

    @after.resource(name="shop")
    class ShopV2(BaseModel):
        name: str
        address: Address2

    with serve(App(after, db=store_url)) as client:
        problem_names(client.get(f"/shop/{id_}/address"), "/shop", id_)
        problem_names(client.patch(f"/shop/{id_}/address", json={"city": "L"}), "/shop", id_)


def test_with_a_migration_old_documents_are_served_upgraded_everywhere(store_url):
    ids = stored(person_v1(), store_url, [{"name": "a", "age": 3}, {"name": "b"}])
    registry = person_v2({2: to_v2})
    with serve(App(registry, db=store_url)) as client:
        item = client.get(f"/person/{ids[0]}")
        assert item.code == 200
        assert item.json() == {"id": ids[0], "name": "a", "age": "3", "email": "a@example.org"}
        assert item.headers["ETag"] == '"1"'  # the stored version: reading writes nothing
        listing = client.get("/person?sort=name").json()
        assert [p["age"] for p in listing["items"]] == ["3", "0"]
        patched = client.patch(f"/person/{ids[1]}", json={"name": "c"}, headers={"If-Match": '"1"'})
        assert patched.code == 200, patched.text  # not a 422 about fields the client never sent
        assert patched.json() == {"id": ids[1], "name": "c", "age": "0", "email": "b@example.org"}
    versions = spec_of(registry).versions
    after = raw(registry, store_url)
    assert after[ids[0]] == (1, {"name": "a", "age": 3, MARK: spec_of(person_v1()).versions.mark})
    assert after[ids[1]] == (2, {"name": "c", "age": "0", "email": "b@example.org", MARK: versions.mark})


def test_a_field_stored_but_no_longer_declared_is_not_served_and_warned_about_once(store_url, caplog):
    """The issue's rename without a migration: served with the new field's default, and said so."""
    ids = stored(person_v1(), store_url, [{"name": "a"}, {"name": "b"}])
    registry = Registry()

    @registry.resource(name="person")
    class Person(BaseModel):
        full_name: str = ""
        age: int = 0

    with caplog.at_level(logging.WARNING, logger="bzzlite"), serve(App(registry, db=store_url)) as client:
        assert client.get(f"/person/{ids[0]}").json() == {"id": ids[0], "full_name": "", "age": 0}
        client.get("/person")
    warnings = [r.getMessage() for r in caplog.records if "does not declare" in r.getMessage()]
    assert len(warnings) == 1 and "name" in warnings[0] and "migration" in warnings[0]
    report = check(registry, store_url)
    assert report.undeclared["name"].count == 2 and report.ok  # a warning, not a failure
    kept = migrate(registry, store_url)
    assert kept.kept == 2 and not kept.ok  # a migration would lose them: left as stored
    assert all(doc["name"] for _, doc in raw(registry, store_url).values())
    dropped = migrate(registry, store_url, drop_undeclared=True)
    assert sum(dropped.written.values()) == 2 and dropped.ok
    assert all("name" not in doc for _, doc in raw(registry, store_url).values())


def test_a_document_stored_by_a_newer_model_is_not_served_by_an_older_one(store_url):
    [id_] = stored(person_v2({2: to_v2}), store_url, [{"name": "a", "age": "3", "email": "e"}])
    with serve(App(person_v1(), db=store_url)) as client:
        response = client.get(f"/person/{id_}")
        problem_names(response, "/person", id_)


def test_a_value_stored_loosely_is_served_as_the_model_types_it(store_url):
    """A model that changed without a new version: documents not written by it are validated and
    dumped again, so the answer matches /openapi.json (``"3"`` stored, ``3`` served)."""
    before = Registry()

    @before.resource(name="reading")
    class R1(BaseModel):
        value: str

    [id_] = stored(before, store_url, [{"value": "3"}])
    after = Registry()

    @after.resource(name="reading")
    class R2(BaseModel):
        value: int

    with serve(App(after, db=store_url)) as client:
        assert client.get(f"/reading/{id_}").json() == {"id": id_, "value": 3}


# -- filters before and after bzzlite migrate ------------------------------------------------


def test_filters_compare_stored_values_until_migrate_then_reach_every_document(store_url):
    """What docs/changing-models.md says, exactly: before migrate a filter on a changed field
    compares the stored value; sorts and cursors too; after it every filter reaches everything."""
    ids = stored(person_v1(), store_url, [{"name": f"p{i}", "age": i} for i in range(5)])
    registry = person_v2({2: to_v2})
    with serve(App(registry, db=store_url)) as client:
        assert client.get("/person?age=3").json()["total"] == 0  # stored as 3, the filter asks for "3"
        assert client.get("/person?email=p3@example.org").json()["total"] == 0  # not stored yet
        assert client.get("/person?email__exists=false").json()["total"] == 5
        assert client.get("/person?name=p3").json()["items"][0]["age"] == "3"  # unchanged fields: as usual
        names, url = [], "/person?sort=age&per_page=2&after="
        while url:  # a sort on the retyped field: cursors hold the stored values, which the store compares
            page = client.get(url)
            names += [p["name"] for p in page.json()["items"]]
            link = re.search(r'<([^>]*)>; rel="next"', page.headers.get("Link", ""))
            url = link.group(1) if link else ""
        assert names == [f"p{i}" for i in range(5)]  # none lost, none twice
    report = migrate(registry, store_url)
    assert report.written == {1: 5} and report.ok
    with serve(App(registry, db=store_url)) as client:
        assert [p["id"] for p in client.get("/person?age=3").json()["items"]] == [ids[3]]
        assert client.get("/person?email=p3@example.org").json()["total"] == 1
        assert client.get("/person?email__exists=false").json()["total"] == 0


# -- bzzlite migrate -----------------------------------------------------------------------------


def test_migrate_keeps_versions_is_idempotent_and_dry_run_writes_nothing(store_url):
    ids = stored(person_v1(), store_url, [{"name": f"p{i}", "age": i} for i in range(7)])
    registry = person_v2({2: to_v2})
    dry = migrate(registry, store_url, dry_run=True, batch=3)
    assert dry.written == {1: 7} and dry.total == 7
    assert all(doc[MARK] == spec_of(person_v1()).versions.mark for _, doc in raw(registry, store_url).values())
    report = migrate(registry, store_url, batch=3)
    assert report.written == {1: 7} and report.current == 0 and report.ok
    after = raw(registry, store_url)
    assert after[ids[2]] == (1, {"name": "p2", "age": "2", "email": "p2@example.org",
                                 MARK: spec_of(registry).versions.mark})  # the version, and so the ETag, kept
    again = migrate(registry, store_url, batch=3)
    assert again.written == {} and again.current == 7  # nothing left to do
    assert raw(registry, store_url) == after


def test_migrate_resumes_after_a_crash(store_url, monkeypatch):
    stored(person_v1(), store_url, [{"name": f"p{i}", "age": i} for i in range(10)])
    registry = person_v2({2: to_v2})
    calls = 0
    from bzzlite.stores.base import Store

    def crash_after_two_batches(store: Store) -> None:
        real = type(store).rewrite

        async def rewrite(self: Any, spec: Any, rewrites: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("the machine went down")
            return await real(self, spec, rewrites)

        monkeypatch.setattr(type(store), "rewrite", rewrite)

    async def crashing(store: Any, specs: Any) -> Any:
        crash_after_two_batches(store)
        return await migration.migrate(store, specs, batch=3)

    with pytest.raises(RuntimeError):
        run(_with_store(registry, store_url, crashing))
    monkeypatch.undo()
    marks = [doc[MARK] for _, doc in raw(registry, store_url).values()]
    assert marks.count(spec_of(registry).versions.mark) == 6  # two batches of three were committed
    report = migrate(registry, store_url, batch=3)
    assert report.current == 6 and report.written == {1: 4} and report.ok


def test_migrate_never_overwrites_a_concurrent_write(store_url, monkeypatch):
    """A document the app changes between migrate's read and its write: the write is conditioned
    on the version read, so it does not happen; the document is read again and left alone."""
    ids = stored(person_v1(), store_url, [{"name": f"p{i}", "age": i} for i in range(4)])
    registry = person_v2({2: to_v2})

    async def racing(store: Any, specs: Any) -> Any:
        spec = specs[0]
        real = type(store).rewrite
        app = App(registry, db=store.url)

        async def rewrite(self: Any, spec_: Any, rewrites: Any) -> Any:
            if self is store:  # the app patches one document after migrate read it
                await app.documents(spec.model).patch(ids[1], {"name": "changed"})
            return await real(self, spec_, rewrites)

        monkeypatch.setattr(type(store), "rewrite", rewrite)
        try:
            return await migration.migrate(store, specs)
        finally:
            monkeypatch.undo()
            await app.shutdown()

    [report] = run(_with_store(registry, store_url, racing))
    after = raw(registry, store_url)
    assert after[ids[1]][1]["name"] == "changed" and after[ids[1]][0] == 2  # the app's write stands
    assert report.written == {1: 3} and report.current == 1 and report.ok


def test_migrate_reports_what_it_leaves_and_why(store_url):
    stored(person_v1(), store_url, [{"name": "ok", "age": 1}, {"name": "boom", "age": 2}])

    def fragile(doc: dict[str, Any]) -> dict[str, Any]:
        if doc["name"] == "boom":
            raise ValueError("cannot upgrade boom")
        return to_v2(doc)

    registry = person_v2({2: fragile})
    report = migrate(registry, store_url)
    assert report.written == {1: 1} and report.failing == 1 and not report.ok
    [(where, reason)] = report.failures
    assert "ValueError: cannot upgrade boom" in reason and "migration to version 2 (fragile)" in reason


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mongo", marks=pytest.mark.real_mongo(
    "the stand-in's change events carry no updateDescription, by which the journal tells a migration"))])
def test_migrate_sends_no_signal_and_the_feed_no_event(kind, request, tmp_path):
    """A migration is nobody's change to a document: same version (and ETag), no post_update
    signal, no change event."""
    store_url = f"sqlite:///{tmp_path}/test.db" if kind == "sqlite" else request.getfixturevalue("mongo_db_url")
    ids = stored(person_v1(), store_url, [{"name": "a", "age": 1}, {"name": "b", "age": 2}])
    registry = person_v2({2: to_v2})
    app = App(registry, db=store_url)
    with serve(app) as client, EventStream(client, "/person") as feed, \
            record(registry.signals.post_update_instance) as updates:
        feed.wait_ready()
        assert migrate(registry, store_url).written == {1: 2}
        client.patch(f"/person/{ids[0]}", json={"name": "c"})
        event = feed.next()  # the first event after the migration is the user's change
        assert event.type == "updated" and event.data["doc"]["name"] == "c"
        assert event.data["updated_fields"] == {"name": {"from": "a", "to": "c"}}
        assert len(updates) == 1
        assert client.get(f"/person/{ids[1]}").headers["ETag"] == '"1"'


def test_a_change_of_a_document_that_does_not_fit_tells_feeds_only_its_id():
    registry = person_v2()
    spec = spec_of(registry)
    change = Change(7, "/person", "created", "0123456789abcdef01234567", {"name": "a", "age": 3})
    event = Decoded(spec, change).event_for((), None)
    assert event is not None
    assert b'"doc":{"id":"0123456789abcdef01234567"}' in event.body and b'"matches":false' in event.body
    fine = Change(8, "/person", "updated", "0123456789abcdef01234567", {"name": "a", "age": "3", "email": "e"},
                  old={"name": "a", "age": 3})  # before: does not fit; after: fits
    decoded = Decoded(spec, fine)
    assert decoded.after == {"id": "0123456789abcdef01234567", "name": "a", "age": "3", "email": "e"}
    assert decoded.unknown and decoded.updated_fields is None


# -- bzzlite check ---------------------------------------------------------------------------------


def test_check_counts_per_field_with_example_ids(store_url):
    ids = stored(person_v1(), store_url, [{"name": f"p{i}", "age": i} for i in range(6)])
    seen: list[tuple[int, int]] = []
    report = check(person_v2(), store_url, batch=4, progress=lambda r, done, total: seen.append((done, total)))
    assert report.total == 6 and report.failing == 6 and not report.ok
    assert set(report.failures) == {("age", "Input should be a valid string"), ("email", "Field required")}
    finding = report.failures[("email", "Field required")]
    assert finding.count == 6 and finding.examples == ids[:3]
    assert seen == [(0, 6), (4, 6), (6, 6)]
    fine = check(person_v2({2: to_v2}), store_url)
    assert fine.ok and fine.upgradable == {1: 6} and fine.current == 0


def test_check_finds_unique_values_shared_as_stored_or_once_upgraded(store_url):
    before, after = Registry(), Registry()

    @before.resource(name="account")
    class A1(BaseModel):
        email: str

    ids = stored(before, store_url, [{"email": "Ann@x.org"}, {"email": "ann@x.org"}, {"email": "bob@x.org"}])

    @after.resource(name="account", migrations={2: lambda doc: {**doc, "email": doc["email"].lower()}})
    class A2(BaseModel):
        email: Annotated[str, Unique]

    report = check(after, store_url)
    assert report.duplicates == {"email": [("ann@x.org", ids[:2])]} and report.shared_values == {"email": 1}
    assert not report.ok and report.unbuilt == []  # stored, the values differ: the index was built
    dry = migrate(after, store_url, dry_run=True)
    assert dry.duplicates == {"email": [("ann@x.org", ids[:2])]}
    done = migrate(after, store_url)
    assert sum(done.written.values()) == 2 and list(done.blocked) == ["email"]  # the index refused the third
    assert done.blocked["email"].count == 1


def test_a_new_unique_the_data_breaks_names_the_documents_at_start_up(store_url):
    before, after = Registry(), Registry()

    @before.resource(name="product")
    class P1(BaseModel):
        sku: str | None = None

    ids = stored(before, store_url, [{"sku": "A1"}, {"sku": "A1"}, {"sku": "B"}, {}, {}])

    @after.resource(name="product")
    class P2(BaseModel):
        sku: Annotated[str, Unique] | None = None

    with pytest.raises(ConstraintBroken) as caught:
        run(App(after, db=store_url).startup())
    breach = caught.value
    assert (breach.resource, breach.field, breach.groups, breach.values) == ("/product", "sku", [("A1", ids[:2])], 1)
    text = str(breach)
    assert "\n" not in text and ids[0] in text and ids[1] in text and "'sku'" in text and "bzzlite check" in text
    report = check(after, store_url)
    assert report.unbuilt == ["sku"] and report.duplicates == {"sku": [("A1", ids[:2])]} and not report.ok

    async def fix() -> None:
        app = App(before, db=store_url)
        try:
            await app.documents(P1).patch(ids[1], {"sku": "A2"})
        finally:
            await app.shutdown()

    run(fix())
    with serve(App(after, db=store_url)) as client:
        assert client.post("/product", json={"sku": "A1"}).code == 409


# -- the command line ---------------------------------------------------------------------------------


APP_V1 = '''
from pydantic import BaseModel
from bzzlite import App, Registry
registry = Registry()
@registry.resource(name="person")
class Person(BaseModel):
    name: str
    age: int = 0
    sku: str | None = None
app = App(registry)
'''

APP_V2 = '''
from typing import Annotated
from pydantic import BaseModel
from bzzlite import App, Registry, Unique
registry = Registry()
def to_v2(doc):
    doc["age"] = str(doc["age"])
    return doc
@registry.resource(name="person", migrations={MIGRATIONS})
class Person(BaseModel):
    name: str
    age: str
    sku: Annotated[str, Unique] | None = None
app = App(registry)
'''


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.test_docs import checkout_env

    return subprocess.run([sys.executable, "-m", "bzzlite", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=checkout_env(), check=False)


def _import_file(path: Path) -> Any:
    import importlib.util

    module_spec = importlib.util.spec_from_file_location(f"m{abs(hash(str(path)))}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_commands_check_migrate_and_serve(store_url, tmp_path):
    (tmp_path / "v1.py").write_text(APP_V1)
    (tmp_path / "v2.py").write_text(APP_V2.replace("{MIGRATIONS}", "{}"))
    (tmp_path / "v2m.py").write_text(APP_V2.replace("{MIGRATIONS}", "{2: to_v2}"))
    v1 = _import_file(tmp_path / "v1.py")
    ids = stored(v1.registry, store_url, [{"name": "a", "age": 1, "sku": "S"}, {"name": "b", "age": 2, "sku": "S"},
                                          {"name": "c", "age": 3}])
    checked = cli(tmp_path, "check", "v2.py:app", "--db", store_url)
    assert checked.returncode == 1, checked.stderr
    assert "3 fail the model" in checked.stdout and "age: Input should be a valid string" in checked.stdout
    assert ids[0] in checked.stdout and "Unique 'sku'" in checked.stdout and checked.stderr == ""
    served = cli(tmp_path, "serve", "v2m.py:app", "--db", store_url, "--port", "0")
    assert served.returncode == 1
    [line] = served.stderr.strip().splitlines()  # one line: resource, field, ids, the command
    assert "/person" in line and "'sku'" in line and ids[0] in line and ids[1] in line
    assert f"`bzzlite check v2m.py:app --db {store_url}`" in line
    dry = cli(tmp_path, "migrate", "v2m.py:app", "--db", store_url, "--dry-run", "--progress")
    assert "3 upgraded from version 1: would be written" in dry.stdout and dry.returncode == 1  # sku shared
    assert re.search(r"/person \[#+\] 3/3 \(100%\)", dry.stderr)
    migrated = cli(tmp_path, "migrate", "v2m.py:app", "--db", store_url)
    assert "3 upgraded from version 1: written" in migrated.stdout, migrated.stdout + migrated.stderr
    assert migrated.returncode == 1 and "the store cannot build its index" in migrated.stdout
    again = cli(tmp_path, "check", "v2m.py:app", "--db", store_url)
    assert "3 stored by this version of the model" in again.stdout and again.returncode == 1


def test_check_exits_zero_when_everything_fits(tmp_path):
    (tmp_path / "v1.py").write_text(APP_V1)
    url = f"sqlite:///{tmp_path}/ok.db"
    stored(_import_file(tmp_path / "v1.py").registry, url, [{"name": "a"}])
    result = cli(tmp_path, "check", "v1.py:app", "--db", url)
    assert result.returncode == 0 and "all 1 document(s) fit their models" in result.stdout


def test_the_progress_bar_draws_on_a_terminal_for_large_collections():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    from bzzlite.cli.migrations import ProgressBar

    report = migration.Report("/person", "Person", 1)
    small, large, piped = Terminal(), Terminal(), io.StringIO()
    ProgressBar(small)(report, 10, 10)
    ProgressBar(piped)(report, 5000, 5000)
    bar = ProgressBar(large, width=10)
    bar(report, 0, 5000)
    bar(report, 2500, 5000)  # within a tenth of a second: not redrawn
    bar(report, 5000, 5000)
    assert small.getvalue() == "" and piped.getvalue() == ""
    assert large.getvalue() == ("\r/person [..........] 0/5,000 (0%)\r/person [##########] 5,000/5,000 (100%)\n")


# -- the cookbook of docs/changing-models.md, run from the page ----------------------------------------


RECIPE = re.compile(r"<!-- recipe: ([\w-]+) -->\n```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def recipe(name: str) -> tuple[Registry, Registry]:
    found = dict(RECIPE.findall(PAGE.read_text()))
    namespace: dict[str, Any] = {}
    exec(compile(found[name], f"{PAGE.name}:{name}", "exec", dont_inherit=True), namespace)  # noqa: S102
    return namespace["before"], namespace["after"]


def test_every_recipe_of_the_cookbook_is_tested():
    assert set(dict(RECIPE.findall(PAGE.read_text()))) == {*COOKBOOK, "add-unique"}


#: recipe -> (documents stored before, as served after, a filter on what changed: a match once migrated)
COOKBOOK = {
    "add-a-field-with-a-default": ([{"name": "Ann"}], [{"name": "Ann", "country": "FR"}], "country=FR"),
    "add-a-required-field": ([{"name": "Ann"}], [{"name": "Ann", "email": "ann@example.org"}],
                             "email=ann@example.org"),
    "rename-a-field": ([{"name": "Ann Lee"}], [{"full_name": "Ann Lee"}], "full_name=Ann%20Lee"),
    "change-a-type": ([{"title": "Hello", "tags": "news, tech"}], [{"title": "Hello", "tags": ["news", "tech"]}],
                      "tags=news"),
    "split-a-field": ([{"name": "Ann Lee"}], [{"first": "Ann", "last": "Lee"}], "last=Lee"),
}


@pytest.mark.parametrize("name", sorted(COOKBOOK))
def test_recipe(name, store_url):
    before, after = recipe(name)
    docs, expected, query = COOKBOOK[name]
    ids = stored(before, store_url, docs)
    path = spec_of(after).path
    expected = [{"id": id_, **doc} for id_, doc in zip(ids, expected)]
    assert check(after, store_url).ok
    with serve(App(after, db=store_url)) as client:
        assert client.get(path).json()["items"] == expected  # served as the model says at once
        assert client.get(f"{path}/{ids[0]}").json() == expected[0]
        assert client.get(f"{path}?{query}").json()["total"] == 0  # the filter compares what is stored
    report = migrate(after, store_url)
    assert report.written == {1: len(docs)} and report.ok
    with serve(App(after, db=store_url)) as client:
        assert client.get(f"{path}?{query}").json()["items"] == expected  # ... and reaches it once migrated
        assert client.get(f"{path}/{ids[0]}").headers["ETag"] == '"1"'


def test_recipe_add_unique(store_url):
    before, after = recipe("add-unique")
    ids = stored(before, store_url, [{"sku": "A1"}, {"sku": "A1"}, {"sku": "B2"}])
    with pytest.raises(ConstraintBroken, match=f"'A1' in {ids[0]}, {ids[1]}"):
        run(App(after, db=store_url).startup())
    report = check(after, store_url)  # 1. check lists them
    assert report.duplicates == {"sku": [("A1", ids[:2])]}
    with serve(App(before, db=store_url)) as client:  # 2. fix them with the app as it is
        assert client.patch(f"/product/{ids[1]}", json={"sku": "A1-2"}).code == 200
    assert check(after, store_url).ok
    with serve(App(after, db=store_url)) as client:  # 3. deploy: duplicates are refused
        assert client.post("/product", json={"sku": "B2"}).code == 409


# -- the SQLite journal: a write that keeps the version is no change --------------------------------------


def test_the_sqlite_journal_records_no_migration(sqlite_url):
    stored(person_v1(), sqlite_url, [{"name": "a", "age": 1}])
    registry = person_v2({2: to_v2})
    app = App(registry, db=sqlite_url)
    run(app.startup())  # the journal's triggers, as a serving app has them
    run(app.shutdown())
    path = sqlite_url[len("sqlite:///"):]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        before = conn.execute("SELECT count(*) FROM _bzzlite_journal").fetchone()[0]
    assert migrate(registry, sqlite_url).written == {1: 1}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM _bzzlite_journal").fetchone()[0] == before
