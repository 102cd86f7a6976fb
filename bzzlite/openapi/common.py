"""What every part of the OpenAPI document shares: the JSON media type, references to
component schemas, the error responses and response headers, and whether an operation
needs a signed-in user."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec

JSON = "application/json"
REF = "#/components/schemas/{model}"

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


HEADERS: dict[str, Any] = {
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


def ref(name: str) -> str:
    return REF.format(model=name)


def refs(node: Any) -> list[tuple[str, str]]:
    return re.findall(r"#/components/(\w+)/([A-Za-z0-9._-]+)", repr(node))


def errors(codes: Iterable[int]) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in codes}


def json_body(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": ref(name)}}}}


def header(name: str, required: bool | None = None) -> dict[str, Any]:
    if required is None:
        return {"$ref": f"#/components/headers/{name}"}
    return {**HEADERS[name], "required": required}


def auth_required(auth: Any, spec: ResourceSpec, operation: str) -> bool:
    required = getattr(auth, "required", None)
    return bool(required(spec, operation)) if callable(required) else True


def permissions(spec: ResourceSpec, operation: str, rule: Any = None) -> dict[str, Any]:
    """What an operation's permission rules say, as OpenAPI extensions: ``x-bzzlite-allow``
    (who may, e.g. ``owner('buyer') | role('admin')``) and, on writes, ``x-bzzlite-writable-by``
    (the fields only some may set)."""
    rule = rule if rule is not None else spec.permissions.rule(operation)
    found: dict[str, Any] = {}
    if rule is not None:
        found["x-bzzlite-allow"] = rule.describe()
    if operation in ("create", "update") and spec.permissions.fields:
        found["x-bzzlite-writable-by"] = {name: field.describe() for name, field in spec.permissions.fields.items()}
    return found
