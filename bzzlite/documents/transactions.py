"""Transactions: ``async with app.transaction():`` groups the document API's writes.

Each app has its own current transaction (a context variable of its runtime), so a task inside
one app's transaction writes to another app's store directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..stores.base import Record, Store, Write

if TYPE_CHECKING:
    from ..runtime import Runtime


@dataclass
class Transaction:
    """Writes collected by ``async with app.transaction():`` and applied at its end, together.

    Every write is validated, authorized and announced to ``pre_*`` receivers when it is made,
    and conditioned on the version it read; at the end the store applies them all or none
    (:meth:`bzzlite.stores.base.Store.apply`), then ``post_*`` receivers run. ``get`` inside
    the block sees the block's own writes.
    """

    store: Store
    writes: list[Write] = field(default_factory=list)
    pending: dict[tuple[str, str], Record | None] = field(default_factory=dict)  # (path, id) -> after
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, write: Write, after: Record | None) -> None:
        self.writes.append(write)
        self.pending[(write.spec.path, write.id)] = after

    def deleted(self, path: str, id_: str) -> bool:
        """Whether this transaction deleted that document."""
        return (path, id_) in self.pending and self.pending[(path, id_)] is None


def current_transaction(runtime: Runtime) -> Transaction | None:
    """The transaction the current task is inside, in this app, if any."""
    return runtime.transaction.get()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def transaction(runtime: Runtime) -> AsyncIterator[Transaction]:
    """Group the document API's writes: the store applies all of them at the end, or none.

    Writes are validated, authorized and announced to ``pre_*`` receivers as they are
    made, each conditioned on the version it read; ``post_*`` receivers run after the
    commit. If the block raises, nothing is written. A document changed by someone else
    meanwhile fails the commit with VersionConflict (412/409 over HTTP): run it again.
    """
    if runtime.transaction.get() is not None:
        raise RuntimeError("transactions do not nest: this task is already inside one")
    tx = Transaction(await runtime.ready_store())
    token = runtime.transaction.set(tx)
    try:
        yield tx
    finally:
        runtime.transaction.reset(token)
    if tx.writes:
        await tx.store.apply(tx.writes)
    for announce in tx.after_commit:
        await announce()
