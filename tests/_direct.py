"""Test helpers that go around bzzlite, as another program sharing the store could."""

from __future__ import annotations

import asyncio
from typing import Any

from bzzlite import App


def delete_behind_bzzlites_back(store_url: str, registry: Any, path: str, id_: str) -> None:
    """Delete a document straight from the store (no reference integrity, no signals)."""
    app = App(registry, db=store_url)

    async def main() -> None:
        store = await app.runtime.ready_store()
        await store.delete(registry.resources[path], id_, None)
        await app.shutdown()

    asyncio.run(main())
