"""The registry: one object owns every ``@resource`` and ``@on`` declaration.

The module-level ``resource`` and ``on`` are the default registry's bound methods
(as blinker's ``signal`` is its default namespace's). Decorators record and return
their target unchanged; ``add_resource`` is the data API under them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from blinker import ANY, Signal
from pydantic import BaseModel, create_model

from . import _odmantic as odmantic
from .errors import ConfigurationError
from .mocks import MockRoute, parse_entries
from .schema import ModelSchema, inspect_model
from .signals import SIGNAL_ARGUMENTS, SignalSet, default_signals

M = TypeVar("M", bound=type[BaseModel])
F = TypeVar("F", bound=Callable[..., Any])

#: Names a model field may not take: they are query parameters or the server's id.
RESERVED_FIELDS = frozenset({"id", "page", "per_page", "sort", "fields", "after"})
OPERATIONS = ("get", "list", "create", "update", "delete")
_NAME_RE = re.compile(r"[A-Za-z0-9_.~-]+\Z")


def snake_case(name: str) -> str:
    """``TodoItem`` → ``todo_item``, ``HTTPServer`` → ``http_server``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


@dataclass(slots=True)
class ResourceSpec:
    """A model served as a REST collection, and what was derived from it once."""

    model: type[BaseModel]
    name: str
    prefix: str
    schema: ModelSchema
    stored_model: type[BaseModel]  # the model plus its server-assigned ``id``
    indexes: tuple[tuple[str, ...], ...] = ()
    per_page: int = 20
    max_per_page: int = 100
    max_offset: int | None = 10_000  # cap on page × per_page (None: no cap)
    filterable: frozenset[str] | None = None  # fields clients may filter on (None: every field)
    sortable: frozenset[str] | None = None  # fields clients may sort on (None: every field)
    query_timeout: float | None = None  # seconds a list query may run (None: the app's query_timeout)
    auth: Any = None  # per-resource auth override (see bzzlite.auth), None = app default
    options: dict[str, Any] = field(default_factory=dict)
    # Derived once: requests read these (a pydantic model class answers a missing attribute
    # by raising inside its metaclass, so asking the model on every request costs).
    path: str = field(init=False, repr=False, compare=False)  # the collection URL path, /{prefix}/{name}
    is_odmantic: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = f"{self.prefix}/{self.name}"
        self.is_odmantic = getattr(self.model, "__collection__", None) is not None and hasattr(self.model, "__odm_fields__")


class Registry:
    """Holds resources and signal receivers until an :class:`~bzzlite.App` is built."""

    def __init__(self, signals: SignalSet | None = None) -> None:
        self.signals = signals if signals is not None else SignalSet()
        self.resources: dict[str, ResourceSpec] = {}  # keyed by collection path
        self.mocks: list[MockRoute] = []
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
    ) -> Callable[[M], M]: ...

    def resource(self, model: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Serve a pydantic (or ODMantic) model as a REST collection. Bare or called.

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
            self.add_resource(model)
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
        **options: Any,
    ) -> ResourceSpec:
        """Validate ``model`` and register it; the data API under ``@resource``."""
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
            options=options,
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
        """Refuse further declarations: an app has been built from this registry."""
        self._frozen_by = by

    def _check_open(self, what: str) -> None:
        if self._frozen_by is not None:
            raise ConfigurationError(
                f"{what} after {self._frozen_by} was built from this registry: declare every resource "
                "and mock before creating the App (import the modules that declare them first)."
            )


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
