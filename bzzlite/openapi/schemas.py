"""The component schemas of resources: each model's request, merge patch, form, document,
list item and list page, from pydantic's generator told what bzzlite's HTTP layer accepts
and answers (64-bit integers, no NUL characters, decimals as text, closed request bodies)."""

from __future__ import annotations

import copy
import decimal
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from . import examples
from .common import REF, ref, refs

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models.resource import ResourceSpec

ID = {
    "type": "string",
    "pattern": "^[0-9a-f]{24}$",
    "description": "Server-assigned id: 24 hexadecimal characters, sorting by creation time.",
}
_IGNORED_ID = {"type": "string", "description": "Ignored: the server assigns ids (a document read back can be "
               "sent as it is)."}


_INT64 = (-(2**63), 2**63 - 1)
_NO_NUL = "^[^\\u0000]*$"
#: a decimal in plain or exponent notation, as clients and ``str(Decimal)`` write it
DECIMAL_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
#: a naive ISO 8601 date and time; February 29 is left out (a pattern cannot tell leap years)
NAIVE_DATETIME = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-"
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
    r"[Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?$"
)


def _json_number(value: Any) -> int | float:
    """A constraint (a Decimal, an int or a float) as a JSON number."""
    number = decimal.Decimal(str(value))
    return int(number) if number == number.to_integral_value() else float(number)

#: The NUL rule on strings, as ``"not": _HAS_NUL`` (validators and fuzzers honour it; Swagger UI does not turn it
#: into random sample text, as it does a ``pattern``, and client generators ignore it).
_HAS_NUL = {"pattern": "\\u0000"}


class Portable(GenerateJsonSchema):
    """pydantic's generator, told which values bzzlite refuses because no store keeps them:
    integers beyond 64 bits (request bodies and query values alike)."""

    def int_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().int_schema(schema)
        if self.mode == "validation":
            json_schema["minimum"] = max(json_schema.get("minimum", _INT64[0]), _INT64[0])
            json_schema["maximum"] = min(json_schema.get("maximum", _INT64[1]), _INT64[1])
        return json_schema


class Generator(Portable):
    """The generator of documents, told what bzzlite's HTTP layer does with them.

    Request bodies: unknown keys are rejected at every depth (``additionalProperties:
    false`` on every model) and so are NUL characters. Responses: a stored document
    carries every field, defaults included (every field ``required``). Types JSON Schema
    cannot describe become ``{}``.
    """

    def model_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().model_schema(schema)
        if self.mode == "validation" and "properties" in json_schema:
            json_schema["additionalProperties"] = False
        return json_schema

    def str_schema(self, schema: Any) -> dict[str, Any]:
        return self._no_nul(super().str_schema(schema))

    def bytes_schema(self, schema: Any) -> dict[str, Any]:
        # In a JSON body bytes travel as UTF-8 text (pydantic's default): "format": "binary"
        # would tell clients and fuzzers to send raw octets, which JSON cannot carry.
        json_schema = super().bytes_schema(schema)
        if json_schema.get("format") == "binary":
            del json_schema["format"]
            json_schema.setdefault("description", "Text (UTF-8), stored as bytes.")
        return self._no_nul(json_schema)

    def _no_nul(self, json_schema: dict[str, Any]) -> dict[str, Any]:
        """Request strings refuse NUL characters (no store keeps them)."""
        if self.mode == "validation":
            json_schema["not"] = dict(_HAS_NUL)
        return json_schema

    def dict_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().dict_schema(schema)
        if self.mode == "validation":
            json_schema.setdefault("propertyNames", {}).setdefault("pattern", _NO_NUL)
        return json_schema

    def decimal_schema(self, schema: Any) -> dict[str, Any]:
        """Decimals as bzzlite documents them whatever pydantic release is installed.

        pydantic's own output changed within 2.x (a string pattern up to 2.13, none from
        2.14) and never carried ``max_digits``/``decimal_places``; so this is written here,
        from the core schema's constraints. Requests: a JSON number within the bounds, or,
        for an unconstrained decimal, a string in decimal notation (strings cannot carry
        bounds in JSON Schema, so a constrained decimal documents numbers only; the server
        also takes its strings, as it takes "5" for an integer). Responses: the string
        ``str(Decimal)`` writes.
        """
        if self.mode == "serialization":
            return {"type": "string", "pattern": DECIMAL_TEXT}
        number: dict[str, Any] = {"type": "number"}
        for key, keyword in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"),
                             ("lt", "exclusiveMaximum"), ("multiple_of", "multipleOf")):
            if schema.get(key) is not None:
                number[keyword] = _json_number(schema[key])
        places, digits = schema.get("decimal_places"), schema.get("max_digits")
        if places is not None and "multipleOf" not in number:
            number["multipleOf"] = _json_number(decimal.Decimal(1).scaleb(-places))
        if digits is not None and places is not None:
            # at most digits - places digits before the point: |x| < 10 ** (digits - places)
            limit = 10 ** (digits - places)
            if number.get("exclusiveMaximum", limit) >= limit and number.get("maximum", limit) >= limit:
                number.pop("maximum", None)
                number["exclusiveMaximum"] = limit
            if number.get("exclusiveMinimum", -limit) <= -limit and number.get("minimum", -limit) <= -limit:
                number.pop("minimum", None)
                number["exclusiveMinimum"] = -limit
        if len(number) > 1 or digits is not None:
            return number
        return {"anyOf": [number, {"type": "string", "pattern": DECIMAL_TEXT}]}

    def datetime_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().datetime_schema(schema)
        if self.mode == "validation" and schema.get("tz_constraint") == "naive":
            # RFC 3339's date-time always has an offset, which a naive datetime refuses
            json_schema.pop("format", None)
            json_schema["pattern"] = NAIVE_DATETIME
            json_schema.setdefault("description", "A date and time without a UTC offset (ISO 8601).")
        return json_schema

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization" and field["type"] in ("model-field", "dataclass-field"):
            return not field.get("serialization_exclude", False)
        return super().field_is_required(field, total)

    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> dict[str, Any]:
        return {"description": f"Not describable in JSON Schema ({error_info})."}


class Schemas:
    """Component schemas of every resource: request, patch, document, list item, list page."""

    def __init__(self, specs: Iterable[ResourceSpec], inner: Iterable[type[BaseModel]] = ()) -> None:
        specs, inner = list(specs), list(inner)
        self.components: dict[str, Any] = {}
        self.names: dict[str, dict[str, str]] = {}  # spec path -> role -> component name
        self.inner: dict[tuple[type[BaseModel], str], dict[str, Any]] = {}  # (model, mode) -> $ref, nested routes
        self.examples: dict[str, dict[str, Any]] = {}  # spec path -> role (Request, Patch, Document) -> example
        if not specs:
            return
        # schema.model is the model's API shape: for an ODMantic model, references are ids
        pairs = [(spec.schema.model, mode) for spec in specs for mode in ("validation", "serialization")]
        pairs += [(model, mode) for model in inner for mode in ("validation", "serialization")]
        refs, top = models_json_schema(pairs, ref_template=REF, schema_generator=Generator)  # type: ignore[arg-type]
        defs: dict[str, Any] = top.get("$defs", {})
        self.components.update(defs)
        self.inner = {(model, mode): refs[(model, mode)] for model in inner for mode in ("validation", "serialization")}
        for model in inner:  # the merge patch of an embedded model (nested PATCH routes)
            name = self._free_name(f"{model.__name__}Patch")
            self.components[name] = _patch_schema(model, self._resolve(defs, refs[(model, "validation")]))
            self.inner[(model, "patch")] = {"$ref": ref(name)}
        for spec in specs:
            request = self._resolve(defs, refs[(spec.schema.model, "validation")])
            response = self._resolve(defs, refs[(spec.schema.model, "serialization")])
            names = self.names[spec.path] = {
                role: self._free_name(f"{spec.model.__name__}{role}")
                for role in ("Request", "Patch", "Document", "ListItem", "List")
            }
            self.components[names["Request"]] = _request_schema(request)
            self.components[names["Patch"]] = _patch_schema(spec.schema.model, request)
            self.components[names["Document"]] = _document_schema(response)
            self.components[names["ListItem"]] = _list_item_schema(response, spec.model.__name__, defs)
            self.components[names["List"]] = _list_schema(spec, names["ListItem"])
            for role in ("Request", "Patch", "Document", "ListItem"):
                _field_roles(self.components[names[role]], spec, writing=role in ("Request", "Patch"))
            self.examples[spec.path] = _examples(spec, request, defs)
            if all(name in spec.schema.paths for name in spec.schema.top_level):
                # a flat model can be sent as form fields too (bzz's example did)
                names["Form"] = self._free_name(f"{spec.model.__name__}Form")
                self.components[names["Form"]] = _form_schema(self.components[names["Request"]])
        reading = [refs[(spec.schema.model, "validation")] for spec in specs]
        reading += [refs[(model, "validation")] for model in inner]
        for spec in specs:
            reading += [{"$ref": ref(self.names[spec.path][role])} for role in ("Request", "Form")
                        if role in self.names[spec.path]]
        defaults_as_text(self.components, reading)
        for name, schema in self.components.items():
            # generators name classes after titles, and Swagger UI lists schemas by them: one each
            if isinstance(schema, dict) and ("properties" in schema or "enum" in schema or "title" in schema):
                schema["title"] = name

    @staticmethod
    def _resolve(defs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref", "")
        name = ref.rsplit("/", 1)[-1]
        return copy.deepcopy(defs[name]) if ref and name in defs else copy.deepcopy(schema)

    def _free_name(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.components:
            candidate, n = f"{name}{n}", n + 1
        self.components[candidate] = {}  # reserved
        return candidate


def _field_roles(schema: dict[str, Any], spec: ResourceSpec, *, writing: bool) -> None:
    """Mark read-only and write-only fields (``ReadOnly``, ``WriteOnly``, ``Field(exclude=True)``):
    request bodies flag them (a read-only field is ignored, so never required); responses leave
    write-only fields out, and carry computed fields as read-only."""
    roles = spec.schema
    properties = schema.get("properties", {})
    if writing:
        for name in roles.read_only & properties.keys():
            properties[name] = {**properties[name], "readOnly": True}
        for name in roles.write_only & properties.keys():
            properties[name] = {**properties[name], "writeOnly": True}
        hidden = roles.read_only
    else:
        for name in roles.write_only:
            properties.pop(name, None)
        for name in set(roles.computed) & properties.keys():
            properties[name] = {**properties[name], "readOnly": True}
        hidden = roles.write_only
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in hidden]

def defaults_as_text(components: dict[str, Any], roots: Iterable[Any]) -> None:
    """Request bodies say a field's default in its description, not as ``default``.

    A field with a default may be left out of a request, and the server fills it in. Client
    generators read ``default`` as "always present" (openapi-typescript's default options make such
    a field required), which is true of a response and not of a request; so the request-side
    component schemas (those reached from ``roots``) keep the default as text. Response schemas
    keep theirs: every field of a stored document is present.
    """
    seen: set[str] = set()
    todo = [name for _, name in refs(list(roots))]
    while todo:
        name = todo.pop()
        if name in seen or not isinstance(components.get(name), dict):
            continue
        seen.add(name)
        schema = components[name]
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict) and "default" in prop:
                default = json.dumps(prop.pop("default"))
                prop["description"] = f"{prop.get('description', '')} Default: `{default}`.".strip()
        todo += [found for _, found in refs(schema)]


def _examples(spec: ResourceSpec, request: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Request, Patch and Document examples of a resource (none when no valid one is found);
    the document's example leaves write-only fields out, as responses do."""
    model = spec.schema.model
    body = examples.document(model, request, defs)
    if body is None:
        return {}
    try:
        stored = model.model_validate(body).model_dump(mode="json", by_alias=True)
    except Exception:  # noqa: BLE001 - an example is a courtesy: a model that cannot show one gets none
        return {"Request": body, "Many": [body], "Patch": examples.patch(model, body)}
    many = [body, examples.another(model, body) or body]
    hidden = spec.schema.write_only
    return {"Request": body, "Many": many, "Patch": examples.patch(model, body),
            "Document": {"id": examples.EXAMPLE_ID, **{k: v for k, v in stored.items() if k not in hidden}}}


def _allows_null(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "null" or (isinstance(schema.get("type"), list) and "null" in schema["type"]):
        return True
    return any(_allows_null(option) for option in [*schema.get("anyOf", ()), *schema.get("oneOf", ())])


def _request_schema(model_schema: dict[str, Any]) -> dict[str, Any]:
    """The body of POST and PUT: the model, plus an ``id`` the server ignores."""
    schema = model_schema
    if "properties" in schema:
        schema["properties"] = {"id": _IGNORED_ID, **{
            k: v for k, v in schema["properties"].items() if k != "id"}}
        if "required" in schema:
            schema["required"] = [r for r in schema["required"] if r != "id"]
    return schema


def _form_schema(request: dict[str, Any]) -> dict[str, Any]:
    """The request as form fields: strings coerced to the field types; a form has no null,
    an empty value stands for it (on optional fields)."""
    schema = copy.deepcopy(request)
    for key, prop in schema.get("properties", {}).items():
        options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
        if len(options) < len(prop.get("anyOf", ())):
            prop.pop("anyOf")
            prop.pop("default", None)
            if len(options) == 1:
                prop.update(options[0])
            else:
                prop["anyOf"] = options
            prop["description"] = (prop.get("description", "") + " An empty value means null.").strip()
    schema["title"] = f"{schema.get('title', 'Document')} (form fields)"
    return schema


def _patch_schema(model: type[BaseModel], model_schema: dict[str, Any]) -> dict[str, Any]:
    """The body of PATCH: a JSON merge patch (RFC 7396) of the model's fields."""
    required = {info.alias or name for name, info in model.model_fields.items() if info.is_required()}
    properties: dict[str, Any] = {"id": _IGNORED_ID}
    for key, prop in copy.deepcopy(model_schema.get("properties", {})).items():
        if key == "id":
            continue
        prop.pop("default", None)  # a patch sends only what changes: no field has a default, none is required
        if key not in required and not _allows_null(prop):
            outer = {k: prop.pop(k) for k in ("title", "description") if k in prop}
            prop = {"anyOf": [prop, {"type": "null"}], **outer}
        properties[key] = prop
    return {
        "type": "object",
        "title": f"{model.__name__} merge patch",
        "description": "A JSON merge patch (RFC 7396): the fields to change; `null` returns an optional "
        "field to its default (a required field set to `null` is a 422); nested objects are merged.",
        "properties": properties,
        "additionalProperties": False,
    }


def _document_schema(model_schema: dict[str, Any]) -> dict[str, Any]:
    """A stored document as responses carry it: its id, then every field."""
    schema = model_schema
    schema["properties"] = {"id": ID, **{k: v for k, v in schema.get("properties", {}).items() if k != "id"}}
    schema["required"] = ["id", *[r for r in schema.get("required", []) if r != "id"]]
    schema.pop("additionalProperties", None)
    return schema


def _list_item_schema(model_schema: dict[str, Any], title: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A document in a list page: only the fields named by ``?fields=`` (always its id).

    A field holding a model may hold part of it (``?fields=address.city``): its schema is left open.
    """
    properties: dict[str, Any] = {"id": ID}
    for key, prop in model_schema.get("properties", {}).items():
        if key == "id":
            continue
        nested = any("properties" in defs.get(name, {}) for _, name in refs(prop))
        properties[key] = {"description": f"`{key}`, only the sub-fields named when `?fields=` names some."} \
            if nested else prop
    return {
        "type": "object",
        "title": f"{title} (list item)",
        "description": "A document; with `?fields=` only the named fields (and always `id`).",
        "properties": properties,
        "required": ["id"],
    }


def _list_schema(spec: ResourceSpec, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"A page of {spec.name}",
        "properties": {
            "items": {"type": "array", "items": {"$ref": ref(item)}},
            "total": {"type": ["integer", "null"], "minimum": 0,
                      "description": "Matching documents; null on a keyset page (`?after=`)."},
            "page": {"type": ["integer", "null"], "minimum": 1, "description": "null on a keyset page."},
            "per_page": {"type": "integer", "minimum": 1, "maximum": spec.max_per_page},
        },
        "required": ["items", "total", "page", "per_page"],
    }
