"""The registry: one object owns every ``@resource`` and ``@on`` declaration.

The module-level ``resource`` and ``on`` are the default registry's bound methods
(as blinker's ``signal`` is its default namespace's). Decorators record and return
their target unchanged; ``add_resource`` is the data API under them.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

from blinker import ANY, Signal
from pydantic import BaseModel, create_model

from .errors import ConfigurationError
from .mocks import MockRoute, parse_entries
from .models import odmantic
from .models.migrations import Step
from .models.resource import OPERATIONS, RESOURCE_METHODS, ResourceSpec
from .models.schema import ModelSchema, inspect_model
from .permissions import Rule, permissions, route_rule
from .routing import CustomRoute, custom_route
from .signals import SIGNAL_ARGUMENTS, SignalSet, default_signals

M = TypeVar("M", bound=type[BaseModel])
F = TypeVar("F", bound=Callable[..., Any])

#: Names a model field may not take: they are query parameters or the server's id.
RESERVED_FIELDS = frozenset({"id", "page", "per_page", "sort", "fields", "after"})
_NAME_RE = re.compile(r"[A-Za-z0-9_.~-]+\Z")


def snake_case(name: str) -> str:
    """``TodoItem`` → ``todo_item``, ``HTTPServer`` → ``http_server``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


class Registry:
    """Holds resources and signal receivers until an :class:`~bzzlite.App` is built."""

    def __init__(self, signals: SignalSet | None = None) -> None:
        self.signals = signals if signals is not None else SignalSet()
        self.resources: dict[str, ResourceSpec] = {}  # keyed by collection path
        self.mocks: list[MockRoute] = []
        self.routes: list[CustomRoute] = []  # @route and @action, in declaration order
        self._frozen_by: str | None = None

    # -- resources ---------------------------------------------------------------

    @overload
    def resource(self, model: M, /) -> M: ...

    @overload
    def resource(
        self,
        *,
        name: str | None = None,
        prefix: str = "",
        indexes: Iterable[str | Sequence[str]] = (),
        per_page: int = 20,
        max_per_page: int = 100,
        max_offset: int | None = 10_000,
        filterable: Iterable[str] | Literal["indexed"] | None = None,
        sortable: Iterable[str] | Literal["indexed"] | None = None,
        query_timeout: float | None = None,
        auth: Any = None,
        scope: Callable[[Any], Mapping[str, Any] | None] | None = None,
        methods: Iterable[str] | None = None,
        read_only: bool = False,
        lookup: str | None = None,
        allow: Mapping[str, Rule] | None = None,
        writable_by: Mapping[str, Rule] | None = None,
        migrations: Mapping[int, Step] | None = None,
    ) -> Callable[[M], M]: ...

    def resource(self, model: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Serve a pydantic (or ODMantic) model as a REST collection. Bare or called.

        The options are :meth:`add_resource`'s; an unknown one is a ConfigurationError.

        Options bounding what clients may ask of a list (docs/queries.md, "Limits"):
            per_page, max_per_page: the default and the largest page size.
            max_offset: the largest ``page × per_page`` (default 10,000; None: no cap);
                deeper pages are read with ``after=`` cursors.
            filterable, sortable: the fields clients may filter / sort on (default: every
                field); ``"indexed"`` allows the unique and indexed fields only. The id
                always can be.
            query_timeout: seconds a list query may run before it is stopped with 503
                (default: ``App(query_timeout=...)``; 0 turns the budget off).
        """
        if model is not None:
            self.add_resource(model, **options)
            return model

        def decorator(model: M) -> M:
            self.add_resource(model, **options)
            return model

        return decorator

    def add_resource(
        self,
        model: Any,
        *,
        name: str | None = None,
        prefix: str = "",
        indexes: Iterable[str | Sequence[str]] = (),
        per_page: int = 20,
        max_per_page: int = 100,
        max_offset: int | None = 10_000,
        filterable: Iterable[str] | Literal["indexed"] | None = None,
        sortable: Iterable[str] | Literal["indexed"] | None = None,
        query_timeout: float | None = None,
        auth: Any = None,
        scope: Callable[[Any], Mapping[str, Any] | None] | None = None,
        methods: Iterable[str] | None = None,
        read_only: bool = False,
        lookup: str | None = None,
        allow: Mapping[str, Rule] | None = None,
        writable_by: Mapping[str, Rule] | None = None,
        migrations: Mapping[int, Step] | None = None,
        **options: Any,
    ) -> ResourceSpec:
        """Validate ``model`` and register it; the data API under ``@resource``.

        Args:
            name: the URL segment (snake_case of the class name by default).
            prefix: a path before it (``/api``).
            indexes: fields (or tuples of fields) to index, for fast filters and sorts.
            per_page: the default page size of lists; max_per_page: its cap.
            auth: per-resource auth requirements (see :mod:`bzzlite.auth`).
            scope: ``scope(handler) -> filters`` (query-string keys, e.g.
                ``{"owner": handler.current_user["id"]}``): the one authorization decision
                per document. Every request reaches only the documents that match — get,
                list, count, update, delete, nested routes, custom routes through
                ``handler.documents(...)``, change feeds — and anything else is a 404, the
                same answer as an unknown id. Its equality conditions are written into the
                documents a request creates or replaces (the owner is filled in). ``None``
                from the function means no restriction.
            methods: the HTTP methods served, any subset of GET (get, list, change feed),
                POST (create), PUT (replace), PATCH (merge patch; also every write of a nested
                route) and DELETE; the others answer 405 with ``Allow`` and are left out of
                ``/openapi.json``. Default: all.
            read_only: ``methods=["GET"]``.
            lookup: a unique top-level field whose value addresses items instead of the id
                (DRF's ``lookup_field``, Eve's ``item_lookup_field``, bzz's
                ``get_id_field_name``): ``/article/my-first-post``, percent-encoded values
                included (``/user/test%20user``); for get, put, patch, delete, nested routes,
                actions and ``Location``. Responses still carry the ``id``.
            allow: who may do what (:mod:`bzzlite.permissions`): a rule per operation (``get``,
                ``list``, ``create``, ``update``, ``delete``), group (``read``, ``write``, ``*``)
                or action name, e.g. ``{"read": anyone, "write": role("admin")}``. A document
                the caller may not read is a 404, one they may read but not change a 403.
            writable_by: rules for the top-level fields only some callers may set, e.g.
                ``{"status": role("admin")}``: a request changing such a field without passing
                its rule is refused (403, naming the field). The app's own access
                (``app.documents(...)``) is not limited by ``allow`` or ``writable_by``.
            migrations: how documents stored by older versions of the model are upgraded:
                ``{2: step, 3: step}``, each step a function from a stored document (a dict) of
                the version before to one of its version; the model's version is the last one.
                Applied as documents are read, and to all of them by ``bzzlite migrate``
                (docs/changing-models.md).
        Raises:
            ConfigurationError: a mistake in the declaration, an unknown option included (a
                misspelled option is never ignored).
        """
        if options:
            known = [p for p in inspect.signature(self.add_resource).parameters if p not in ("model", "options")]
            hints = [f"{o!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(o, known, 1))
                     else repr(o) for o in options]
            raise ConfigurationError(f"@resource on {getattr(model, '__name__', model)}: unknown option(s) "
                                     f"{', '.join(hints)}; the options are {', '.join(known)}")
        served = _methods(getattr(model, "__name__", model), methods, read_only)
        if scope is not None and not callable(scope):
            raise ConfigurationError(f"{getattr(model, '__name__', model)}: scope= takes a function of the "
                                     "request handler returning filters, e.g. lambda handler: {'owner': ...}")
        self._check_open("@resource")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigurationError(
                f"@resource expects a pydantic BaseModel (or odmantic Model) subclass, got {model!r}; "
                "declare it as `class Name(BaseModel): ...`."
            )
        is_odm = hasattr(model, "__odm_fields__")
        forbidden = sorted(
            n for n in model.model_fields if (n in RESERVED_FIELDS and not (is_odm and n == "id")) or "__" in n
        )
        if forbidden:
            raise ConfigurationError(
                f"{model.__name__} declares field(s) {', '.join(forbidden)}: the server assigns `id`, and "
                "`page`, `per_page`, `sort`, `fields`, `after` and names containing `__` belong to the "
                "query language. Rename them."
            )
        name = name if name is not None else snake_case(model.__name__)
        if not _NAME_RE.match(name):
            raise ConfigurationError(f"resource name {name!r} must be a URL path segment ([A-Za-z0-9_.~-]+)")
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        if per_page < 1 or max_per_page < per_page:
            raise ConfigurationError(f"{model.__name__}: need 1 <= per_page <= max_per_page")
        if max_offset is not None and (isinstance(max_offset, bool) or not isinstance(max_offset, int)
                                       or max_offset < max_per_page):
            raise ConfigurationError(f"{model.__name__}: max_offset is a number of documents, at least "
                                     f"max_per_page ({max_per_page}), or None for no cap")
        if query_timeout is not None and (isinstance(query_timeout, bool)
                                          or not isinstance(query_timeout, (int, float)) or not query_timeout >= 0):
            raise ConfigurationError(f"{model.__name__}: query_timeout is a number of seconds (0: no budget)")
        schema = inspect_model(odmantic.schema_model(model) if odmantic.is_odmantic_model(model) else model)
        index_list = tuple(_index_fields(model.__name__, schema, i) for i in indexes)
        rules = permissions(model.__name__, allow, writable_by, schema.top_level)
        if lookup is not None and (lookup not in schema.unique or lookup not in schema.top_level):
            raise ConfigurationError(
                f"{model.__name__}: lookup={lookup!r} must name a unique top-level field, e.g. "
                f"`{lookup}: Annotated[str, Unique]` (unique fields: {', '.join(schema.unique) or 'none'})")
        spec = ResourceSpec(
            model=model,
            name=name,
            prefix=prefix,
            schema=schema,
            stored_model=model if is_odm else _with_id(model),
            indexes=index_list,
            per_page=per_page,
            max_per_page=max_per_page,
            max_offset=max_offset,
            filterable=_allowlist(model.__name__, schema, index_list, "filterable", filterable),
            sortable=_allowlist(model.__name__, schema, index_list, "sortable", sortable),
            query_timeout=query_timeout,
            auth=auth,
            scope=scope,
            methods=served,
            lookup=lookup,
            permissions=rules,
            migrations=migrations,
        )
        if spec.path in self.resources:
            other = self.resources[spec.path].model
            raise ConfigurationError(
                f"{model.__name__} and {other.__name__} are both served at {spec.path}; "
                "give one of them another name=... or prefix=..."
            )
        if any(s.model is model for s in self.resources.values()):
            raise ConfigurationError(f"{model.__name__} is already a resource of this registry")
        self.resources[spec.path] = spec
        return spec

    def spec_for(self, model: type[BaseModel]) -> ResourceSpec:
        for spec in self.resources.values():
            if spec.model is model:
                return spec
        raise KeyError(model)

    # -- signals -----------------------------------------------------------------

    def on(self, signal: str | Signal, sender: Any = ANY) -> Callable[[F], F]:
        """Connect the decorated function (sync or async) to a signal of this registry."""
        target = self.signal(signal)

        def decorator(fn: F) -> F:
            if not callable(fn):
                raise ConfigurationError(f"@on({target.name!r}) decorates a function, got {fn!r}")
            target.connect(fn, sender=sender, weak=False)
            return fn

        return decorator

    def signal(self, signal: str | Signal) -> Any:
        """This registry's signal for a name, or for a signal of another registry."""
        name = signal if isinstance(signal, str) else getattr(signal, "name", None)
        if name not in SIGNAL_ARGUMENTS:
            known = ", ".join(SIGNAL_ARGUMENTS)
            raise ConfigurationError(f"unknown signal {signal!r}; the signals are: {known}")
        return self.signals[name]

    # -- custom routes -----------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        methods: Sequence[str] = ("GET",),
        name: str | None = None,
        status: int | None = None,
        auth: bool | None = None,
        response: type[BaseModel] | None = None,
        allow: Rule | None = None,
    ) -> Callable[[F], F]:
        """Serve the decorated function at ``path`` (``/order/{id}/pay``), FastAPI-style.

        The function gets the request handler first, then the path parameters its signature
        names (annotated ``str``, ``int`` or ``float``; a value that does not convert is a 422)
        and, when it declares one, a pydantic body model (validated: 422 like resources). What
        it returns is the JSON answer (a model, a dict or a list; ``None`` is a 204), with
        ``status`` (default 200, 201 for a POST-only route). ``auth``: require a signed-in user
        (``None``: whenever the app has auth; ``False``: never); ``allow``: a rule on the user
        (:mod:`bzzlite.permissions`, e.g. ``role("admin")``): 401 without a user when it needs
        one, 403 for those it refuses. A ``tornado.web.RequestHandler``
        subclass can be decorated too: it is served as it is, with ``runtime=`` passed to its
        ``initialize`` (subclass :class:`bzzlite.Handler` to get problem+json errors).
        Routes appear in ``/openapi.json``, ``/docs`` and ``bzzlite routes``.
        """

        def decorator(fn: F) -> F:
            # the decorating scope's names, for annotations naming classes local to a function
            scope = sys._getframe(1).f_locals
            self.add_route(custom_route(path, fn, methods=methods, name=name, status=status, auth=auth,
                                        response=response, allow=route_rule(allow, f"@route({path!r}, allow=...)"),
                                        localns=scope))
            return fn

        return decorator

    def action(
        self,
        model: type[BaseModel],
        name: str,
        *,
        methods: Sequence[str] = ("POST",),
        detail: bool = True,
        operation: str | None = None,
        status: int | None = None,
        response: type[BaseModel] | None = None,
        allow: Rule | None = None,
    ) -> Callable[[F], F]:
        """An action on a resource (DRF's ``@action``): ``POST /order/{id}/pay``.

        With ``detail=True`` (the default) the document ``{id}`` is read through the
        resource's own rules before the function runs: its auth rules for ``operation``
        (``"update"``, or ``"get"`` for a GET-only action) and its ``scope`` (someone else's
        document is a 404). A parameter annotated with the model receives that document.
        ``detail=False`` serves ``/order/{name}`` for the collection. Otherwise as :meth:`route`.

        Who may run it: ``allow`` (a rule, :mod:`bzzlite.permissions`), else the resource's
        ``allow={name: ...}``, else its rule for ``operation``. A rule on documents
        (``owner("buyer")``) is checked against the document ``{id}``: one the caller may read
        but not act on is a 403.
        """
        spec = self.spec_for(model) if any(s.model is model for s in self.resources.values()) else None
        if spec is None:
            raise ConfigurationError(f"@action({getattr(model, '__name__', model)!r}, {name!r}): declare the "
                                     "model with @resource (on this registry) before its actions")
        if not _NAME_RE.match(name):
            raise ConfigurationError(f"@action name {name!r} must be a URL path segment ([A-Za-z0-9_.~-]+)")
        upper = tuple(m.upper() for m in methods)
        op = operation or ("get" if upper == ("GET",) else "update")
        rule = route_rule(allow, f"@action({model.__name__}, {name!r}, allow=...)")

        def decorator(fn: F) -> F:
            scope = sys._getframe(1).f_locals
            if detail:
                route = custom_route(f"{spec.path}/{{id}}/{name}", fn, methods=methods, name=fn.__name__,
                                     status=status, response=response, spec=spec, operation=op, localns=scope,
                                     allow=rule, action=name)
            else:
                route = custom_route(f"{spec.path}/{name}", fn, methods=methods, name=fn.__name__,
                                     status=status, response=response,
                                     auth=None if spec.auth is None else True, localns=scope,
                                     allow=rule or spec.permissions.rule(name), action=name)
            self.add_route(route)
            return fn

        return decorator

    def add_route(self, route: CustomRoute) -> CustomRoute:
        """Register a custom route; the data API under ``@route`` and ``@action``."""
        self._check_open("@route")
        for other in self.routes:
            if other.template == route.template and set(other.methods) & set(route.methods):
                raise ConfigurationError(
                    f"{route.name} and {other.name} both answer {'/'.join(sorted(set(other.methods) & set(route.methods)))} "
                    f"{route.template}; give one of them another path or method")
        self.routes.append(route)
        return route

    # -- mock routes -------------------------------------------------------------

    def mock(self, entries: Iterable[Sequence[Any]]) -> list[MockRoute]:
        """Answer URLs from data (bzz's MockHive): ``(method, url-or-regex, options)`` entries.

        Options: ``body`` (str, bytes, a dict/list sent as JSON, or a callable of the request),
        ``status``, ``cookies``, ``headers``; the method ``"*"`` matches any method.
        """
        self._check_open("bzzlite.mock")
        routes = parse_entries(entries, declared=self.mocks)
        self.mocks.extend(routes)
        return routes

    # -- lifecycle ---------------------------------------------------------------

    def freeze(self, by: str) -> None:
        """Refuse further declarations: an app has been built from this registry.

        Raises:
            ConfigurationError: an ``allow=`` key that is neither an operation nor one of the
                resource's actions (a misspelled name is never ignored).
        """
        for spec in self.resources.values():
            actions = {route.action for route in self.routes if route.action is not None
                       and (route.spec is spec or route.template == f"{spec.path}/{route.action}")}
            unknown = sorted(spec.permissions.names() - set(OPERATIONS) - actions)
            if unknown:
                raise ConfigurationError(
                    f"@resource(allow=...) of {spec.model.__name__}: {', '.join(map(repr, unknown))} is no operation "
                    f"({', '.join(OPERATIONS)}), group (read, write, *) or action of it "
                    f"({', '.join(sorted(str(a) for a in actions)) or 'none declared'})")
        self._frozen_by = by

    def _check_open(self, what: str) -> None:
        if self._frozen_by is not None:
            raise ConfigurationError(
                f"{what} after {self._frozen_by} was built from this registry: declare every resource "
                "and mock before creating the App (import the modules that declare them first)."
            )


def _methods(name: Any, methods: Iterable[str] | None, read_only: bool) -> tuple[str, ...]:
    """The methods a resource serves, checked."""
    if read_only:
        if methods is not None and {m.upper() for m in methods} != {"GET"}:
            raise ConfigurationError(f"@resource on {name}: read_only=True serves GET only; drop methods=")
        return ("GET",)
    if methods is None:
        return RESOURCE_METHODS
    if isinstance(methods, str):
        raise ConfigurationError(f"@resource on {name}: methods= takes a list, e.g. methods=[\"GET\", \"POST\"]")
    upper = {m.upper() for m in methods}
    unknown = sorted(upper - set(RESOURCE_METHODS))
    if unknown:
        raise ConfigurationError(f"@resource on {name}: unknown method(s) {', '.join(unknown)}; a resource serves "
                                 f"some of {', '.join(RESOURCE_METHODS)}")
    return tuple(m for m in RESOURCE_METHODS if m in upper)


def _with_id(model: type[BaseModel]) -> type[BaseModel]:
    """A subclass of ``model`` with the server-assigned ``id``, for instances handed to receivers."""
    stored = create_model(model.__name__, __base__=model, __module__=model.__module__, id=(str, ...))
    stored.__qualname__ = model.__qualname__
    return stored


def _allowlist(
    model_name: str, schema: ModelSchema, indexes: tuple[tuple[str, ...], ...], option: str,
    given: Iterable[str] | str | None,
) -> frozenset[str] | None:
    """The field paths of a ``filterable=`` / ``sortable=`` option (None: every field)."""
    if given is None:
        return None
    if given == "indexed":
        return frozenset({*schema.unique, *(f.lstrip("-") for fields in indexes for f in fields)})
    if isinstance(given, str):
        raise ConfigurationError(f"{model_name}: {option}= takes a list of field names or \"indexed\", "
                                 f"not the string {given!r}")
    names = frozenset(given)
    unknown = sorted(n for n in names if n != "id" and n not in schema.paths)
    if unknown:
        raise ConfigurationError(f"{model_name}: {option}= names {', '.join(map(repr, unknown))}, not queryable "
                                 f"fields of the model ({', '.join(schema.paths)})")
    return names - {"id"}


def _index_fields(model_name: str, schema: ModelSchema, index: str | Sequence[str]) -> tuple[str, ...]:
    fields = (index,) if isinstance(index, str) else tuple(index)
    for f in fields:
        if f.lstrip("-") not in schema.paths:
            raise ConfigurationError(
                f"{model_name}: cannot index {f!r}; indexes name scalar fields of the model "
                f"({', '.join(schema.paths)})"
            )
    return fields


default_registry = Registry(default_signals)
resource = default_registry.resource
on = default_registry.on
mock = default_registry.mock
route = default_registry.route
action = default_registry.action
