"""The OpenAPI 3.1 document of an app, generated from the objects its router serves.

Everything comes from the registry the routes were built from: the resource specs (their
models, query fields and paging), the mock routes, the app's settings (title, version,
servers) and the auth policy. Pure: no Tornado and no store, so ``python -m bzzlite
openapi`` prints the same document ``GET /openapi.json`` serves, without serving.
"""

from __future__ import annotations

import copy
import decimal
import json
import re
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from . import examples
from ..mocks import METHODS, MockRoute, content_type, encode_body
from ..models.nested import EMBEDDED, LIST, NestedModel, Route, inspect_nested, routes
from ..routing import CustomRoute
from ..settings import Settings

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..registry import Registry, ResourceSpec
    from ..models.schema import FieldPath

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
FORM = "application/x-www-form-urlencoded"
_REF = "#/components/schemas/{model}"
_ID = {
    "type": "string",
    "pattern": "^[0-9a-f]{24}$",
    "description": "Server-assigned id: 24 hexadecimal characters, sorting by creation time.",
}
_IGNORED_ID = {"type": "string", "description": "Ignored: the server assigns ids (a document read back can be "
               "sent as it is)."}
_EQUALITY = ("ne", "in", "nin", "exists")
_ORDERING = ("gt", "gte", "lt", "lte")
_TEXT = ("contains", "startswith")

#: The error responses, by status: (component name, description).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, or a bad query parameter (`loc` is `[\"query\", name]`)."),
    401: ("Unauthorized", "Authentication is needed, or the token is invalid or expired."),
    403: ("Forbidden", "A receiver or rule forbids it (cross-site writes included)."),
    404: ("NotFound", "No document with that id (or a malformed id)."),
    409: ("Conflict", "A unique field already holds this value, or concurrent writers kept winning."),
    412: ("PreconditionFailed", "`If-Match` does not match the document's current ETag."),
    413: ("ContentTooLarge", "The body is larger than the app's limit."),
    415: ("UnsupportedMediaType", "Send `application/json` (or form fields)."),
    422: ("UnprocessableContent", "The body is well-formed but invalid for the model; `errors` says where."),
    502: ("BadGateway", "The identity provider gave an unusable answer."),
    503: ("ServiceUnavailable", "The store is unreachable; retry after `Retry-After` seconds."),
    504: ("GatewayTimeout", "The identity provider did not answer in time."),
}
_OPERATION_ERRORS = {
    "list": (400, 503),
    "create": (400, 409, 413, 415, 422, 503),
    "get": (404, 503),
    "replace": (400, 404, 409, 412, 413, 415, 422, 503),
    "update": (400, 404, 409, 412, 413, 415, 422, 503),
    "delete": (404, 409, 412, 503),
}
_AUTH_OPERATION = {"list": "list", "create": "create", "get": "get", "replace": "update",
                   "update": "update", "delete": "delete"}


def build_document(app: Any) -> dict[str, Any]:
    """The OpenAPI document of an :class:`~bzzlite.App` (what ``GET /openapi.json`` serves)."""
    runtime = getattr(app, "runtime", None)
    return build(app.registry, getattr(app, "bzz_settings", None), auth=getattr(runtime, "auth", None))


def build(registry: Registry, settings: Settings | None = None, *, auth: Any = None) -> dict[str, Any]:
    """The OpenAPI document of a registry served with these settings and auth policy.

    ``auth`` is the app's auth policy (``runtime.auth``) or None. When it has an
    ``openapi()`` method, that returns ``{"paths": {...}, "securitySchemes": {...}}`` for
    its routes; otherwise the sign-in routes of :class:`bzzlite.auth.Auth` are described
    from the policy's ``auth`` configuration. ``required(spec, operation)`` (if present)
    tells which resource operations need a signed-in user.
    """
    settings = settings if settings is not None else Settings()
    specs = list(registry.resources.values())
    trees = {spec.path: inspect_nested(spec, specs) for spec in specs}
    schemas = _Schemas(specs, inner=_inner_models(trees.values()))
    components: dict[str, Any] = {
        "schemas": {**copy.deepcopy(_PROBLEM_SCHEMAS), **schemas.components},
        "responses": {
            name: {"description": text, "content": {PROBLEM_JSON: {"schema": {"$ref": _ref("Problem")},
                                                                   "example": _problem_example(status)}}}
            for status, (name, text) in sorted(ERRORS.items())
        },
        "headers": copy.deepcopy(_HEADERS),
    }
    components["responses"]["ServiceUnavailable"]["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    paths: dict[str, Any] = {}
    tags: list[dict[str, Any]] = []
    auth_docs = _auth_docs(auth)
    security: list[dict[str, list[str]]] | None = (
        [{name: []} for name in auth_docs["securitySchemes"]] if auth_docs else None
    )
    for spec in registry.resources.values():
        tags.append(_tag(spec))
        protected = {op: _required(auth, spec, _AUTH_OPERATION[op]) for op in _OPERATION_ERRORS} if security else {}
        collection, item = _resource_paths(spec, schemas.names[spec.path], protected, security,
                                           schemas.examples.get(spec.path, {}))
        served = {spec.path: _served(collection, spec.methods), f"{spec.path}/{{id}}": _served(item, spec.methods)}
        if getattr(settings, "feeds", False) and "GET" in spec.methods:
            served[f"{spec.path}/_changes"] = _changes_item(spec, protected, security)
        nested_writes = spec.methods if "PATCH" in spec.methods else ("GET",)  # a nested write changes the document
        for path, item in _nested_paths(spec, trees[spec.path], schemas, protected, security).items():
            served[path] = _served(item, tuple(m for m in nested_writes if m in spec.methods))
        paths.update({path: item for path, item in served.items() if item})
    paths["/_health"] = copy.deepcopy(_HEALTH)
    if settings.docs:
        paths.update(copy.deepcopy(_DOCS_PATHS))
    if auth_docs:
        paths.update(auth_docs["paths"])
        components["securitySchemes"] = auth_docs["securitySchemes"]
    custom_paths, custom_components = _custom_paths(registry.routes, schemas, auth, security)
    for path, item in custom_paths.items():
        paths.setdefault(path, {}).update(item)
    for name, schema in custom_components.items():
        components["schemas"].setdefault(name, schema)
    mock_paths, mock_patterns = _mock_paths(registry.mocks)
    for path, item in mock_paths.items():
        paths.setdefault(path, item)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": settings.title, "version": settings.version},
    }
    if settings.servers:
        document["servers"] = [{"url": url} for url in settings.servers]
    elif settings.root_path:  # mounted under a prefix: clients and /docs call the API through it
        document["servers"] = [{"url": settings.root_path}]
    document["paths"] = paths
    document["components"] = components
    if tags:
        document["tags"] = tags
    if mock_patterns:
        document["x-bzzlite-mock-patterns"] = mock_patterns
    _prune(document)
    return document


def _problem_example(status: int) -> dict[str, Any]:
    example = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
               "detail": _PROBLEM_DETAILS.get(status, HTTPStatus(status).description)}
    if status in (400, 422):
        example["errors"] = [{"loc": ["query", "price__gt"] if status == 400 else ["price"],
                              "msg": "Input should be a valid number", "type": "query_value" if status == 400
                              else "float_parsing"}]
    return example


_PROBLEM_DETAILS = {
    400: "'cheap' is not a valid value for 'price'", 401: "Sign in first.", 403: "Only the owner may do this.",
    404: "No document with id '6650c3e1a2b4c5d6e7f80912'.", 409: "'sku' already holds 'SKU-1001'.",
    412: "If-Match does not match the current ETag.", 422: "The body is invalid for the model.",
}


def _ref(name: str) -> str:
    return _REF.format(model=name)


# --- model schemas ---------------------------------------------------------------------


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


class _Portable(GenerateJsonSchema):
    """pydantic's generator, told which values bzzlite refuses because no store keeps them:
    integers beyond 64 bits (request bodies and query values alike)."""

    def int_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().int_schema(schema)
        if self.mode == "validation":
            json_schema["minimum"] = max(json_schema.get("minimum", _INT64[0]), _INT64[0])
            json_schema["maximum"] = min(json_schema.get("maximum", _INT64[1]), _INT64[1])
        return json_schema


class _Generator(_Portable):
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


class _Schemas:
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
        refs, top = models_json_schema(pairs, ref_template=_REF, schema_generator=_Generator)  # type: ignore[arg-type]
        defs: dict[str, Any] = top.get("$defs", {})
        self.components.update(defs)
        self.inner = {(model, mode): refs[(model, mode)] for model in inner for mode in ("validation", "serialization")}
        for model in inner:  # the merge patch of an embedded model (nested PATCH routes)
            name = self._free_name(f"{model.__name__}Patch")
            self.components[name] = _patch_schema(model, self._resolve(defs, refs[(model, "validation")]))
            self.inner[(model, "patch")] = {"$ref": _ref(name)}
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
    schema["properties"] = {"id": _ID, **{k: v for k, v in schema.get("properties", {}).items() if k != "id"}}
    schema["required"] = ["id", *[r for r in schema.get("required", []) if r != "id"]]
    schema.pop("additionalProperties", None)
    return schema


def _list_item_schema(model_schema: dict[str, Any], title: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A document in a list page: only the fields named by ``?fields=`` (always its id).

    A field holding a model may hold part of it (``?fields=address.city``): its schema is left open.
    """
    properties: dict[str, Any] = {"id": _ID}
    for key, prop in model_schema.get("properties", {}).items():
        if key == "id":
            continue
        nested = any("properties" in defs.get(name, {}) for _, name in _refs(prop))
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
            "items": {"type": "array", "items": {"$ref": _ref(item)}},
            "total": {"type": ["integer", "null"], "minimum": 0,
                      "description": "Matching documents; null on a keyset page (`?after=`)."},
            "page": {"type": ["integer", "null"], "minimum": 1, "description": "null on a keyset page."},
            "per_page": {"type": "integer", "minimum": 1, "maximum": spec.max_per_page},
        },
        "required": ["items", "total", "page", "per_page"],
    }


_PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "title": "Problem",
        "description": "Problem details (RFC 9457).",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": _ref("ErrorDetail")}},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "ErrorDetail": {
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"type": ["string", "integer"]},
                    "description": "Where: the field path (prefixed by the item's index in a bulk POST), "
                    "or `[\"query\", parameter]`."},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
        "required": ["loc", "msg", "type"],
    },
}

_HEADERS: dict[str, Any] = {
    "ETag": {"description": "Strong validator of the document's current version.", "required": True,
             "schema": {"type": "string"}},
    "Link": {"description": "RFC 8288 links to the first, prev, next and last pages.",
             "schema": {"type": "string"}},
    "Location": {"description": "The created document's URL (single create only).",
                 "schema": {"type": "string"}},
    "X-Created-Id": {"description": "The created ids, comma-separated for a bulk create.", "required": True,
                     "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}},
}


# --- resource operations -------------------------------------------------------------------


def _tag(spec: ResourceSpec) -> dict[str, Any]:
    tag: dict[str, Any] = {"name": spec.name}
    doc = (spec.model.__doc__ or "").strip()
    if doc and not doc.startswith(("Usage docs:", "!!! abstract")):  # pydantic's BaseModel docstring
        tag["description"] = doc
    return tag


def _served(item: dict[str, Any], methods: tuple[str, ...]) -> dict[str, Any]:
    """A path item with only the operations of the methods a resource serves."""
    return {key: value for key, value in item.items()
            if key not in ("get", "post", "put", "patch", "delete") or key.upper() in methods}


_PATH_SCHEMAS: dict[type, dict[str, Any]] = {str: {"type": "string"}, int: {"type": "integer"},
                                             float: {"type": "number"}}


def _custom_paths(routes: Iterable[CustomRoute], schemas: _Schemas, auth: Any,
                  security: list[dict[str, Any]] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Path items of ``@route`` and ``@action`` routes, and the component schemas of their
    body and response models (a resource's own model is answered as its ``Document``)."""
    routes = list(routes)
    models = {(r.body, "validation") for r in routes if r.body is not None}
    models |= {(r.response, "serialization") for r in routes if r.response is not None and not _resource_of(r)}
    refs: dict[Any, Any] = {}
    components: dict[str, Any] = {}
    if models:
        refs, top = models_json_schema(sorted(models, key=lambda m: (m[0].__name__, m[1])),  # type: ignore[arg-type]
                                       ref_template=_REF, schema_generator=_Generator)
        components.update(top.get("$defs", {}))
    paths: dict[str, Any] = {}
    for route in routes:
        item = paths.setdefault(route.template, {})
        for method in route.methods:
            item[method.lower()] = _custom_operation(route, method, refs, schemas, auth, security)
    return paths, components


def _resource_of(route: CustomRoute) -> ResourceSpec | None:
    """The resource whose model an action answers with, if it does."""
    spec = route.spec
    if spec is not None and route.response is not None and issubclass(spec.model, route.response):
        return spec
    return None


def _custom_operation(route: CustomRoute, method: str, refs: dict[Any, Any], schemas: _Schemas, auth: Any,
                      security: list[dict[str, Any]] | None) -> dict[str, Any]:
    parameters = []
    for name in re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", route.template):
        schema = _ID if route.spec is not None and name == "id" else _PATH_SCHEMAS[route.path_params.get(name, str)]
        parameters.append({"name": name, "in": "path", "required": True, "schema": dict(schema)})
    op: dict[str, Any] = {"operationId": f"{route.name}_{method.lower()}" if len(route.methods) > 1 else route.name,
                          "summary": route.summary or route.name.replace("_", " ").capitalize()}
    if route.description:
        op["description"] = route.description
    if route.spec is not None:
        op["tags"] = [route.spec.name]
    if parameters:
        op["parameters"] = parameters
    codes = {503}
    if route.handler is None:
        codes |= {400, 403, 409, 412}  # what the document API and receivers raise
    if route.body is not None and method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": refs[(route.body, "validation")]}}}
        codes |= {413, 415, 422}
    if route.path_params:
        codes.add(422)
    if route.spec is not None:
        codes.add(404)
    needs_user = route.auth is not False and (
        _required(auth, route.spec, route.operation or "update") if route.spec is not None else auth is not None)
    if security and needs_user:
        op["security"] = security
        codes |= {401, 403}
    spec = _resource_of(route)
    if spec is not None:
        body: dict[str, Any] = _json_body(schemas.names[spec.path]["Document"], "The document.")
        body["headers"] = {"ETag": {"$ref": "#/components/headers/ETag"}}
    elif route.response is not None:
        body = {"description": "The result.", "content": {JSON: {"schema": refs[(route.response, "serialization")]}}}
    elif route.handler is not None:
        body = {"description": "What the handler answers."}
    else:
        body = {"description": "The result (JSON), or no content.", "content": {JSON: {"schema": {}}}}
    op["responses"] = {str(route.status): body, **({"204": {"description": "No content."}}
                                                    if route.response is None and route.handler is None else {}),
                       **_errors(sorted(codes))}
    return op


def _errors(codes: Iterable[int]) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in codes}


def _json_body(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": _ref(ref)}}}}


def _header(name: str, required: bool | None = None) -> dict[str, Any]:
    if required is None:
        return {"$ref": f"#/components/headers/{name}"}
    return {**_HEADERS[name], "required": required}


def _item_parameter(spec: ResourceSpec) -> dict[str, Any]:
    """The ``{id}`` of item URLs: the id, or the value of the resource's lookup field."""
    if spec.lookup is None:
        return {"name": "id", "in": "path", "required": True, "schema": _ID}
    schema = _inline(spec.schema.paths[spec.lookup].adapter.json_schema(schema_generator=_Portable))
    return {"name": "id", "in": "path", "required": True, "schema": schema,
            "description": f"The document's `{spec.lookup}` (the resource's lookup field), percent-encoded."}


def _resource_paths(
    spec: ResourceSpec, names: dict[str, str], protected: dict[str, bool], security: list[dict[str, Any]] | None,
    example: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The path items of a resource's collection and of its documents."""
    example = example or {}
    op_id = re.sub(r"[^A-Za-z0-9_]", "_", spec.path.strip("/"))
    model = spec.model.__name__
    tags = [spec.name]
    id_param = _item_parameter(spec)
    key = f"$response.body#/{spec.lookup or 'id'}"
    document = {**_json_body(names["Document"], f"The {model} document."),
                "headers": {"ETag": _header("ETag")}}
    page = {**_json_body(names["List"], f"A page of {model} documents."), "headers": {"Link": _header("Link")}}
    if "Document" in example:
        document["content"][JSON]["example"] = example["Document"]
        page["content"][JSON]["example"] = {"items": [example["Document"]], "total": 1, "page": 1,
                                            "per_page": spec.per_page}
    links = {
        f"get_{op_id}": {"operationId": f"get_{op_id}", "parameters": {"id": key}},
        f"update_{op_id}": {"operationId": f"update_{op_id}", "parameters": {"id": key}},
        f"delete_{op_id}": {"operationId": f"delete_{op_id}", "parameters": {"id": key}},
    }
    request_body: dict[str, Any] = {
        "required": True,
        "content": {JSON: {"schema": {"oneOf": [
            {"$ref": _ref(names["Request"])},
            {"type": "array", "items": {"$ref": _ref(names["Request"])}, "minItems": 1,
             "description": "Create many at once, all or nothing."},
        ]}}},
    }
    single: dict[str, Any] = {"required": True, "content": {JSON: {"schema": {"$ref": _ref(names["Request"])}}}}
    patch_body: dict[str, Any] = {"schema": {"$ref": _ref(names["Patch"])}}
    if "Request" in example:
        single["content"][JSON]["example"] = example["Request"]
        request_body["content"][JSON]["examples"] = {
            "one": {"summary": f"One {model}", "value": example["Request"]},
            "many": {"summary": "Many at once", "value": example["Many"]},
        }
        patch_body["example"] = example["Patch"]
    if "Form" in names:
        form = {FORM: {"schema": {"$ref": _ref(names["Form"])}}}
        request_body["content"].update(form)
        single["content"].update(form)

    def operation(kind: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": tags, "summary": summary, "operationId": f"{kind}_{op_id}", **extra}
        codes = [*_OPERATION_ERRORS[kind], 403]  # any pre_* receiver may refuse
        if protected.get(kind):
            op["security"] = security
            codes.append(401)
        op["responses"] = {**responses, **_errors(sorted(codes))}
        return op

    collection = {
        "get": operation(
            "list", f"List {spec.name}",
            {"200": page},
            description="Filter with `?field=value` and `?field__op=value`, sort with `?sort=-a,b`, "
            "project with `?fields=a,b`, page with `?page=&per_page=` or follow `?after=` cursors "
            "from the `next` link. List-valued parameters (`__in`, `__nin`, `sort`, `fields`) take "
            "comma-separated values or repeated keys, alike (`?price__in=1&price__in=2` is `?price__in=1,2`); "
            "a repeated filter of one value means all of its conditions hold. With `Accept: text/event-stream` "
            "(when the app's change feeds are on) the same query streams the matching documents' changes as "
            "Server-Sent Events instead.\n\n" + _filter_table(spec),
            parameters=list(_list_parameters(spec)),
        ),
        "post": operation(
            "create", f"Create a {model} (or many, with an array)",
            {"201": {
                "description": f"The created {model} document (an array of them for an array body).",
                "headers": {"X-Created-Id": _header("X-Created-Id"), "Location": _header("Location"),
                            "ETag": _header("ETag", False)},
                "content": {JSON: {"schema": {"oneOf": [
                    {"$ref": _ref(names["Document"])},
                    {"type": "array", "items": {"$ref": _ref(names["Document"])}},
                ]}, **({"example": example["Document"]} if "Document" in example else {})}},
                "links": links,
            }},
            requestBody=request_body,
        ),
    }
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "Only if the document's current ETag is one of these (`*`: any)."}
    item = {
        "parameters": [id_param],
        "get": operation(
            "get", f"Get a {model}",
            {"200": document,
             "304": {"description": "Not modified: `If-None-Match` matches.", "headers": {"ETag": _header("ETag")}}},
            parameters=[{"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                         "description": "Answer 304 when the current ETag is one of these."}],
        ),
        "put": operation(
            "replace", f"Replace a {model}", {"200": document}, parameters=[if_match],
            requestBody=single,
        ),
        "patch": operation(
            "update", f"Update a {model} (JSON merge patch)", {"200": document}, parameters=[if_match],
            requestBody={"required": True, "content": {
                JSON: patch_body,
                "application/merge-patch+json": copy.deepcopy(patch_body),
            }},
        ),
        "delete": operation(
            "delete", f"Delete a {model}", {"204": {"description": "Deleted."}}, parameters=[if_match],
        ),
    }
    return collection, item


def _list_parameters(spec: ResourceSpec) -> Iterator[dict[str, Any]]:
    """page, per_page, sort, fields, after, then one parameter per field and operator.

    Only the fields of the resource's ``filterable=`` / ``sortable=`` allowlists appear.
    """
    hidden = spec.schema.write_only  # never filtered, sorted or projected on
    paths = {p: f for p, f in spec.schema.paths.items() if p.partition(".")[0] not in hidden}
    sortable = ["id", *[p for p, f in paths.items() if f.orderable and (spec.sortable is None or p in spec.sortable)]]
    projectable = list(dict.fromkeys(["id", *[n for n in spec.schema.top_level if n not in hidden], *paths]))
    page: dict[str, Any] = {"name": "page", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1, "default": 1}}
    if spec.max_offset is not None:
        page["description"] = (f"`page` × `per_page` is at most {spec.max_offset}; "
                               "read further with `after` cursors.")
    yield page
    yield {"name": "per_page", "in": "query", "description": f"Capped at {spec.max_per_page}.",
           "schema": {"type": "integer", "minimum": 1, "default": spec.per_page}}
    yield {"name": "sort", "in": "query",
           "description": "Sort keys, `-` for descending; each field once. Repeat the key "
           "(`?sort=-price&sort=name`) or separate with commas (`?sort=-price,name`).",
           "schema": {"type": "array", "uniqueItems": True,
                      "items": {"enum": [*sortable, *[f"-{p}" for p in sortable]]}}}
    yield {"name": "fields", "in": "query",
           "description": "Only these fields in each item (`id` is always included). Repeat the key "
           "or separate with commas.",
           "schema": {"type": "array", "items": {"enum": projectable}}}
    yield {"name": "after", "in": "query", "schema": {"type": "string"},
           "description": "A cursor from a `next` link: keyset paging, no total (instead of `page`)."}
    yield from _filter_parameters("id", None)
    for path, field in paths.items():
        if spec.filterable is None or path in spec.filterable:
            yield from _filter_parameters(path, field)


def _filter_parameters(path: str, field: FieldPath | None) -> Iterator[dict[str, Any]]:
    value: dict[str, Any]
    ops: tuple[str, ...]
    if field is None:  # the id
        value, ops = _ID, (*_EQUALITY[:3], *_ORDERING)
    else:
        value = _inline(field.adapter.json_schema(schema_generator=_Portable))
        if field.nullable:
            value = {"anyOf": [value, {"const": "null"}]}
        ops = _EQUALITY + (_ORDERING if field.orderable else ()) + (_TEXT if field.is_text else ())
    member = " (matches any member of the list)" if field is not None and field.is_list else ""
    null = "; `null` matches a missing or null value" if field is not None and field.nullable else ""
    yield {"name": path, "in": "query", "description": f"`{path}` equals{member}{null}.", "schema": value}
    for op in ops:
        parameter: dict[str, Any] = {"name": f"{path}__{op}", "in": "query"}
        if op in ("in", "nin"):
            parameter.update(schema={"type": "array", "items": value},
                             description=f"`{path}` is {'not ' if op == 'nin' else ''}one of these: repeat the key "
                             "or separate with commas.")
        elif op == "exists":
            parameter.update(schema={"type": "boolean"}, description=f"`{path}` is present and not null (or not).")
        elif op in _TEXT:
            parameter.update(schema={"type": "string"}, description=f"`{path}` {op} this text (case-sensitive).")
        else:
            parameter.update(schema=value, description=f"`{path}` {_OP_TEXT[op]} this value.")
        yield parameter


def _filter_table(spec: ResourceSpec) -> str:
    """The filters of a list operation as a Markdown table: one row per field, its operators."""
    rows = ["| field | operators |", "|---|---|", "| `id` | `=` " + " ".join(
        f"`__{op}`" for op in (*_EQUALITY[:3], *_ORDERING)) + " |"]
    for path, field in spec.schema.paths.items():
        ops = _EQUALITY + (_ORDERING if field.orderable else ()) + (_TEXT if field.is_text else ())
        rows.append(f"| `{path}` | `=` " + " ".join(f"`__{op}`" for op in ops) + " |")
    return "**Filters** (each also a query parameter below):\n\n" + "\n".join(rows)


_OP_TEXT = {"ne": "is not (also matches missing/null)", "gt": "is greater than", "gte": "is at least",
            "lt": "is less than", "lte": "is at most"}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A scalar's schema with its ``$defs`` (enums) inlined: parameters carry no definitions."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/") and ref[8:] in defs:
                return resolve(copy.deepcopy(defs[ref[8:]]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


def _required(auth: Any, spec: ResourceSpec, operation: str) -> bool:
    required = getattr(auth, "required", None)
    return bool(required(spec, operation)) if callable(required) else True


def _changes_item(spec: ResourceSpec, protected: dict[str, bool], security: list[dict[str, Any]] | None) -> dict[str, Any]:
    """``/{name}/_changes``: the collection's change feed over a WebSocket."""
    op_id = re.sub(r"[^A-Za-z0-9_]", "_", spec.path.strip("/"))
    codes = [400, 403, 503] + ([401] if protected.get("list") else [])
    op: dict[str, Any] = {
        "tags": [spec.name], "summary": f"Follow changes to {spec.name} (WebSocket)", "operationId": f"changes_{op_id}",
        "description": "Upgrade to a WebSocket, then send `{\"type\": \"subscribe\", \"id\": ..., \"query\": "
        "\"done=false\", \"since\": ...}` messages; the server sends `ready`, `created`, `updated`, `deleted`, "
        "`reset` and `ping` messages. A request that is not a WebSocket upgrade is a 400.",
        "responses": {"101": {"description": "Switching to the WebSocket protocol."}, **_errors(sorted(codes))},
    }
    if protected.get("list"):
        op["security"] = security
    return {"get": op}


# --- nested routes (embedded models, lists of them, references) --------------------------------

_NESTED_ERRORS = {
    "get": (404, 503),
    "list": (400, 404, 503),
    "write": (400, 404, 409, 412, 413, 415, 422, 503),
    "delete": (404, 409, 412, 422, 503),
}
_KEY_SCHEMAS = {
    "index": {"type": "integer", "minimum": 0, "maximum": 999_999_999, "description": "A position in the list."},
    "id": {"type": "string", "minLength": 1, "pattern": "^[^/]+$", "description": "The element's own `id`."},
    "ref_id": {**_ID, "description": "The id of a referenced document."},
}
_REFERENCE_BODY = {
    "type": "object", "title": "A reference",
    "description": "The id of an existing document to reference (404 if there is none).",
    "properties": {"id": _ID}, "required": ["id"], "additionalProperties": False,
}


def _inner_models(trees: Iterable[NestedModel]) -> list[type[BaseModel]]:
    """The embedded models nested routes serve, each once."""
    found: dict[type[BaseModel], None] = {}
    for tree in trees:
        for route in routes(tree):
            if route.field.kind in (EMBEDDED, LIST):
                found.setdefault(route.field.model)
    return list(found)


def _nested_paths(spec: ResourceSpec, tree: NestedModel, schemas: _Schemas, protected: dict[str, bool],
                  security: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The path items of a resource's nested routes (see :mod:`bzzlite.models.nested`)."""
    return {f"{spec.path}/{{id}}/{route.template}": _nested_item(spec, route, schemas, protected, security)
            for route in routes(tree)}


def _nested_item(spec: ResourceSpec, route: Route, schemas: _Schemas, protected: dict[str, bool],
                 security: list[dict[str, Any]] | None) -> dict[str, Any]:
    nested, endpoint = route.field, route.endpoint
    op_id = re.sub(r"[^A-Za-z0-9]+", "_", f"{spec.path}/{route.template}".replace("{", "").replace("}", "")).strip("_")
    label = f"{spec.model.__name__}.{route.template}"
    parameters: list[dict[str, Any]] = [_item_parameter(spec)]
    parameters += [{"name": name, "in": "path", "required": True, "schema": _KEY_SCHEMAS[kind]}
                   for name, kind in route.parameters]
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "Only if the parent document's current ETag is one of these (`*`: any)."}
    etag_header = {"ETag": {**_HEADERS["ETag"], "description": "The parent document's current version."}}
    if nested.target is not None:  # a reference: requests name a document, responses are that document
        one: dict[str, Any] = {"$ref": _ref(schemas.names[nested.target.path]["Document"])}
        one_in: dict[str, Any] = _REFERENCE_BODY
        tagged = False  # the parent's ETag does not validate the referenced document
    else:
        one, one_in, tagged = schemas.inner[(nested.model, "serialization")], schemas.inner[(nested.model, "validation")], True
    body = {"description": f"What `{route.template}` holds.", "content": {JSON: {"schema": one}},
            **({"headers": etag_header} if tagged else {})}
    not_modified = {"304": {"description": "Not modified: `If-None-Match` matches.", "headers": etag_header}} \
        if tagged else {}

    def operation(kind: str, verb: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": [spec.name], "summary": summary, "operationId": f"{verb}_{op_id}", **extra}
        codes = [*_NESTED_ERRORS[kind], 403]  # any pre_* receiver may refuse
        if protected.get("get" if kind in ("get", "list") else "update"):
            op["security"] = security
            codes.append(401)
        op["responses"] = {**responses, **_errors(sorted(codes))}
        return op

    def request(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {JSON: {"schema": schema}}}

    item: dict[str, Any] = {"parameters": parameters}
    if endpoint in ("list", "ref_list"):
        page = {
            "type": "object", "title": f"A page of {label}",
            "properties": {"items": {"type": "array", "items": one}, "total": {"type": "integer", "minimum": 0},
                           "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1, "maximum": spec.max_per_page}},
            "required": ["items", "total", "page", "per_page"],
        }
        skipped = " (references to deleted documents are left out of `items`, not of `total`)" if not tagged else ""
        listed = {"description": f"A page of `{route.template}`{skipped}.", "content": {JSON: {"schema": page}},
                  "headers": {"Link": _header("Link"), **(etag_header if tagged else {})}}
        item["get"] = operation(
            "list", "list", f"List {label}", {"200": listed, **not_modified},
            parameters=[
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1,
                                                            "default": 1}},
                {"name": "per_page", "in": "query", "description": f"Capped at {spec.max_per_page}.",
                 "schema": {"type": "integer", "minimum": 1, "default": spec.per_page}},
            ],
        )
        location = {"Location": {"description": "The URL of the element.", "required": True,
                                 "schema": {"type": "string"}}}
        if not tagged:
            created = {"201": {**body, "description": "Associated: the referenced document.", "headers": location},
                       "200": {**body, "description": "Already associated: nothing changed.", "headers": location}}
            summary = f"Associate an existing document with {label}"
        else:
            created = {"201": {**body, "description": "Appended: the new element.", "headers": {
                **location, **etag_header,
                "X-Created-Id": {"description": "The new element's key (its id, else its position).",
                                 "required": True, "schema": {"type": "string"}}}}}
            summary = f"Append to {label}"
        item["post"] = operation("write", "create", summary, created, parameters=[if_match],
                                 requestBody=request(one_in))
        return item

    if_none_match = [{"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": "Answer 304 when the parent's current ETag is one of these."}]
    item["get"] = operation("get", "get", f"Get {label}", {"200": body, **not_modified},
                            parameters=if_none_match if tagged else [])
    if endpoint == "ref":
        item["put"] = operation("write", "replace", f"Reference another document from {label}", {"200": body},
                                parameters=[if_match], requestBody=request(one_in))
    elif endpoint in ("embedded", "element"):
        patch = schemas.inner[(nested.model, "patch")]
        item["put"] = operation("write", "replace", f"Replace {label}", {"200": body}, parameters=[if_match],
                                requestBody=request(one_in))
        item["patch"] = operation("write", "update", f"Update {label} (JSON merge patch)", {"200": body},
                                  parameters=[if_match], requestBody={"required": True, "content": {
                                      JSON: {"schema": patch}, "application/merge-patch+json": {"schema": patch}}})
    removed = {"embedded": "Set to null (a required one: 422).",
               "ref": "Set to null (a required one: 422); the referenced document is not deleted.",
               "element": "Removed from the list.",
               "ref_element": "Dissociated: removed from the list; the referenced document is not deleted."}
    item["delete"] = operation("delete", "delete", f"Remove {label}", {"204": {"description": removed[endpoint]}},
                               parameters=[if_match])
    return item


# --- the app's own routes --------------------------------------------------------------------

_HEALTH = {"get": {
    "tags": ["meta"], "summary": "Health: does the store answer?", "operationId": "health",
    "responses": {
        "200": {"description": "The store answers.", "content": {JSON: {"schema": {
            "type": "object", "properties": {"status": {"const": "ok"}, "store": {"type": "object"}},
            "required": ["status", "store"]}}}},
        "503": {"description": "The store is unavailable.", "content": {JSON: {"schema": {
            "type": "object", "properties": {"status": {"const": "unavailable"}, "store": {"type": "object"}},
            "required": ["status", "store"]}}}},
    },
}}

_DOCS_PATHS = {
    "/openapi.json": {"get": {
        "tags": ["meta"], "summary": "This OpenAPI document", "operationId": "openapi",
        "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                              "content": {JSON: {"schema": {"type": "object"}}}}},
    }},
    "/docs": {"get": {
        "tags": ["meta"], "summary": "Interactive documentation (Swagger UI)", "operationId": "docs",
        "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
    }},
}


# --- mock routes -------------------------------------------------------------------------------


def _mock_paths(mocks: list[MockRoute]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Path items for mocks with a plain URL; the regex ones listed apart (no OpenAPI path names them)."""
    paths: dict[str, Any] = {}
    patterns = []
    for route in mocks:
        if not route.is_literal:
            patterns.append({"method": route.method, "url": route.url, "status": route.status})
            continue
        if route.url in paths:
            continue
        item = paths[route.url] = {}
        for method in METHODS:
            # what answers this path and method: the first mock declared that takes both
            answering = next((m for m in mocks if m.matches(route.url) and m.allows(method)), None)
            if answering is not None:
                item[method.lower()] = _mock_operation(answering)
    return paths, patterns


def _mock_operation(route: MockRoute) -> dict[str, Any]:
    response: dict[str, Any] = {"description": "Mock response" + (" (computed from the request)." if route.dynamic
                                                                  else ".")}
    media = content_type(route)
    if route.dynamic:
        response["content"] = {media or "*/*": {"schema": {}}}
    elif media is not None:
        schema: dict[str, Any] = {"type": "string"}
        if isinstance(route.body, (dict, list)):
            schema = {"type": "object" if isinstance(route.body, dict) else "array"}
        content: dict[str, Any] = {"schema": schema}
        if not isinstance(route.body, bytes):
            content["example"] = json.loads(encode_body(route.body)[0]) if schema["type"] != "string" else route.body
        response["content"] = {media.split(";", 1)[0].strip(): content}
    headers: dict[str, Any] = {name: {"schema": {"type": "string", "const": value}}
                               for name, value in route.headers.items() if name.lower() != "content-type"}
    if route.cookies:
        headers["Set-Cookie"] = {"description": f"Sets {', '.join(route.cookies)}.", "schema": {"type": "string"}}
    if headers:
        response["headers"] = headers
    return {"tags": ["mock"], "summary": f"Mock {route.method} {route.url}", "responses": {str(route.status): response}}


# --- auth ---------------------------------------------------------------------------------------


def _auth_docs(policy: Any) -> dict[str, Any] | None:
    """The auth routes and security schemes: from ``policy.openapi()``, else from its configuration."""
    if policy is None:
        return None
    described = getattr(policy, "openapi", None)
    if callable(described):
        docs = described()
        return {"paths": dict(docs.get("paths", {})), "securitySchemes": dict(docs.get("securitySchemes", {}))}
    config = getattr(policy, "auth", policy)
    prefix = getattr(config, "prefix", "/auth")
    cookie = getattr(config, "cookie_name", "AUTH_TOKEN")
    providers = list(getattr(config, "providers", {}) or {})
    csrf = getattr(config, "csrf_header", None)
    schemes = {
        "tokenCookie": {"type": "apiKey", "in": "cookie", "name": cookie,
                        "description": "The signed token cookie set by sign-in"
                        + (f"; cookie-authenticated writes also send a `{csrf}` header." if csrf else ".")},
        "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                        "description": "The same token as `Authorization: Bearer`."},
    }
    flag = {"type": "boolean"}
    user = {"type": "object", "description": "What the provider said about the user, plus receivers' additions."}
    provider = {"type": "string", **({"enum": providers} if providers else {})}

    def answer(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
        return {"description": description, "content": {JSON: {"schema": {
            "type": "object", "properties": properties, "required": required}}}}

    paths = {
        f"{prefix}/signin/": {"post": {
            "tags": ["auth"], "summary": "Sign in with an identity provider's access token", "operationId": "signin",
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "properties": {"access_token": {"type": "string"}, "provider": provider},
                "required": ["access_token", "provider"]}}}},
            "responses": {
                "200": answer({"authenticated": {"const": True}, "userData": user}, ["authenticated"],
                              "Signed in; the token cookie is set."),
                **_errors((400, 401, 403, 413, 415, 422)),
                **_errors((502, 504)),
            },
        }},
        f"{prefix}/signout/": {"post": {
            "tags": ["auth"], "summary": "Sign out", "operationId": "signout",
            "responses": {"200": answer({"loggedOut": {"const": True}}, ["loggedOut"], "Signed out; cookie cleared."),
                          **_errors((401, 403))},
        }},
        f"{prefix}/me/": {"get": {
            "tags": ["auth"], "summary": "Who is signed in", "operationId": "me",
            "responses": {"200": answer({"authenticated": flag, "userData": user}, ["authenticated"],
                                        "`authenticated` false, or true with `userData`."),
                          **_errors((401,))},
        }},
    }
    return {"paths": paths, "securitySchemes": schemes}


def _prune(document: dict[str, Any]) -> None:
    """Drop the components nothing reaches (pydantic's top-level defs, superseded by ours)."""
    components = document["components"]
    pending = _refs({k: v for k, v in document.items() if k != "components"})
    reached: set[tuple[str, str]] = set()
    while pending:
        key = pending.pop()
        if key not in reached:
            reached.add(key)
            pending.extend(_refs(components.get(key[0], {}).get(key[1])))
    for kind in ("schemas", "responses", "headers"):
        for name in list(components.get(kind, {})):
            if (kind, name) not in reached:
                del components[kind][name]


def _refs(node: Any) -> list[tuple[str, str]]:
    return re.findall(r"#/components/(\w+)/([A-Za-z0-9._-]+)", repr(node))
