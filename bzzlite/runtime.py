"""What handlers share at run time: settings, registry, config, the store and auth.

Handlers get it through ``initialize(runtime=...)`` (Tornado's rule kwargs). The
store is opened on first use, so a store that is down at start-up answers 503 and
the app recovers by itself when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from .documents.references import referrers_of
from .errors import StoreUnavailable
from .models.nested import inspect_all
from .stores import Store, open_store

if TYPE_CHECKING:
    from .documents.references import Referrer
    from .documents.operations import Documents, Transaction
    from .models.nested import NestedModel
    from .registry import Registry, ResourceSpec
    from .settings import Settings

M = TypeVar("M", bound=BaseModel)


class Runtime:
    """Shared state of one App."""

    def __init__(self, registry: Registry, settings: Settings, config: Any) -> None:
        self.registry = registry
        self.settings = settings
        self.config = config
        self.signals = registry.signals
        self.auth: Any = None  # an auth policy object (bzzlite.auth), when configured
        self.store: Store = self._store_for(settings.db)
        self.in_flight = 0  # requests being handled (counted by BaseHandler)
        self.feeds: Any = None  # bzzlite.feeds.Feeds: the change feeds, unless turned off
        if settings.feeds:
            from .feeds import Feeds

            self.feeds = Feeds(self)
        self._open = False
        self._opening: asyncio.Lock | None = None
        self._referrers: dict[str, list[Referrer]] = {}  # collection path -> who refers to it
        # the transaction the current task is inside, if any (each app its own)
        self._transaction: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
            f"bzzlite-transaction-{id(self)}", default=None)

    def documents(self, model: type[M], handler: Any = None) -> Documents[M]:
        """The document API of a resource's model: bound to ``handler``'s request when given."""
        from .documents.operations import Documents

        try:
            spec = self.registry.spec_for(model)
        except KeyError:
            raise KeyError(f"{getattr(model, '__name__', model)!r} is not a resource of this app") from None
        return Documents(self, spec, handler)

    @functools.cached_property
    def nested_trees(self) -> dict[str, NestedModel]:
        """Every resource's nested tree (references resolved), by collection path: built once,
        the registry being frozen once an App exists."""
        return inspect_all(list(self.registry.resources.values()))

    @functools.cached_property
    def write_only(self) -> dict[type, frozenset[str]]:
        """The fields each resource model never sends, by model class (for custom routes' answers)."""
        return {spec.model: spec.schema.write_only for spec in self.registry.resources.values()}

    def referrers(self, spec: ResourceSpec) -> list[Referrer]:
        """The top-level reference fields of every resource that point at ``spec`` (found once)."""
        found = self._referrers.get(spec.path)
        if found is None:
            found = self._referrers[spec.path] = referrers_of(spec, self.nested_trees,
                                                              self.registry.resources.values())
        return found

    def current_transaction(self) -> Transaction | None:
        return self._transaction.get()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Group the document API's writes: the store applies all of them at the end, or none.

        Writes are validated, authorized and announced to ``pre_*`` receivers as they are
        made, each conditioned on the version it read; ``post_*`` receivers run after the
        commit. If the block raises, nothing is written. A document changed by someone else
        meanwhile fails the commit with VersionConflict (412/409 over HTTP): run it again.
        """
        from .documents.operations import Transaction

        if self._transaction.get() is not None:
            raise RuntimeError("transactions do not nest: this task is already inside one")
        tx = Transaction(await self.ready_store())
        token = self._transaction.set(tx)
        try:
            yield tx
        finally:
            self._transaction.reset(token)
        if tx.writes:
            await tx.store.apply(tx.writes)
        for announce in tx.after_commit:
            await announce()

    def _store_for(self, url: str) -> Store:
        """The store for a URL, refused (ConfigurationError) if it cannot serve every resource."""
        store = open_store(url)
        store.query_timeout = self.settings.query_timeout
        for spec in self.registry.resources.values():
            store.check_resource(spec)
        return store

    def use_store(self, url: str) -> None:
        """Switch to another store before serving (``--db`` on the command line wins)."""
        if self._open:
            raise RuntimeError("the store is already open")
        self.store = self._store_for(url)
        self.settings.db = url

    async def ready_store(self) -> Store:
        """The store, opened on first use; StoreUnavailable (503) while it cannot be."""
        if self._open:
            return self.store
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if not self._open:
                try:
                    await asyncio.wait_for(
                        self.store.open(list(self.registry.resources.values())), self.settings.store_timeout
                    )
                except asyncio.TimeoutError:
                    raise StoreUnavailable("the store did not answer in time") from None
                if self.feeds is not None:
                    await self.feeds.attach(self.store)
                self._open = True
        return self.store

    async def end_streams(self) -> None:
        """End long-lived responses (change feeds) so that shutdown need not wait for them."""
        if self.feeds is not None:
            await self.feeds.close()

    async def close(self) -> None:
        await self.end_streams()
        if self._open:
            self._open = False
            await self.store.close()
