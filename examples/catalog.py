"""A catalog: products with a nested supplier address, as client generators see it.

    python -m bzzlite serve examples/catalog.py:app

``GET /openapi.json`` feeds openapi-python-client and openapi-typescript unchanged
(tests/test_clients.py drives both generated clients against this app).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from bzzlite import App, Registry, Unique

registry = Registry()


class Address(BaseModel):
    city: str
    zip: str | None = None


@registry.resource(name="products")
class Product(BaseModel):
    """Things the shop sells."""

    name: str = Field(min_length=1, examples=["Espresso cup"])
    sku: Annotated[str, Unique]
    price: float = Field(ge=0)
    stock: int = 0
    tags: list[str] = []
    active: bool = True
    supplier: Address | None = None


def make_app(db: str | None = None) -> App:
    """The shop on ``db`` (the usual default store when None)."""
    return App(registry=registry, db=db, title="Shop API", version="1.0.0")


app = make_app()
