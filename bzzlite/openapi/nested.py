"""The path items of nested routes (see :mod:`bzzlite.models.nested`): a document's embedded
models, the elements of its lists and the documents it references."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..models.nested import EMBEDDED, LIST, NestedModel, Route, routes
from .common import HEADERS, JSON, errors, header, permissions, ref
from .parameters import item_parameter
from .schemas import ID, Schemas

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models.resource import ResourceSpec

_NESTED_ERRORS = {
    "get": (404, 503),
    "list": (400, 404, 503),
    "write": (400, 404, 409, 412, 413, 415, 422, 503),
    "delete": (404, 409, 412, 422, 503),
}
_KEY_SCHEMAS = {
    "index": {"type": "integer", "minimum": 0, "maximum": 999_999_999, "description": "A position in the list."},
    "id": {"type": "string", "minLength": 1, "pattern": "^[^/]+$", "description": "The element's own `id`."},
    "ref_id": {**ID, "description": "The id of a referenced document."},
}
_REFERENCE_BODY = {
    "type": "object", "title": "A reference",
    "description": "The id of an existing document to reference (404 if there is none).",
    "properties": {"id": ID}, "required": ["id"], "additionalProperties": False,
}


def inner_models(trees: Iterable[tuple[ResourceSpec, NestedModel]]) -> list[type[BaseModel]]:
    """The embedded models nested routes serve (a resource's and its tree), each once."""
    found: dict[type[BaseModel], None] = {}
    for spec, tree in trees:
        for route in routes(tree, spec.schema.write_only):
            if route.field.kind in (EMBEDDED, LIST):
                found.setdefault(route.field.model)
    return list(found)


def nested_paths(spec: ResourceSpec, tree: NestedModel, schemas: Schemas, protected: dict[str, bool],
                 security: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The path items of a resource's nested routes (see :mod:`bzzlite.models.nested`); none
    inside a write-only field, whose paths answer 404 and whose value is never sent."""
    return {f"{spec.path}/{{id}}/{route.template}": _nested_item(spec, route, schemas, protected, security)
            for route in routes(tree, spec.schema.write_only)}


def _nested_item(spec: ResourceSpec, route: Route, schemas: Schemas, protected: dict[str, bool],
                 security: list[dict[str, Any]] | None) -> dict[str, Any]:
    nested, endpoint = route.field, route.endpoint
    op_id = re.sub(r"[^A-Za-z0-9]+", "_", f"{spec.path}/{route.template}".replace("{", "").replace("}", "")).strip("_")
    label = f"{spec.model.__name__}.{route.template}"
    parameters: list[dict[str, Any]] = [item_parameter(spec)]
    parameters += [{"name": name, "in": "path", "required": True, "schema": _KEY_SCHEMAS[kind]}
                   for name, kind in route.parameters]
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "Only if the parent document's current ETag is one of these (`*`: any)."}
    etag_header = {"ETag": {**HEADERS["ETag"], "description": "The parent document's current version."}}
    if nested.target is not None:  # a reference: requests name a document, responses are that document
        one: dict[str, Any] = {"$ref": ref(schemas.names[nested.target.path]["Document"])}
        one_in: dict[str, Any] = _REFERENCE_BODY
        tagged = False  # the parent's ETag does not validate the referenced document
    else:
        one, one_in, tagged = schemas.inner[(nested.model, "serialization")], schemas.inner[(nested.model, "validation")], True
    body = {"description": f"What `{route.template}` holds.", "content": {JSON: {"schema": one}},
            **({"headers": etag_header} if tagged else {})}
    not_modified = {"304": {"description": "Not modified: `If-None-Match` matches.", "headers": etag_header}} \
        if tagged else {}

    def operation(kind: str, verb: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": [spec.name], "summary": summary, "operationId": f"{verb}_{op_id}", **extra,
                              **permissions(spec, "get" if kind in ("get", "list") else "update")}
        codes = [*_NESTED_ERRORS[kind], 403]  # any pre_* receiver or rule may refuse
        if protected.get("get" if kind in ("get", "list") else "update"):
            op["security"] = security
            codes.append(401)
        op["responses"] = {**responses, **errors(sorted(codes))}
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
                  "headers": {"Link": header("Link"), **(etag_header if tagged else {})}}
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
