"""Prometheus metrics at ``/_metrics`` (``App(metrics=True)``; ``pip install 'bzzlite[metrics]'``).

Requests are counted by method, route template (``/thing/{id}``, never the raw URL, so the
series stay few) and status; latencies go to a histogram by method and route; the change
feeds' subscriptions and the store's unavailability are reported too. Each process has its
own figures (with ``--workers``, each worker's; see docs/observability.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .base import BaseHandler

if TYPE_CHECKING:
    from ..runtime import Runtime

_SUFFIX = {"CollectionHandler": "", "ItemHandler": "/{id}", "NestedHandler": "/{id}/{path}",
           "ChangesHandler": "/_changes"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The metrics of one app, in a registry of their own."""

    def __init__(self, runtime: Runtime) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigurationError("App(metrics=True) needs prometheus-client: "
                                     "pip install 'bzzlite[metrics]'") from None
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("bzzlite_requests", "HTTP requests answered, by route template and status",
                                     ["method", "route", "status"], registry=self.registry)
        self.latency = prom.Histogram("bzzlite_request_duration_seconds", "Time to answer a request",
                                      ["method", "route"], registry=self.registry)
        self.store_errors = prom.Counter("bzzlite_store_errors", "Requests answered 503: the store did not answer",
                                         registry=self.registry)
        subscribers = prom.Gauge("bzzlite_feed_subscribers", "Change-feed subscriptions open in this process",
                                 registry=self.registry)
        subscribers.set_function(lambda: runtime.feeds.count if runtime.feeds is not None else 0)

    def observe(self, handler: Any) -> None:
        """Count one answered request (from ``App.log_request``)."""
        request = handler.request
        route = route_template(handler)
        status = handler.get_status()
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(request.method, route).observe(request.request_time())
        if status == 503:
            self.store_errors.inc()

    def exposition(self) -> bytes:
        return bytes(self._prom.generate_latest(self.registry))


def route_template(handler: Any) -> str:
    """The route a request matched, as a template; unknown URLs are one series."""
    name = type(handler).__name__
    if name == "NotFoundHandler":
        return "(unmatched)"
    if name == "PreflightHandler":
        return "(preflight)"
    spec = getattr(handler, "spec", None)
    if spec is not None and name in _SUFFIX:
        return spec.path + _SUFFIX[name]
    custom = getattr(handler, "route", None)  # @route and @action: their own template
    if custom is not None and hasattr(custom, "template"):
        return str(custom.template)
    mocks = getattr(handler, "mocks", None)
    if mocks:
        return str(mocks[0].url)
    return str(handler.request.path)


class MetricsHandler(BaseHandler):
    """``GET /_metrics``: the Prometheus text exposition of this process's metrics."""

    ALLOWED = ("GET",)

    def initialize(self, runtime: Runtime, metrics: Metrics, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(runtime)
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.exposition())
