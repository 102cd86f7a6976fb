"""What handlers share at run time: settings, registry, config, the store, and the slots
the app fills with its auth policy and change feeds.

Handlers get it through ``initialize(runtime=...)`` (Tornado's rule kwargs). The
store is opened on first use, so a store that is down at start-up answers 503 and
the app recovers by itself when it comes back. The runtime sits below the operations layer,
the feeds and auth: they use it, it knows them only by what it calls (:class:`FeedsSlot`,
:class:`AuthSlot`), so no import goes back up.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import StoreUnavailable
from .models.nested import Referrer, inspect_all, referrers_of
from .stores import Store, open_store

if TYPE_CHECKING:
    import tornado.web

    from .models.nested import NestedModel
    from .models.resource import ResourceSpec
    from .permissions import Caller
    from .registry import Registry
    from .settings import Settings


class FeedsSlot(Protocol):
    """What the runtime asks of the change feeds (:class:`bzzlite.feeds.Feeds`)."""

    async def attach(self, store: Store) -> None: ...

    async def close(self) -> None: ...


class AuthSlot(Protocol):
    """What the operations layer, the feeds and the handlers ask of the app's auth policy
    (:class:`bzzlite.auth.AuthPolicy`)."""

    async def authorize(self, handler: tornado.web.RequestHandler, spec: ResourceSpec, operation: str) -> None: ...

    async def resolve_user(self, handler: tornado.web.RequestHandler, *, required: bool) -> dict[str, Any] | None: ...

    async def still_signed_in(self, handler: tornado.web.RequestHandler, user: dict[str, Any]) -> bool: ...

    def required(self, spec: ResourceSpec, operation: str) -> bool: ...

    async def caller(self, handler: tornado.web.RequestHandler) -> Caller: ...


class Runtime:
    """Shared state of one App."""

    def __init__(self, registry: Registry, settings: Settings, config: Any) -> None:
        self.registry = registry
        self.settings = settings
        self.config = config
        self.signals = registry.signals
        self.auth: AuthSlot | None = None  # the auth policy (bzzlite.auth), set by App when configured
        self.store: Store = self._store_for(settings.db)
        self.in_flight = 0  # requests being handled (counted by BaseHandler)
        # Documents.of, given by App: the runtime sits below the operations layer it hands out
        self.documents_factory: Callable[[Runtime, type[Any], Any], Any] | None = None
        self.feeds: Any = None  # the change feeds (bzzlite.feeds.Feeds, a FeedsSlot), set by App unless off
        self._open = False
        self._opening: asyncio.Lock | None = None
        self._referrers: dict[str, list[Referrer]] = {}  # collection path -> who refers to it
        # the transaction (bzzlite.documents.Transaction) the current task is inside, if any:
        # each app its own (bzzlite/documents/transactions.py)
        self.transaction: contextvars.ContextVar[Any] = contextvars.ContextVar(
            f"bzzlite-transaction-{id(self)}", default=None)

    def documents(self, model: type[Any], handler: Any = None) -> Any:
        """The document API of a resource's model (a :class:`bzzlite.documents.Documents`), bound
        to ``handler``'s request when given: for handlers registered as they are with ``@route``."""
        if self.documents_factory is None:
            raise RuntimeError("this runtime belongs to no App")
        return self.documents_factory(self, model, handler)

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

    def _store_for(self, url: str) -> Store:
        """The store for a URL, refused (ConfigurationError) if it cannot serve every resource."""
        store = open_store(url, mongo_driver=self.settings.mongo_driver)
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

    async def probe_store(self) -> None:
        """Open a store for the app's URL and close it again: what :meth:`ready_store` will do,
        done once before ``serve --workers`` forks its workers.

        Raises:
            StoreUnavailable: the store cannot be opened now.
        """
        store = self._store_for(self.settings.db)
        try:
            await asyncio.wait_for(store.open(list(self.registry.resources.values())), self.settings.store_timeout)
        except asyncio.TimeoutError:
            raise StoreUnavailable("the store did not answer in time") from None
        finally:
            await store.close()

    async def end_streams(self) -> None:
        """End long-lived responses (change feeds) so that shutdown need not wait for them."""
        if self.feeds is not None:
            await self.feeds.close()

    async def close(self) -> None:
        await self.end_streams()
        if self._open:
            self._open = False
            await self.store.close()
