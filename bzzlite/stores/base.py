"""The store interface every backend implements (the URL → store factory is the package's)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConstraintBroken

if TYPE_CHECKING:
    from ..models.resource import ResourceSpec
    from ..query import Query


class Record(NamedTuple):
    """A stored document: its id, its version (1 on creation) and its fields."""

    id: str
    version: int
    doc: dict[str, Any]


@dataclass(slots=True)
class Write:
    """One write of a transaction: ``insert`` (doc), ``replace`` (doc, expected version) or
    ``delete`` (expected version)."""

    kind: str
    spec: ResourceSpec
    id: str
    doc: dict[str, Any] | None
    expected_version: int | None = None
    previous: dict[str, Any] | None = None  # the document as read (replace, delete): to undo it


@dataclass(slots=True)
class Rewrite:
    """One document ``bzzlite migrate`` writes in its current model's form: conditioned on the
    version read, which it keeps (what is served does not change, so neither does the ETag)."""

    id: str
    version: int
    doc: dict[str, Any]  # the document as the model says (fitted)
    stored: dict[str, Any]  # the document as it was read, mark included


@dataclass(slots=True)
class Rewritten:
    """What a batch of rewrites did: how many were written, which documents changed meanwhile
    (or went away), and which would break a unique constraint (id -> the field)."""

    written: int = 0
    conflicts: list[str] = field(default_factory=list)
    duplicates: dict[str, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class Page:
    """One page of a list query; ``total`` is None for keyset pages (not counted)."""

    records: list[Record]
    total: int | None
    has_more: bool


class Store(ABC):
    """Async document storage for resources.

    Raises only :mod:`bzzlite.errors` store errors: ``NotFound``, ``DuplicateKey``,
    ``VersionConflict`` (a conditional write lost) and ``StoreUnavailable``.
    """

    url: str
    #: Seconds a list query may run before it is stopped (QueryTimeout); the app sets it from
    #: ``App(query_timeout=...)``, a resource's ``@resource(query_timeout=...)`` wins.
    query_timeout: float | None = 3.0

    def budget(self, spec: ResourceSpec) -> float | None:
        """The time budget of a query on ``spec``, in seconds (None: unbounded)."""
        if spec.query_timeout is not None:
            return spec.query_timeout or None  # 0 turns the budget off for that resource
        return self.query_timeout or None

    @abstractmethod
    async def open(self, specs: Sequence[ResourceSpec]) -> None:
        """Connect and create what the resources need (tables, unique indexes)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; pending writes are already committed."""

    @abstractmethod
    async def ping(self) -> dict[str, Any]:
        """Health details; raise StoreUnavailable when the store cannot be reached."""

    @abstractmethod
    async def insert(self, spec: ResourceSpec, docs: Sequence[tuple[str, dict[str, Any]]]) -> list[Record]:
        """Insert (id, doc) pairs, all or nothing."""

    @abstractmethod
    async def get(self, spec: ResourceSpec, id: str) -> Record:
        """The document with this id, or NotFound."""

    @abstractmethod
    async def replace(
        self, spec: ResourceSpec, id: str, doc: dict[str, Any], expected_version: int | None
    ) -> Record:
        """Replace the fields of a document in one conditional write; bump its version."""

    @abstractmethod
    async def delete(self, spec: ResourceSpec, id: str, expected_version: int | None) -> None:
        """Delete a document in one conditional write."""

    @abstractmethod
    async def find(self, spec: ResourceSpec, query: Query) -> Page:
        """A page of documents matching a validated query; QueryTimeout past :meth:`budget`."""

    @abstractmethod
    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write or none: each replace and delete conditioned on its expected
        version (VersionConflict, NotFound, DuplicateKey otherwise, with nothing written)."""

    def check_resource(self, spec: ResourceSpec) -> None:
        """Raise ConfigurationError if this store cannot serve ``spec``."""

    # -- bringing stored documents to the model (bzzlite check, bzzlite migrate) ------------

    #: Open even when stored documents break a unique constraint (its index is then left out and
    #: the breach recorded in :attr:`broken`): for ``bzzlite check`` and ``migrate``, never to serve.
    tolerate_broken: bool = False
    broken: list[ConstraintBroken]  # the breaches found by a tolerant open (each store sets it)

    def constraint_broken(self, breach: ConstraintBroken) -> None:
        """A unique index the stored documents keep from being built: raise, or record it."""
        if not self.tolerate_broken:
            raise breach
        self.broken.append(breach)

    @abstractmethod
    async def count(self, spec: ResourceSpec) -> int:
        """How many documents the resource has (all of them, with no query budget)."""

    @abstractmethod
    async def scan(self, spec: ResourceSpec, after: str | None, limit: int) -> list[Record]:
        """Up to ``limit`` documents with ids above ``after``, in id order, as stored (their
        model mark included, not fitted to the model)."""

    @abstractmethod
    async def rewrite(self, spec: ResourceSpec, rewrites: Sequence[Rewrite]) -> Rewritten:
        """Write each document in its model's current form, conditioned on its version, which
        stays as it is; no change event (a migration is no user's change)."""


def table_name(spec: ResourceSpec) -> str:
    """The name a store keeps a resource's documents under (a table, a collection)."""
    return spec.path.strip("/").replace("/", "__")
