"""``App``: a ``tornado.web.Application`` assembled from a registry.

Routes are built once, here: every handler gets the shared :class:`Runtime` and its
resource spec through Tornado's ``initialize`` kwargs, so no request looks anything up.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import Any

import tornado.web
from tornado.log import access_log

from .errors import StoreUnavailable
from .handlers.base import BaseHandler, NotFoundHandler, PreflightHandler, is_preflight
from .handlers.docs import docs_rules
from .handlers.mock import MockHandler
from .feeds.websocket import ChangesHandler
from .handlers.resource import CollectionHandler, ItemHandler
from .handlers.nested import NestedHandler, route_rows
from .metrics import CONTENT_TYPE, Metrics
from .mocks import check_collisions, group_by_url, sample_paths
from .nested import inspect_nested
from .openapi import build_document
from .proxy import apply_proxy_headers, strip_root_path, trusted_set
from .registry import Registry, default_registry
from .runtime import Runtime
from .settings import Settings

log = logging.getLogger("bzzlite")


class HealthHandler(BaseHandler):
    """``GET /_health``: 200 when the store answers, 503 when it does not."""

    ALLOWED = ("GET",)

    async def get(self) -> None:
        try:
            store = await self.runtime.ready_store()
            details = await store.ping()
        except StoreUnavailable as exc:
            self.set_status(503)
            self.write_json({"status": "unavailable", "store": {"url_scheme": self.runtime.settings.db.split(":")[0],
                                                                "error": str(exc)}}, 503)
            return
        self.write_json({"status": "ok", "store": details})


class LiveHandler(BaseHandler):
    """``GET /_health/live``: 200 while the process serves, whatever the store's state."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        self.write_json({"status": "ok"})


class MetricsHandler(BaseHandler):
    """``GET /_metrics``: the Prometheus text exposition of this process's metrics."""

    ALLOWED = ("GET",)

    def initialize(self, runtime: Runtime, metrics: Metrics, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.exposition())


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
        self.registry.freeze("an App")
        self.bzz_metrics = Metrics(self.runtime) if self.bzz_settings.metrics else None
        rules = self._production_rules() + self._resource_rules()
        if auth is not None:
            rules = auth.install(self.runtime) + rules
        rules += self._extra_rules(rules)
        options.setdefault("serve_traceback", False)
        super().__init__(
            rules,
            default_handler_class=NotFoundHandler,
            default_handler_args={"runtime": self.runtime},
            **options,
        )

    def _resource_rules(self) -> list[Any]:
        rules: list[Any] = [(r"/_health/?", HealthHandler, {"runtime": self.runtime})]
        for spec in self.registry.resources.values():
            kwargs = {"runtime": self.runtime, "spec": spec}
            path = re.escape(spec.path)
            rules.append((rf"{path}/?", CollectionHandler, kwargs))
            if self.runtime.feeds is not None:
                rules.append((rf"{path}/_changes/?", ChangesHandler, kwargs))
            rules.append((rf"{path}/([^/]+)/?", ItemHandler, kwargs))
        # Nested routes (embedded models, lists, references) come after every collection and
        # item rule, so a resource under another's prefix keeps its own routes.
        specs = list(self.registry.resources.values())
        for spec in specs:
            tree = inspect_nested(spec, specs)
            if tree.fields:
                kwargs = {"runtime": self.runtime, "spec": spec, "tree": tree}
                rules.append((rf"{re.escape(spec.path)}/([^/]+)/(.+)", NestedHandler, kwargs))
        return rules

    def _extra_rules(self, taken: list[Any]) -> list[Any]:
        """Routes of the optional parts: OpenAPI and docs, then the mock routes.

        A mock whose URL would answer one of the app's own paths (``taken`` and the docs
        routes) is a ConfigurationError.
        """
        rules: list[Any] = []
        if self.bzz_settings.docs:
            rules += docs_rules(self.runtime, lambda: build_document(self))
        mocks = self.registry.mocks
        if mocks:
            served = [(_served_by(rule), path) for rule in taken + rules
                      if isinstance(rule, tuple) and isinstance(rule[0], str) for path in sample_paths(rule[0])]
            check_collisions(mocks, served)
            kwargs = {"runtime": self.runtime, "mocks": mocks}
            rules += [(url, MockHandler, kwargs) for url in group_by_url(mocks)]
        return rules

    def _production_rules(self) -> list[Any]:
        """Probes for orchestrators (issue 18): liveness answers while the process does;
        readiness is ``/_health``'s answer (503 while the store does not answer)."""
        rules: list[Any] = [(r"/_health/live/?", LiveHandler, {"runtime": self.runtime}),
                 (r"/_health/ready/?", HealthHandler, {"runtime": self.runtime})]
        if self.bzz_metrics is not None:
            rules.append((r"/_metrics/?", MetricsHandler, {"runtime": self.runtime, "metrics": self.bzz_metrics}))
        return rules

    # -- what every request passes through, whatever its route (issue 18) ---------------

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        """Route a request; a CORS preflight is answered for every URL, by one handler.

        Proxy headers (from trusted peers) and the root path are applied first (bzzlite/proxy.py).
        """
        settings = self.bzz_settings
        if settings.proxy_headers:
            apply_proxy_headers(request, trusted_set(settings.forwarded_allow_ips))
        if settings.root_path:
            strip_root_path(request, settings.root_path)
        if self.bzz_settings.cors is not None and is_preflight(request):
            return self.get_handler_delegate(request, PreflightHandler, {"runtime": self.runtime})
        return super().find_handler(request, **kwargs)

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

    def route_table(self) -> list[tuple[str, str, str]]:
        """(methods, path pattern, handler) for every route, for ``bzzlite routes``."""
        table = []
        for rule in self.wildcard_router.rules:
            target = rule.target
            if target is NestedHandler:
                table.extend(route_rows(rule.target_kwargs["spec"], rule.target_kwargs["tree"]))
                continue
            allowed = getattr(target, "ALLOWED", ())
            pattern = getattr(rule.matcher, "regex", None)
            path = pattern.pattern.rstrip("$") if pattern is not None else str(rule.matcher)
            path = path.replace(r"/([^/]+)", "/{id}").replace("/?", "").replace("\\", "")
            table.append((",".join(allowed) or "*", path, getattr(target, "__name__", str(target))))
        return table


def _served_by(rule: tuple[Any, ...]) -> str:
    spec = rule[2].get("spec") if len(rule) > 2 and isinstance(rule[2], dict) else None
    return f"the resource {spec.model.__name__}" if spec is not None else f"the route {rule[0]}"
