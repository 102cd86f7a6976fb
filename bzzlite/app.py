"""``App``: a ``tornado.web.Application`` assembled from a registry.

Routes are built once, here: every handler gets the shared :class:`Runtime` and its
resource spec through Tornado's ``initialize`` kwargs, so no request looks anything up.
"""

from __future__ import annotations

import inspect
import logging
import re
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.web
from tornado.log import access_log

from .documents import Documents, transaction
from .errors import ConfigurationError
from .feeds import Feeds
from .handlers.base import NotFoundHandler, PreflightHandler, is_preflight
from .handlers.changes import ChangesHandler
from .handlers.custom import RouteHandler
from .handlers.docs import docs_routes
from .handlers.health import HealthHandler, LiveHandler
from .handlers.metrics import Metrics, MetricsHandler
from .handlers.mock import MockHandler
from .handlers.nested import NestedHandler, route_rows
from .handlers.resource import CollectionHandler, ItemHandler
from .http.dispatch import HandlerDelegate, Routing, SegmentIndex
from .http.proxy import apply_proxy_headers, strip_root_path, trusted_set
from .mocks import check_collisions, group_by_url, sample_paths
from .models.nested import inspect_nested, route_methods
from .models.nested import routes as nested_routes
from .openapi import build_document
from .permissions import columns, verdict
from .registry import Registry, default_registry
from .routing import CustomRoute, Route
from .runtime import Runtime
from .settings import Settings

if TYPE_CHECKING:
    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("bzzlite")


class App(tornado.web.Application):
    """The web application serving every resource of a registry.

    Args:
        registry: where the resources and receivers were declared (the default registry).
        db: store URL; else ``BZZLITE_DB``; else ``sqlite:///bzzlite.db``.
        config: any object, reachable as ``handler.application.config``.
        auth: an :class:`bzzlite.auth.Auth` configuration, to require signed-in users.
        cors: a :class:`bzzlite.cors.CORS` policy, or its origins (a list, ``"*"`` or a
            pattern), to let pages of other origins call the API.
        **options: other :class:`~bzzlite.settings.Settings` fields (``max_body_size``,
            ``docs``, ``title``...); anything else is passed to Tornado.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        db: str | None = None,
        config: Any = None,
        auth: Any = None,
        **options: Any,
    ) -> None:
        self.registry = registry if registry is not None else default_registry
        known = {k: options.pop(k) for k in list(options) if k in Settings.__dataclass_fields__}
        self.bzz_settings = Settings.load(db=db, **known)
        self.config = config if config is not None else SimpleNamespace()
        self.runtime = Runtime(self.registry, self.bzz_settings, self.config)
        self.runtime.documents_factory = Documents.of
        if self.bzz_settings.feeds:
            self.runtime.feeds = Feeds(self.runtime)
        self.registry.freeze("an App")
        self.bzz_metrics = Metrics(self.runtime) if self.bzz_settings.metrics else None
        if auth is None:
            _check_rules_have_users(self.registry)
        self.routes: list[Route] = self._routes(auth)
        options.setdefault("serve_traceback", False)
        self._index: SegmentIndex | None = None  # the rules by first path segment, built at the first request
        super().__init__(
            [route.rule() for route in self.routes],
            default_handler_class=NotFoundHandler,
            default_handler_args={"runtime": self.runtime},
            **options,
        )

    def _routes(self, auth: Any) -> list[Route]:
        """The route table: every URL pattern of the app, in the order Tornado tries them."""
        routes = [Route("/_health", ("GET",), "health", HealthHandler, {"runtime": self.runtime}),
                  *self._production_routes()]
        if auth is not None:
            from .auth.routes import install  # PyJWT and its cryptography load only for apps with auth

            routes += install(auth, self.runtime)
        # Custom routes and actions before the resources': /order/stats is not an item's id,
        # /order/{id}/pay not a nested path.
        routes += [self._custom(route) for route in self.registry.routes]
        routes += self._resource_routes()
        extra: list[Route] = []
        if self.bzz_settings.docs:
            extra += docs_routes(self.runtime, lambda: build_document(self))
        mocks = self.registry.mocks
        if mocks:
            served = [(_served_by(route), path) for route in routes + extra for path in sample_paths(route.rule()[0])]
            check_collisions(mocks, served)
            kwargs = {"runtime": self.runtime, "mocks": mocks}
            extra += [Route(url, ("*",), "mock", MockHandler, kwargs, pattern=url) for url in group_by_url(mocks)]
        return routes + extra

    def _resource_routes(self) -> list[Route]:
        routes: list[Route] = []
        runtime = self.runtime
        for spec in self.registry.resources.values():
            kwargs = {"runtime": runtime, "spec": spec}
            routes.append(Route(spec.path, _served(spec, ("GET", "POST")), "collection", CollectionHandler, kwargs,
                                spec, {"GET": "list", "POST": "create"}))
            if runtime.feeds is not None and "GET" in spec.methods:
                routes.append(Route(f"{spec.path}/_changes", ("GET",), "changes", ChangesHandler, kwargs, spec,
                                    {"GET": "list"}))
            routes.append(Route(f"{spec.path}/{{id}}", _served(spec, ("GET", "PUT", "PATCH", "DELETE")), "item", ItemHandler,
                                kwargs, spec, {"GET": "get", "PUT": "update", "PATCH": "update", "DELETE": "delete"},
                                pattern=rf"{re.escape(spec.path)}/([^/]+)/?"))
        # Nested routes (embedded models, lists, references) come after every collection and
        # item rule, so a resource under another's prefix keeps its own routes.
        specs = list(self.registry.resources.values())
        for spec in specs:
            tree = inspect_nested(spec, specs)
            if tree.fields:
                kwargs = {"runtime": runtime, "spec": spec, "tree": tree}
                routes.append(Route(f"{spec.path}/{{id}}/{{path}}", NestedHandler.ALLOWED, "nested", NestedHandler,
                                    kwargs, spec, {"GET": "get", "POST": "update", "PUT": "update",
                                                   "PATCH": "update", "DELETE": "update"},
                                    pattern=rf"{re.escape(spec.path)}/([^/]+)/(.+)"))
        return routes

    def _custom(self, route: CustomRoute) -> Route:
        operations = {m: route.operation for m in route.methods} if route.operation else {}
        if route.handler is not None:  # a RequestHandler subclass, served as it is
            initialize = inspect.signature(getattr(route.handler, "initialize")).parameters  # noqa: B009
            if "runtime" not in initialize and not any(p.kind is p.VAR_KEYWORD for p in initialize.values()):
                raise ConfigurationError(
                    f"{route.handler.__name__} is registered with @route({route.template!r}): its initialize() "
                    "gets runtime=...; define `def initialize(self, runtime): ...` or subclass bzzlite.Handler")
            return Route(route.template, route.methods, route.kind, route.handler, {"runtime": self.runtime},
                         route.spec, operations)
        return Route(route.template, route.methods, route.kind, RouteHandler,
                     {"runtime": self.runtime, "route": route}, route.spec, operations)

    def _production_routes(self) -> list[Route]:
        """Probes for orchestrators: liveness answers while the process does; readiness is
        ``/_health``'s answer (503 while the store does not answer); metrics when turned on."""
        kwargs = {"runtime": self.runtime}
        routes = [Route("/_health/live", ("GET",), "health", LiveHandler, kwargs),
                  Route("/_health/ready", ("GET",), "health", HealthHandler, kwargs)]
        if self.bzz_metrics is not None:
            routes.append(Route("/_metrics", ("GET",), "metrics", MetricsHandler,
                                {"runtime": self.runtime, "metrics": self.bzz_metrics}))
        return routes

    # -- what every request passes through, whatever its route (issue 18) ---------------

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        """Tornado's routing delegate, making bzzlite's lighter request (bzzlite/http/dispatch.py)."""
        return Routing(self, server_conn, request_conn)

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        """Route a request; a CORS preflight is answered for every URL, by one handler.

        Proxy headers (from trusted peers) and the root path are applied first (bzzlite/http/proxy.py).
        """
        settings = self.bzz_settings
        if settings.proxy_headers:
            apply_proxy_headers(request, trusted_set(settings.forwarded_allow_ips))
        if settings.root_path:
            strip_root_path(request, settings.root_path)
        if self.bzz_settings.cors is not None and is_preflight(request):
            return self.get_handler_delegate(request, PreflightHandler, {"runtime": self.runtime})
        if len(self.default_router.rules) != 1:  # add_handlers() for a host: Tornado's own way
            return super().find_handler(request, **kwargs)
        index = self._index
        if index is None or index.stale():
            index = self._index = SegmentIndex(self.wildcard_router)
        delegate = index.find(request)
        if delegate is None:
            delegate = self.get_handler_delegate(request, self.settings["default_handler_class"],
                                                 self.settings.get("default_handler_args", {}))
        return delegate

    def get_handler_delegate(self, request: Any, target_class: Any, target_kwargs: dict[str, Any] | None = None,
                             path_args: list[bytes] | None = None, path_kwargs: dict[str, bytes] | None = None) -> Any:
        return HandlerDelegate(self, request, target_class, target_kwargs, path_args, path_kwargs)

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Tornado's access log line, not even formatted when its level is off (``--log-level warning``)."""
        if self.bzz_metrics is not None:
            self.bzz_metrics.observe(handler)
        if "log_function" not in self.settings:
            status = handler.get_status()
            level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
            if not access_log.isEnabledFor(level):
                return
        super().log_request(handler)

    def documents(self, model: type[M]) -> Documents[M]:
        """The app's own access to a resource's documents (no user, no scope): for scripts,
        tests and background work. Inside a request use ``handler.documents(model)``."""
        return Documents.of(self.runtime, model)

    def transaction(self) -> Any:
        """``async with app.transaction():`` — the document API's writes in it commit together."""
        return transaction(self.runtime)

    @property
    def store(self) -> Any:
        return self.runtime.store

    def use_store(self, url: str) -> None:
        """Serve from another store (the command line's ``--db``); call before serving."""
        self.runtime.use_store(url)

    async def startup(self) -> None:
        """Open the store now rather than on the first request.

        Raises:
            StoreUnavailable: the store cannot be opened (requests would get 503).
        """
        await self.runtime.ready_store()

    async def shutdown(self) -> None:
        """Close the store; every write that was answered is already committed."""
        await self.runtime.close()

    def permission_matrix(self) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
        """Who may do what: the columns (anonymous, any signed-in user, each role the rules name)
        and a row (method, path template, one verdict per column) per route and method, nested
        routes included: ``yes``, ``401``, ``403``, or the documents it is allowed on (``own
        buyer``, ``where status='open'``). For ``bzzlite routes --permissions`` and tests."""
        roles: set[str] = set()
        for spec in self.registry.resources.values():
            roles |= spec.permissions.roles()
        for custom in self.registry.routes:
            roles |= custom.allow.roles() if custom.allow is not None else frozenset()
        callers = columns(roles)
        policy = self.runtime.auth

        def row(method: str, template: str, rule: Any, required: bool) -> tuple[str, str, list[str]]:
            return method, template, [verdict(rule, caller, required) for _, caller in callers]

        def resource_row(method: str, template: str, spec: Any, operation: str) -> tuple[str, str, list[str]]:
            required = policy is not None and policy.required(spec, operation)
            return row(method, template, spec.permissions.rule(operation), required)

        rows = []
        for route in self.routes:
            spec, custom = route.spec, route.kwargs.get("route")
            if route.kind == "nested" and spec is not None:
                for nested in nested_routes(route.kwargs["tree"], spec.schema.write_only):
                    for method in route_methods(spec, nested):
                        rows.append(resource_row(method, f"{spec.path}/{{id}}/{nested.template}", spec,
                                                 "get" if method == "GET" else "update"))
            elif isinstance(custom, CustomRoute):
                required = (policy is not None and policy.required(spec, custom.operation or "update")) \
                    if spec is not None else (policy is not None and custom.auth is not False)
                rows += [row(method, route.template, custom.rule, required) for method in route.methods]
            elif spec is not None:
                rows += [resource_row(method, route.template, spec, route.operations[method]) for method in route.methods]
            else:  # auth, docs, health, metrics, mocks: what they answer, they answer anyone
                rows += [row(method, route.template, None, False) for method in route.methods]
        return [name for name, _ in callers], rows

    def route_table(self) -> list[tuple[str, str, str]]:
        """(methods, path template, handler) for every route, for ``bzzlite routes``."""
        table = []
        for route in self.routes:
            if route.kind == "nested":
                table.extend(route_rows(route.kwargs["spec"], route.kwargs["tree"]))
            else:
                table.append((",".join(route.methods), route.template, route.handler_name))
        return table


def _served(spec: Any, methods: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m for m in methods if m in spec.methods)


def _served_by(route: Route) -> str:
    if route.spec is not None:
        return f"the resource {route.spec.model.__name__}"
    return f"the route {route.template}"


def _check_rules_have_users(registry: Registry) -> None:
    """Permission rules that need a signed-in user need an app that signs users in."""
    rules = [(f"@resource(allow=...) of {spec.model.__name__}", rule) for spec in registry.resources.values()
             for rule in (*spec.permissions.rules.values(), *spec.permissions.fields.values())]
    rules += [(f"@route({route.template!r})", route.allow) for route in registry.routes if route.allow is not None]
    for where, rule in rules:
        if rule.needs_user or rule.roles():
            raise ConfigurationError(f"{where}: {rule!r} needs signed-in users, and this App has no auth: "
                                     "pass App(auth=Auth(...)) (docs/auth.md)")
