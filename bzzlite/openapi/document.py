"""The OpenAPI 3.1 document of an app, assembled from the objects its router serves: the info
and servers of its settings, a tag and the paths of each resource, its own routes and mocks,
the auth routes and security schemes, and the components they reach. Pure: no Tornado and no
store, so ``python -m bzzlite openapi`` prints the same document ``GET /openapi.json`` serves.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ..models.nested import inspect_nested
from ..settings import Settings
from .common import ERRORS, HEADERS, JSON, auth_required, errors, ref, refs
from .nested import inner_models, nested_paths
from .paths import OPERATION_ERRORS, changes_item, resource_paths
from .routes import DOCS_PATHS, HEALTH, custom_paths, mock_paths
from .schemas import Schemas

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..registry import Registry

OPENAPI_VERSION = "3.1.0"
PROBLEM_JSON = "application/problem+json"
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
    schemas = Schemas(specs, inner=inner_models((spec, trees[spec.path]) for spec in specs))
    components: dict[str, Any] = {
        "schemas": {**copy.deepcopy(_PROBLEM_SCHEMAS), **schemas.components},
        "responses": {
            name: {"description": text, "content": {PROBLEM_JSON: {"schema": {"$ref": ref("Problem")},
                                                                   "example": _problem_example(status)}}}
            for status, (name, text) in sorted(ERRORS.items())
        },
        "headers": copy.deepcopy(HEADERS),
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
        protected = {op: auth_required(auth, spec, _AUTH_OPERATION[op]) for op in OPERATION_ERRORS} if security else {}
        collection, item = resource_paths(spec, schemas.names[spec.path], protected, security,
                                          schemas.examples.get(spec.path, {}))
        served = {spec.path: _served(collection, spec.methods), f"{spec.path}/{{id}}": _served(item, spec.methods)}
        if getattr(settings, "feeds", False) and "GET" in spec.methods:
            served[f"{spec.path}/_changes"] = changes_item(spec, protected, security)
        nested_writes = spec.methods if "PATCH" in spec.methods else ("GET",)  # a nested write changes the document
        for path, item in nested_paths(spec, trees[spec.path], schemas, protected, security).items():
            field = path[len(spec.path) + len("/{id}/"):].split("/", 1)[0]
            methods = ("GET",) if field in spec.schema.read_only else nested_writes  # GET only inside a read-only field
            served[path] = _served(item, tuple(m for m in methods if m in spec.methods))
        paths.update({path: item for path, item in served.items() if item})
    paths["/_health"] = copy.deepcopy(HEALTH)
    if settings.docs:
        paths.update(copy.deepcopy(DOCS_PATHS))
    if auth_docs:
        paths.update(auth_docs["paths"])
        components["securitySchemes"] = auth_docs["securitySchemes"]
    custom_items, custom_components = custom_paths(registry.routes, schemas, auth, security)
    for path, item in custom_items.items():
        paths.setdefault(path, {}).update(item)
    for name, schema in custom_components.items():
        components["schemas"].setdefault(name, schema)
    mock_items, mock_patterns = mock_paths(registry.mocks)
    for path, item in mock_items.items():
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
            "errors": {"type": "array", "items": {"$ref": ref("ErrorDetail")}},
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
                **errors((400, 401, 403, 413, 415, 422)),
                **errors((502, 504)),
            },
        }},
        f"{prefix}/signout/": {"post": {
            "tags": ["auth"], "summary": "Sign out", "operationId": "signout",
            "responses": {"200": answer({"loggedOut": {"const": True}}, ["loggedOut"], "Signed out; cookie cleared."),
                          **errors((401, 403))},
        }},
        f"{prefix}/me/": {"get": {
            "tags": ["auth"], "summary": "Who is signed in", "operationId": "me",
            "responses": {"200": answer({"authenticated": flag, "userData": user}, ["authenticated"],
                                        "`authenticated` false, or true with `userData`."),
                          **errors((401,))},
        }},
    }
    return {"paths": paths, "securitySchemes": schemes}


def _prune(document: dict[str, Any]) -> None:
    """Drop the components nothing reaches (pydantic's top-level defs, superseded by ours)."""
    components = document["components"]
    pending = refs({k: v for k, v in document.items() if k != "components"})
    reached: set[tuple[str, str]] = set()
    while pending:
        key = pending.pop()
        if key not in reached:
            reached.add(key)
            pending.extend(refs(components.get(key[0], {}).get(key[1])))
    for kind in ("schemas", "responses", "headers"):
        for name in list(components.get(kind, {})):
            if (kind, name) not in reached:
                del components[kind][name]
