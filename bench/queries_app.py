"""The app bench/queries.py serves: one indexed collection of products."""

from __future__ import annotations

from pydantic import BaseModel

from bzzlite import App, Registry

registry = Registry()


@registry.resource(name="product", indexes=[("category", "-price"), ("price",)], max_per_page=100,
                   max_offset=None)  # the benchmark compares deep page= offsets with cursors
class Product(BaseModel):
    name: str
    category: str
    price: float
    stock: int = 0


app = App(registry=registry)  # the store comes from --db
