"""The path items of a resource: its collection (list, create), its documents (get, replace,
update, delete) and its change feed."""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from .common import JSON, errors, header, json_body, permissions, ref
from .parameters import filter_table, item_parameter, list_parameters

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

FORM = "application/x-www-form-urlencoded"


OPERATION_ERRORS = {
    "list": (400, 503),
    "create": (400, 409, 413, 415, 422, 503),
    "get": (404, 503),
    "replace": (400, 404, 409, 412, 413, 415, 422, 503),
    "update": (400, 404, 409, 412, 413, 415, 422, 503),
    "delete": (404, 409, 412, 503),
}


def resource_paths(
    spec: ResourceSpec, names: dict[str, str], protected: dict[str, bool], security: list[dict[str, Any]] | None,
    example: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The path items of a resource's collection and of its documents."""
    example = example or {}
    op_id = re.sub(r"[^A-Za-z0-9_]", "_", spec.path.strip("/"))
    model = spec.model.__name__
    tags = [spec.name]
    id_param = item_parameter(spec)
    key = f"$response.body#/{spec.lookup or 'id'}"
    document = {**json_body(names["Document"], f"The {model} document."),
                "headers": {"ETag": header("ETag")}}
    page = {**json_body(names["List"], f"A page of {model} documents."), "headers": {"Link": header("Link")}}
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
            {"$ref": ref(names["Request"])},
            {"type": "array", "items": {"$ref": ref(names["Request"])}, "minItems": 1,
             "description": "Create many at once, all or nothing."},
        ]}}},
    }
    single: dict[str, Any] = {"required": True, "content": {JSON: {"schema": {"$ref": ref(names["Request"])}}}}
    patch_body: dict[str, Any] = {"schema": {"$ref": ref(names["Patch"])}}
    if "Request" in example:
        single["content"][JSON]["example"] = example["Request"]
        request_body["content"][JSON]["examples"] = {
            "one": {"summary": f"One {model}", "value": example["Request"]},
            "many": {"summary": "Many at once", "value": example["Many"]},
        }
        patch_body["example"] = example["Patch"]
    create_description = ""
    if "Form" in names:
        # PUT documents the form encoding beside JSON. POST only names it: openapi-python-client
        # (0.29) cannot generate a body that is one of JSON (an object or an array) and a form.
        single["content"][FORM] = {"schema": {"$ref": ref(names["Form"])}}
        create_description = (f"Form fields (`{FORM}`, as `{names['Form']}` describes) create one {model} "
                              "too.")

    def operation(kind: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": tags, "summary": summary, "operationId": f"{kind}_{op_id}", **extra,
                              **permissions(spec, "update" if kind == "replace" else kind)}
        codes = [*OPERATION_ERRORS[kind], 403]  # any pre_* receiver or rule may refuse
        if protected.get(kind):
            op["security"] = security
            codes.append(401)
        op["responses"] = {**responses, **errors(sorted(codes))}
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
            "Server-Sent Events instead.\n\n" + filter_table(spec),
            parameters=list(list_parameters(spec)),
        ),
        "post": operation(
            "create", f"Create a {model} (or many, with an array)",
            {"201": {
                "description": f"The created {model} document (an array of them for an array body).",
                "headers": {"X-Created-Id": header("X-Created-Id"), "Location": header("Location"),
                            "ETag": header("ETag", False)},
                "content": {JSON: {"schema": {"oneOf": [
                    {"$ref": ref(names["Document"])},
                    {"type": "array", "items": {"$ref": ref(names["Document"])}},
                ]}, **({"example": example["Document"]} if "Document" in example else {})}},
                "links": links,
            }},
            requestBody=request_body,
            **({"description": create_description} if create_description else {}),
        ),
    }
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "Only if the document's current ETag is one of these (`*`: any)."}
    item = {
        "parameters": [id_param],
        "get": operation(
            "get", f"Get a {model}",
            {"200": document,
             "304": {"description": "Not modified: `If-None-Match` matches.", "headers": {"ETag": header("ETag")}}},
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


def changes_item(spec: ResourceSpec, protected: dict[str, bool], security: list[dict[str, Any]] | None) -> dict[str, Any]:
    """``/{name}/_changes``: the collection's change feed over a WebSocket."""
    op_id = re.sub(r"[^A-Za-z0-9_]", "_", spec.path.strip("/"))
    codes = [400, 403, 503] + ([401] if protected.get("list") else [])
    op: dict[str, Any] = {
        "tags": [spec.name], "summary": f"Follow changes to {spec.name} (WebSocket)", "operationId": f"changes_{op_id}",
        "description": "Upgrade to a WebSocket, then send `{\"type\": \"subscribe\", \"id\": ..., \"query\": "
        "\"done=false\", \"since\": ...}` messages; the server sends `ready`, `created`, `updated`, `deleted`, "
        "`reset` and `ping` messages. A request that is not a WebSocket upgrade is a 400.",
        "responses": {"101": {"description": "Switching to the WebSocket protocol."}, **errors(sorted(codes))},
    }
    if protected.get("list"):
        op["security"] = security
    return {"get": op}
