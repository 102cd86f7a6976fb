"""Declaring resources and receivers: bzzlite.registry, without a server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from blinker import ANY
from pydantic import BaseModel

import bzzlite
from bzzlite import App, ConfigurationError, Registry, Unique
from bzzlite.registry import RESERVED_FIELDS, snake_case


class TodoItem(BaseModel):
    title: str
    done: bool = False


class HTTPServer(BaseModel):
    host: str


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TodoItem", "todo_item"),
        ("HTTPServer", "http_server"),
        ("Person", "person"),
        ("APIKey2Owner", "api_key2_owner"),
        ("already_snake", "already_snake"),
        ("URL", "url"),
    ],
)
def test_snake_case(name, expected):
    assert snake_case(name) == expected


def test_resource_bare_returns_the_class_unchanged():
    reg = Registry()
    returned = reg.resource(TodoItem)
    assert returned is TodoItem
    spec = reg.resources["/todo_item"]
    assert spec.model is TodoItem
    assert spec.name == "todo_item"
    assert spec.prefix == ""
    assert spec.path == "/todo_item"
    assert spec.per_page == 20
    assert spec.max_per_page == 100


def test_resource_called_with_name_and_prefix():
    reg = Registry()

    @reg.resource(name="people", prefix="/api")
    class Person(BaseModel):
        name: str

    assert isinstance(Person, type) and issubclass(Person, BaseModel)
    assert list(reg.resources) == ["/api/people"]
    assert reg.spec_for(Person).path == "/api/people"


@pytest.mark.parametrize(
    ("prefix", "path"),
    [("", "/thing"), ("/", "/thing"), ("api", "/api/thing"), ("/api/", "/api/thing"), ("/v1/api", "/v1/api/thing")],
)
def test_prefix_is_normalized(prefix, path):
    reg = Registry()

    class Thing(BaseModel):
        x: int = 0

    reg.resource(prefix=prefix)(Thing)
    assert reg.spec_for(Thing).path == path


def test_resource_called_without_arguments():
    reg = Registry()

    @reg.resource()
    class Thing(BaseModel):
        x: int = 0

    assert reg.spec_for(Thing).path == "/thing"


def test_module_level_decorators_are_the_default_registrys_bound_methods():
    assert bzzlite.resource.__self__ is bzzlite.default_registry
    assert bzzlite.on.__self__ is bzzlite.default_registry
    assert bzzlite.default_registry.signals.post_create_instance is bzzlite.signals.post_create_instance


def test_stored_model_carries_the_id():
    reg = Registry()
    spec = reg.add_resource(TodoItem)
    instance = spec.stored_model.model_validate({"id": "a" * 24, "title": "x"})
    assert instance.id == "a" * 24
    assert isinstance(instance, TodoItem)
    assert "id" not in TodoItem.model_fields  # the user's class is left alone


def test_the_same_model_may_serve_in_two_registries():
    one, two = Registry(), Registry()
    one.resource(TodoItem)
    two.resource(name="todos")(TodoItem)
    assert one.spec_for(TodoItem).path == "/todo_item"
    assert two.spec_for(TodoItem).path == "/todos"


def test_per_resource_pagination_settings():
    reg = Registry()
    spec = reg.add_resource(TodoItem, per_page=5, max_per_page=7)
    assert (spec.per_page, spec.max_per_page) == (5, 7)


def test_declared_indexes_are_recorded():
    class Product(BaseModel):
        category: str
        price: float

    reg = Registry()
    spec = reg.add_resource(Product, indexes=["price", ("category", "-price")])
    assert spec.indexes == (("price",), ("category", "-price"))


# -- misuse: a ConfigurationError naming the fix -------------------------------------------


def test_a_non_model_class_is_refused():
    reg = Registry()

    class Plain:
        title: str

    with pytest.raises(ConfigurationError, match="BaseModel"):
        reg.resource(Plain)
    with pytest.raises(ConfigurationError, match="BaseModel"):
        reg.resource(name="x")(Plain)
    with pytest.raises(ConfigurationError):
        reg.add_resource(TodoItem(title="x"))  # an instance, not a class


def test_configuration_error_is_a_bzzlite_error():
    assert issubclass(ConfigurationError, bzzlite.BzzliteError)


@pytest.mark.parametrize("field", sorted(RESERVED_FIELDS))
def test_reserved_field_names_are_refused(field):
    model = type("Bad", (BaseModel,), {"__annotations__": {field: str}})
    with pytest.raises(ConfigurationError, match=field) as info:
        Registry().resource(model)
    assert "Rename" in str(info.value)


def test_reserved_names_cover_the_contract():
    assert RESERVED_FIELDS >= {"id", "page", "per_page", "sort", "fields", "after"}


def test_a_field_name_with_double_underscore_is_refused():
    class Bad(BaseModel):
        price__gt: int

    with pytest.raises(ConfigurationError, match="price__gt"):
        Registry().resource(Bad)


def test_a_duplicate_path_is_refused_naming_both_models():
    reg = Registry()

    class Person(BaseModel):
        name: str

    class Other(BaseModel):
        name: str

    reg.resource(Person)
    with pytest.raises(ConfigurationError, match="Other and Person") as info:
        reg.resource(name="person")(Other)
    assert "name=" in str(info.value)


def test_the_same_model_twice_in_one_registry_is_refused():
    reg = Registry()
    reg.resource(TodoItem)
    with pytest.raises(ConfigurationError, match="already"):
        reg.resource(name="other")(TodoItem)


@pytest.mark.parametrize("name", ["", "a/b", "has space", "é"])
def test_a_name_that_is_not_a_path_segment_is_refused(name):
    with pytest.raises(ConfigurationError, match="path segment"):
        Registry().resource(name=name)(TodoItem)


@pytest.mark.parametrize(("per_page", "max_per_page"), [(0, 100), (50, 10), (-1, 5)])
def test_bad_pagination_settings_are_refused(per_page, max_per_page):
    with pytest.raises(ConfigurationError, match="per_page"):
        Registry().resource(per_page=per_page, max_per_page=max_per_page)(TodoItem)


def test_an_index_on_an_unknown_field_is_refused():
    with pytest.raises(ConfigurationError, match="nope"):
        Registry().resource(indexes=["nope"])(TodoItem)


def test_unique_on_a_nested_field_is_refused():
    class Inner(BaseModel):
        code: Annotated[str, Unique]

    class Outer(BaseModel):
        inner: Inner

    with pytest.raises(ConfigurationError, match="top-level scalar"):
        Registry().resource(Outer)


def test_unique_on_a_list_field_is_refused():
    class Tagged(BaseModel):
        tags: Annotated[list[str], Unique] = []

    with pytest.raises(ConfigurationError, match="top-level scalar"):
        Registry().resource(Tagged)


def test_resource_after_the_app_was_built_is_refused():
    reg = Registry()
    reg.resource(TodoItem)
    App(reg, db="sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match="before creating the App"):
        reg.resource(HTTPServer)


def test_an_unknown_store_url_is_refused():
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        App(Registry(), db="postgres://localhost/x")


def test_an_unknown_app_setting_is_refused():
    # Anything that is not a bzzlite setting is handed to Tornado, so check a bzzlite one.
    with pytest.raises(ConfigurationError, match="max_body_size"):
        App(Registry(), db="sqlite:///:memory:", max_body_size=0)


def test_an_odmantic_model_on_sqlite_is_refused_when_the_app_is_built():
    odmantic = pytest.importorskip("odmantic")

    class Book(odmantic.Model):
        title: str

    reg = Registry()
    reg.resource(Book)
    with pytest.raises(ConfigurationError, match="MongoDB"):
        App(reg, db="sqlite:///:memory:")


# -- receivers ---------------------------------------------------------------------------


def test_on_returns_the_function_unchanged_and_connects_it():
    reg = Registry()

    def receiver(sender, **kwargs):
        pass

    assert reg.on("post_create_instance")(receiver) is receiver
    assert list(reg.signals.post_create_instance.receivers_for(TodoItem)) == [receiver]


def test_on_with_a_sender_only_hears_that_sender():
    reg = Registry()

    @reg.on("pre_get_list", sender=TodoItem)
    def receiver(sender, **kwargs):
        pass

    signal = reg.signals.pre_get_list
    assert list(signal.receivers_for(TodoItem)) == [receiver]
    assert list(signal.receivers_for(HTTPServer)) == []


def test_on_accepts_a_signal_object_and_maps_it_to_this_registry():
    reg = Registry()

    @reg.on(bzzlite.signals.post_update_instance)
    async def receiver(sender, **kwargs):
        pass

    assert list(reg.signals.post_update_instance.receivers_for(ANY)) == [receiver]
    assert receiver not in list(bzzlite.signals.post_update_instance.receivers_for(ANY))


def test_on_an_unknown_signal_is_refused_listing_the_known_ones():
    reg = Registry()
    with pytest.raises(ConfigurationError, match="post_create_instance"):
        reg.on("post_created_instance")
    with pytest.raises(ConfigurationError):
        reg.on(object())  # type: ignore[arg-type]


def test_on_something_not_callable_is_refused():
    with pytest.raises(ConfigurationError, match="function"):
        Registry().on("pre_get_list")(42)


def test_isolated_registries_have_their_own_signals():
    one, two = Registry(), Registry()
    assert one.signals.post_create_instance is not two.signals.post_create_instance
    assert one.signals.post_create_instance is not bzzlite.signals.post_create_instance
    assert one.signals["pre_get_list"] is one.signals.pre_get_list


def test_the_signals_module_has_every_signal_of_bzz():
    names = [
        "pre_get_instance", "post_get_instance", "pre_get_list", "post_get_list",
        "pre_create_instance", "post_create_instance", "pre_update_instance",
        "post_update_instance", "pre_delete_instance", "post_delete_instance",
        "authorized_user", "unauthorized_user", "pre_get_user_details",
    ]
    for name in names:
        signal = getattr(bzzlite.signals, name)
        assert signal.name == name


def test_the_default_registry_decorators_in_a_fresh_process():
    """The module-level @resource/@on, in a subprocess so the global registry stays clean."""
    code = textwrap.dedent(
        """
        from pydantic import BaseModel
        import bzzlite
        from bzzlite import resource, on

        @resource
        class TodoItem(BaseModel):
            title: str

        @resource(name="people", prefix="/api")
        class Person(BaseModel):
            name: str

        @on("post_create_instance", sender=TodoItem)
        def audit(sender, instance, handler):
            pass

        app = bzzlite.App(db="sqlite:///:memory:")
        assert app.registry is bzzlite.default_registry
        assert sorted(bzzlite.default_registry.resources) == ["/api/people", "/todo_item"]
        assert list(bzzlite.signals.post_create_instance.receivers_for(TodoItem)) == [audit]
        try:
            @resource
            class Late(BaseModel):
                x: int
        except bzzlite.ConfigurationError:
            print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _env() -> dict[str, str]:
    """The environment for a subprocess that imports this checkout's bzzlite."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
