"""The bzzlite stack: the whole app a user writes; the store comes from `--db`.

Served with `python -m bzzlite serve bench.servers.bzz_app:app --port P --db sqlite:///PATH`.
"""

from __future__ import annotations

from pydantic import BaseModel

from bzzlite import App, Registry

registry = Registry()


@registry.resource(name="item", indexes=["category"])
class Item(BaseModel):
    """Same fields and defaults as `bench.servers.common.Item`."""

    name: str
    category: str
    price: float
    qty: int = 0
    tags: list[str] = []
    description: str = ""


app = App(registry=registry)


def without_feeds() -> App:
    """The same app with change feeds off (`feeds=False`): no journal row per write.

    The `bzzlite_no_feeds` stack serves it, to show what the feed journal costs a create.
    """
    return App(registry=registry, feeds=False)
