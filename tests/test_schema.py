"""What bzzlite learns from a model: bzzlite.models.schema, pure and fast."""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Literal, Optional, Union

import pytest
from pydantic import BaseModel, Field, ValidationError

from bzzlite import ConfigurationError, Unique
from bzzlite.models.schema import canonical_time, inspect_model, mentions_time, shape_of, unknown_keys, unwrap


class Color(str, enum.Enum):
    red = "red"
    blue = "blue"


class Level(enum.IntEnum):
    low = 1
    high = 2


class Address(BaseModel):
    street: str = ""
    city: str
    zip: str | None = None


class Pet(BaseModel):
    name: str
    age: int = 0


class Person(BaseModel):
    name: str
    age: int = 0
    height: float = 1.5
    active: bool = True
    born: datetime.date | None = None
    seen: datetime.datetime | None = None
    color: Color = Color.red
    level: Level = Level.low
    kind: Literal["a", "b"] = "a"
    email: Annotated[str, Unique] | None = None
    code: Annotated[int, Unique] = 0
    tags: list[str] = []
    scores: list[int] = Field(default_factory=list)
    address: Address | None = None
    pets: list[Pet] = []
    extra: dict[str, Pet] = {}


def test_unwrap_strips_annotated_and_optional():
    assert unwrap(Annotated[str, Unique] | None) == (str, True, (Unique,))
    assert unwrap(Optional[int]) == (int, True, ())
    assert unwrap(int) == (int, False, ())
    _, nullable, _ = unwrap(Union[int, str, None])  # a real union stays a union, but nullable
    assert nullable


def test_paths_cover_scalars_nested_fields_and_scalar_lists():
    schema = inspect_model(Person)
    assert set(schema.paths) == {
        "name", "age", "height", "active", "born", "seen", "color", "level", "kind", "email", "code",
        "tags", "scores", "address.street", "address.city", "address.zip",
    }
    # lists of models and dicts are not filterable paths
    assert "pets" not in schema.paths and "pets.name" not in schema.paths and "extra" not in schema.paths


def test_field_path_flags():
    paths = inspect_model(Person).paths
    assert paths["name"].is_text and paths["name"].orderable and not paths["name"].is_list
    assert not paths["age"].is_text and paths["age"].orderable
    assert paths["tags"].is_list and paths["tags"].is_text and not paths["tags"].orderable
    assert paths["scores"].is_list and not paths["scores"].is_text
    assert paths["email"].nullable and not paths["name"].nullable
    assert paths["address.zip"].nullable and not paths["address.city"].nullable
    assert paths["color"].orderable and paths["seen"].orderable and paths["born"].orderable


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("age", "42", 42),
        ("age", "-3", -3),
        ("height", "1.75", 1.75),
        ("height", "2", 2.0),
        ("active", "true", True),
        ("active", "false", False),
        ("active", "0", False),
        ("born", "2024-02-29", "2024-02-29"),
        ("seen", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000Z"),
        ("seen", "2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05.000000Z"),
        ("seen", "2024-01-02T05:04:05.5+02:00", "2024-01-02T03:04:05.500000Z"),
        ("seen", "2024-01-02T03:04:05", "2024-01-02T03:04:05.000000"),
        ("color", "blue", "blue"),
        ("level", "2", 2),
        ("kind", "b", "b"),
        ("name", "null", "null"),  # not nullable: the text itself
        ("email", "null", None),  # nullable: null
        ("address.city", "Paris", "Paris"),
        ("tags", "red", "red"),  # a list field coerces one member
        ("scores", "7", 7),
    ],
)
def test_coerce_from_query_strings(path, text, expected):
    value = inspect_model(Person).paths[path].coerce(text, from_string=True)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("path", "text"),
    [("age", "x"), ("age", "1.5"), ("active", "maybe"), ("born", "2024-13-01"), ("color", "green"),
     ("level", "3"), ("kind", "c"), ("seen", "yesterday"), ("scores", "a")],
)
def test_coerce_refuses_what_does_not_fit(path, text):
    with pytest.raises((ValidationError, ValueError)):
        inspect_model(Person).paths[path].coerce(text, from_string=True)


def test_coerce_python_values():
    paths = inspect_model(Person).paths
    assert paths["age"].coerce(5, from_string=False) == 5
    assert paths["born"].coerce(datetime.date(2020, 1, 1), from_string=False) == "2020-01-01"
    assert paths["color"].coerce(Color.blue, from_string=False) == "blue"
    assert paths["email"].coerce(None, from_string=False) is None


def test_unique_fields_are_found_through_optional():
    assert inspect_model(Person).unique == ("email", "code")


def test_unique_in_field_metadata():
    class M(BaseModel):
        slug: Annotated[str, Unique, Field(min_length=1)]

    assert inspect_model(M).unique == ("slug",)


def test_unique_nested_is_a_configuration_error():
    class Inner(BaseModel):
        code: Annotated[str, Unique]

    class Outer(BaseModel):
        inner: Inner | None = None

    with pytest.raises(ConfigurationError, match="inner.code"):
        inspect_model(Outer)


def test_unique_on_a_model_field_is_a_configuration_error():
    class Outer(BaseModel):
        address: Annotated[Address, Unique]

    with pytest.raises(ConfigurationError, match="address"):
        inspect_model(Outer)


def test_defaults_and_factories_and_field_sets():
    schema = inspect_model(Person)
    assert schema.defaults["age"] == 0
    assert schema.defaults["color"] == "red"
    assert schema.defaults["tags"] == []
    assert schema.defaults["address"] is None
    assert "name" not in schema.defaults
    assert "scores" in schema.default_factories
    assert schema.list_fields == {"tags", "scores", "pets"}
    assert {"email", "born", "seen", "address"} <= schema.nullable_fields
    assert "name" not in schema.nullable_fields
    assert schema.top_level == tuple(Person.model_fields)


def test_fill_defaults_completes_documents_stored_before_fields_were_added():
    schema = inspect_model(Person)
    filled = schema.fill_defaults({"name": "old"})
    assert filled["name"] == "old"
    assert filled["age"] == 0
    assert filled["scores"] == []
    assert filled["color"] == "red"
    assert "code" in filled
    full = Person(name="x").model_dump(mode="json")
    assert schema.fill_defaults(full) is full  # complete documents are not copied


def test_fill_defaults_leaves_out_fields_the_model_no_longer_has():
    schema = inspect_model(Address)
    assert schema.fill_defaults({"city": "P", "zip": None, "street": "", "planet": "Mars"}) == {
        "city": "P", "zip": None, "street": ""}
    assert schema.fill_defaults({"city": "P", "planet": "Mars"}) == {"city": "P", "street": "", "zip": None}


def test_fill_defaults_leaves_required_fields_missing():
    class M(BaseModel):
        a: int
        b: int = 1

    assert inspect_model(M).fill_defaults({}) == {"b": 1}


# -- unknown keys at every depth ------------------------------------------------------------


def errors(model, data):
    return list(unknown_keys(shape_of(model), data))


def test_unknown_top_level_key():
    assert errors(Person, {"name": "x", "nope": 1}) == [
        {"loc": ["nope"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


def test_unknown_key_in_a_nested_model():
    found = errors(Person, {"name": "x", "address": {"city": "P", "planet": "Mars"}})
    assert [e["loc"] for e in found] == [["address", "planet"]]


def test_unknown_key_in_a_list_of_models():
    found = errors(Person, {"name": "x", "pets": [{"name": "a"}, {"name": "b", "wings": 2}]})
    assert [e["loc"] for e in found] == [["pets", 1, "wings"]]


def test_unknown_key_in_a_dict_of_models():
    found = errors(Person, {"name": "x", "extra": {"rex": {"name": "Rex", "bark": True}}})
    assert [e["loc"] for e in found] == [["extra", "rex", "bark"]]


def test_every_unknown_key_is_reported():
    found = errors(Person, {"a": 1, "b": 2, "address": {"c": 3}})
    assert sorted(map(tuple, (e["loc"] for e in found))) == [("a",), ("address", "c"), ("b",)]


def test_wrong_types_are_left_to_pydantic():
    assert errors(Person, {"address": "not an object", "pets": "nope"}) == []
    assert errors(Person, []) == []


def test_unions_of_models_accept_either_shape():
    class Cat(BaseModel):
        meows: bool

    class Dog(BaseModel):
        barks: bool

    class Owner(BaseModel):
        pet: Cat | Dog

    assert errors(Owner, {"pet": {"meows": True}}) == []
    assert errors(Owner, {"pet": {"barks": True}}) == []
    assert [e["loc"] for e in errors(Owner, {"pet": {"flies": True}})] == [["pet", "flies"]]


def test_recursive_models():
    class Node(BaseModel):
        value: int
        children: list["Node"] = []

    Node.model_rebuild()
    data = {"value": 1, "children": [{"value": 2, "children": [{"value": 3, "oops": 0}]}]}
    assert [e["loc"] for e in errors(Node, data)] == [["children", 0, "children", 0, "oops"]]


def test_aliases_are_accepted_keys():
    class M(BaseModel):
        full_name: str = Field(alias="fullName")

    assert errors(M, {"fullName": "x"}) == []


# -- datetimes are kept as text that sorts in time order --------------------------------------


def test_canonical_time_sorts_in_time_order():
    utc = datetime.timezone.utc
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    instants = [
        datetime.datetime(999, 1, 1, tzinfo=utc),
        datetime.datetime(2024, 1, 10, 9, 0, tzinfo=plus2),  # 07:00 UTC
        datetime.datetime(2024, 1, 10, 8, 0, tzinfo=utc),
        datetime.datetime(2024, 1, 10, 8, 0, 0, 1, tzinfo=utc),
        datetime.datetime(2024, 1, 10, 8, 0, 0, 500000, tzinfo=utc),
        datetime.datetime(2024, 1, 10, 8, 0, 1, tzinfo=utc),
    ]
    texts = [canonical_time(d) for d in instants]
    assert texts == sorted(texts)
    assert texts[0] == "0999-01-01T00:00:00.000000Z"
    assert texts[1] == "2024-01-10T07:00:00.000000Z"
    assert canonical_time(datetime.datetime(2024, 1, 10, 8)) == "2024-01-10T08:00:00.000000"
    assert canonical_time(datetime.time(8, 0)) == "08:00:00.000000"
    assert canonical_time(datetime.time(8, 0, tzinfo=utc)) == "08:00:00.000000Z"
    assert canonical_time(datetime.datetime(1, 1, 1, tzinfo=plus2)) is None  # cannot move to UTC


def test_mentions_time():
    assert mentions_time(Person)  # seen
    assert not mentions_time(Address)
    assert mentions_time(list[datetime.time])
    assert not mentions_time(datetime.date)

    class Deep(BaseModel):
        pets: list[Pet] = []
        when: dict[str, list[datetime.datetime | None]] = {}

    assert mentions_time(Deep)
    assert inspect_model(Deep).has_times and not inspect_model(Address).has_times


def test_coerce_literals_of_numbers_from_query_strings():
    # found by fuzzing the OpenAPI document: pydantic compares "1" with 1 and refuses it
    class Tuned(BaseModel):
        level: Literal[1, 2, 3] = 1
        ratio: Literal[0.5, 1.5] = 0.5

    paths = inspect_model(Tuned).paths
    assert paths["level"].coerce("2", from_string=True) == 2
    assert paths["ratio"].coerce("1.5", from_string=True) == 1.5
    for text in ("4", "x", '"1"'):
        with pytest.raises(ValidationError):
            paths["level"].coerce(text, from_string=True)
