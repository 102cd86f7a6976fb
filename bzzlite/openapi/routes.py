"""The path items of the app's own routes: ``@route`` and ``@action`` routes (with the
schemas of their models), mock routes, and the health and documentation endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from ..mocks import METHODS, MockRoute, content_type, encode_body
from ..routing import CustomRoute
from .common import JSON, REF, auth_required, errors, json_body
from .schemas import ID, Generator, Schemas, defaults_as_text

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

_PATH_SCHEMAS: dict[type, dict[str, Any]] = {str: {"type": "string"}, int: {"type": "integer"},
                                             float: {"type": "number"}}


def custom_paths(routes: Iterable[CustomRoute], schemas: Schemas, auth: Any,
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
                                       ref_template=REF, schema_generator=Generator)
        components.update(top.get("$defs", {}))
        defaults_as_text(components, [refs[model] for model in models if model[1] == "validation"])
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


def _custom_operation(route: CustomRoute, method: str, refs: dict[Any, Any], schemas: Schemas, auth: Any,
                      security: list[dict[str, Any]] | None) -> dict[str, Any]:
    parameters = []
    for name in re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", route.template):
        schema = ID if route.spec is not None and name == "id" else _PATH_SCHEMAS[route.path_params.get(name, str)]
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
    rule = route.rule
    if rule is not None:
        op["x-bzzlite-allow"] = rule.describe()
        needs_user = rule.needs_user
    elif route.spec is not None:  # an action: its resource's auth for its operation
        needs_user = auth_required(auth, route.spec, route.operation or "update")
    else:
        needs_user = route.auth is not False and auth is not None
    if security and needs_user:
        op["security"] = security
        codes |= {401, 403}
    spec = _resource_of(route)
    if spec is not None:
        body: dict[str, Any] = json_body(schemas.names[spec.path]["Document"], "The document.")
        body["headers"] = {"ETag": {"$ref": "#/components/headers/ETag"}}
    elif route.response is not None:
        body = {"description": "The result.", "content": {JSON: {"schema": refs[(route.response, "serialization")]}}}
    elif route.handler is not None:
        body = {"description": "What the handler answers."}
    else:
        body = {"description": "The result (JSON), or no content.", "content": {JSON: {"schema": {}}}}
    op["responses"] = {str(route.status): body, **({"204": {"description": "No content."}}
                                                    if route.response is None and route.handler is None else {}),
                       **errors(sorted(codes))}
    return op


HEALTH = {"get": {
    "tags": ["meta"], "summary": "Health: does the store answer?", "operationId": "health",
    "responses": {
        "200": {"description": "The store answers.", "content": {JSON: {"schema": {
            "type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"],
            "additionalProperties": False}}}},
        "503": {"description": "The store is unavailable (the server log says why).", "content": {JSON: {"schema": {
            "type": "object", "properties": {"status": {"const": "unavailable"}}, "required": ["status"],
            "additionalProperties": False}}}},
    },
}}

DOCS_PATHS = {
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


def mock_paths(mocks: list[MockRoute]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
