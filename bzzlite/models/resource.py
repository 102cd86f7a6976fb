"""A model served as a REST collection, and what was derived from it once (``ResourceSpec``).

Made by :meth:`bzzlite.Registry.add_resource`; read by every layer (stores, the operations
layer, feeds, handlers, OpenAPI), so it sits here, below them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..permissions import NO_PERMISSIONS, OPERATIONS, Permissions
from .migrations import Step, Versions
from .schema import ModelSchema

#: The HTTP methods a resource can serve (``@resource(methods=...)``).
RESOURCE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


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
    # handler -> filters every document a request reaches must match (None: all of them)
    scope: Callable[[Any], Mapping[str, Any] | None] | None = None
    methods: tuple[str, ...] = RESOURCE_METHODS  # the HTTP methods served (405 for the others)
    lookup: str | None = None  # the unique field item URLs name instead of the id
    permissions: Permissions = NO_PERMISSIONS  # who may do what (allow=, writable_by=)
    migrations: Mapping[int, Step] | None = None  # version -> the step that upgrades stored documents to it
    # Derived once: requests read these (a pydantic model class answers a missing attribute
    # by raising inside its metaclass, so asking the model on every request costs).
    path: str = field(init=False, repr=False, compare=False)  # the collection URL path, /{prefix}/{name}
    is_odmantic: bool = field(init=False, repr=False, compare=False)
    versions: Versions = field(init=False, repr=False, compare=False)  # how stored documents are read

    def __post_init__(self) -> None:
        self.path = f"{self.prefix}/{self.name}"
        self.versions = Versions(self.path, self.schema, self.migrations)
        self.is_odmantic = getattr(self.model, "__collection__", None) is not None and hasattr(self.model, "__odm_fields__")

__all__ = ["OPERATIONS", "RESOURCE_METHODS", "ResourceSpec"]
