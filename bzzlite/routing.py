"""Routes as data: one :class:`Route` per URL pattern of an app, and custom routes.

``App`` builds one table of routes (resources, nested, feeds, custom routes and actions,
auth, docs, mocks, health). Each knows its path template, methods, kind, the resource it
serves and which operation each method performs, so the same objects feed Tornado's rules,
``bzzlite routes``, the OpenAPI document, the mock collision checks and the security tests.
No I/O and no Tornado here (the handler of custom routes is in ``handlers/custom.py``).

Custom routes are declared on a registry, like resources::

    @route("/stats", methods=["GET"])
    async def stats(handler) -> Stats: ...

    @action(Order, "pay")                      # POST /order/{id}/pay
    async def pay(handler, order: Order, body: Payment) -> Order: ...
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import ConfigurationError
from .models.schema import inspect_model

if TYPE_CHECKING:
    from .models.resource import ResourceSpec
    from .permissions import Rule

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATH_TYPES = (str, int, float)


def template_regex(template: str) -> str:
    """A path template (``/order/{id}/pay``) as a Tornado rule pattern; a trailing slash is accepted."""
    parts, last = [], 0
    for match in _PARAM.finditer(template):
        parts.append(re.escape(template[last:match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    parts.append(re.escape(template[last:].rstrip("/")))
    return "".join(parts) + "/?"


@dataclass(slots=True)
class Route:
    """One URL pattern of an app and what answers it."""

    template: str  # /order/{id}/pay: what routes, OpenAPI and the security tests read
    methods: tuple[str, ...]  # ("*",) for any method
    kind: str  # collection, item, changes, nested, custom, action, auth, docs, mock, health
    handler: type  # the Tornado handler class
    kwargs: dict[str, Any] = field(default_factory=dict)
    spec: ResourceSpec | None = None  # the resource it serves, if any
    operations: dict[str, str] = field(default_factory=dict)  # method -> the operation authorized
    pattern: str | None = None  # the Tornado pattern, when not derived from the template

    def rule(self) -> tuple[str, type, dict[str, Any]]:
        return (self.pattern or template_regex(self.template), self.handler, self.kwargs)

    @property
    def handler_name(self) -> str:
        return getattr(self.handler, "__name__", str(self.handler))


@dataclass(slots=True)
class CustomRoute:
    """A route of the application's own (``@route``, ``@action``), declared on a registry."""

    template: str
    methods: tuple[str, ...]
    endpoint: Callable[..., Any]
    name: str
    status: int = 200
    auth: bool | None = None  # need a signed-in user? None: whenever the app has auth
    spec: ResourceSpec | None = None  # for actions: the resource whose document {id} names
    operation: str | None = None  # for actions: the operation the resource's auth rules decide
    body: type[BaseModel] | None = None  # validated request body (422 like resources)
    body_param: str | None = None
    body_shape: Any = None  # the body model's key structure: unknown keys are refused, as for resources
    instance_param: str | None = None  # actions: the parameter that receives the document
    path_params: dict[str, type] = field(default_factory=dict)
    response: type[BaseModel] | None = None
    summary: str = ""
    description: str = ""
    handler: type | None = None  # a RequestHandler subclass registered as is
    allow: Rule | None = None  # who may call it (bzzlite.permissions); actions: see Registry.action
    action: str | None = None  # an action's name (``pay`` of ``/order/{id}/pay``)

    @property
    def kind(self) -> str:
        return "action" if self.spec is not None else "custom"

    @property
    def rule(self) -> Rule | None:
        """Who may call it: its own ``allow=``; for an action without one, its resource's rule
        for the action's name, else for its operation (None: the app's auth alone decides)."""
        if self.allow is not None or self.spec is None:
            return self.allow
        rules = self.spec.permissions
        return (rules.rule(self.action) if self.action else None) or rules.rule(self.operation or "update")


def custom_route(
    template: str,
    endpoint: Callable[..., Any],
    *,
    methods: typing.Sequence[str] = ("GET",),
    name: str | None = None,
    status: int | None = None,
    auth: bool | None = None,
    response: type[BaseModel] | None = None,
    spec: ResourceSpec | None = None,
    operation: str | None = None,
    localns: Mapping[str, Any] | None = None,
    allow: Rule | None = None,
    action: str | None = None,
) -> CustomRoute:
    """Check a custom route's declaration and read what its endpoint's signature says."""
    if not template.startswith("/"):
        raise ConfigurationError(f"route {template!r}: a path template starts with '/' (e.g. '/order/{{id}}/pay')")
    upper = tuple(dict.fromkeys(m.upper() for m in methods))
    unknown = [m for m in upper if m not in METHODS]
    if unknown or not upper:
        raise ConfigurationError(f"route {template!r}: methods must be some of {', '.join(METHODS)}, got {list(methods)}")
    params = _PARAM.findall(template)
    if len(set(params)) != len(params):
        raise ConfigurationError(f"route {template!r}: a path parameter appears twice")
    doc = inspect.getdoc(endpoint) or ""
    summary, _, description = doc.partition("\n\n")
    if allow is not None and allow.on_documents and spec is None:
        raise ConfigurationError(f"route {template!r}: {allow!r} is a rule on documents, and this route reaches none; "
                                 "give it a rule on the user (role(...), signed_in), or make it an @action")
    route = CustomRoute(template=template, methods=upper, endpoint=endpoint,
                        name=name or str(getattr(endpoint, "__name__", "route")), auth=auth, spec=spec,
                        operation=operation, summary=summary.strip(), description=description.strip(),
                        allow=allow, action=action)
    if inspect.isclass(endpoint):  # a RequestHandler subclass, served as it is
        route.handler = endpoint
        route.status = status or 200
        return route
    if not callable(endpoint):
        raise ConfigurationError(f"route {template!r}: {endpoint!r} is not a function")
    try:
        hints = typing.get_type_hints(endpoint, localns=dict(localns or {}))
    except NameError as exc:
        raise ConfigurationError(f"route {template!r}: {route.name}'s annotations name something not defined "
                                 f"where it is declared ({exc})") from None
    signature = inspect.signature(endpoint)
    parameters = list(signature.parameters.values())
    if not parameters:
        raise ConfigurationError(f"route {template!r}: {route.name} must take the request handler as its "
                                 f"first parameter, e.g. `async def {route.name}(handler, ...)`")
    for parameter in parameters[1:]:
        annotation = hints.get(parameter.name, str)
        if parameter.name in params:
            if annotation not in _PATH_TYPES:
                raise ConfigurationError(f"route {template!r}: path parameter {parameter.name} must be "
                                         "annotated str, int or float")
            route.path_params[parameter.name] = annotation
        elif spec is not None and annotation is spec.model:
            route.instance_param = parameter.name
        elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            if route.body is not None:
                raise ConfigurationError(f"route {template!r}: one body model per route ({parameter.name})")
            if not set(upper) & {"POST", "PUT", "PATCH"}:
                raise ConfigurationError(f"route {template!r}: a body ({parameter.name}) needs POST, PUT or PATCH")
            route.body, route.body_param = annotation, parameter.name
            route.body_shape = inspect_model(annotation).shape
        elif parameter.default is inspect.Parameter.empty:
            raise ConfigurationError(
                f"route {template!r}: {route.name}'s parameter {parameter.name!r} is neither a path parameter "
                f"({', '.join(params) or 'none'}), a pydantic body model"
                + (f", nor the {spec.model.__name__} the action is on" if spec is not None else "") + "."
            )
    missing = [p for p in params if p not in route.path_params and not (spec is not None and p == "id")]
    if missing:
        raise ConfigurationError(f"route {template!r}: {route.name} takes no parameter for {', '.join(missing)}")
    returned = hints.get("return")
    route.response = response or (returned if inspect.isclass(returned) and issubclass(returned, BaseModel) else None)
    route.status = status or (201 if upper == ("POST",) and spec is None else 200)
    return route


def convert_path(route: CustomRoute, values: Mapping[str, str]) -> dict[str, Any]:
    """Path values converted to the endpoint's annotations; ValueError names the one that failed."""
    converted: dict[str, Any] = {}
    for name, kind in route.path_params.items():
        try:
            converted[name] = kind(values[name])
        except (ValueError, OverflowError):
            raise ValueError(name) from None
    return converted
