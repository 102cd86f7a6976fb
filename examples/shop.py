"""A shop: products, orders that belong to their buyer, and a pay action.

    python -m bzzlite serve examples/shop.py:app

What it shows beyond CRUD (docs/beyond-crud.md):

- ``scope=``: each buyer reaches only their own orders, on every route (item, list, nested
  lines, the pay action, the change feed); another buyer's order is a 404, like an unknown id,
  and the buyer is filled in on create.
- ``@action(Order, "pay")``: ``POST /order/{id}/pay`` with a validated body, documented in
  /openapi.json and /docs, listed by ``bzzlite routes``.
- A multi-document write: paying marks the order paid and takes the stock of its products
  down, all or nothing (``handler.transaction()``).
- ``@route``: a public ``GET /stats`` computed with the document API.

Sign in as a fake local buyer (see ``bzzlite.auth.testing.StaticTokenProvider``):

    curl -si -X POST localhost:8888/auth/signin/ -H 'Content-Type: application/json' \\
         -d '{"provider": "local-dev", "access_token": "alice-local-token"}'
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from bzzlite import App, HTTPError, Ref, Registry, Unique, etag_of
from bzzlite.auth import Auth
from bzzlite.auth.testing import StaticTokenProvider

api = Registry()


@api.resource(auth={"get": False, "list": False})  # anyone may browse; writes need a user
class Product(BaseModel):
    sku: Annotated[str, Unique]
    name: str
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    stock: int = Field(default=0, ge=0)


class Line(BaseModel):
    product: Annotated[str, Ref(Product)]
    quantity: int = Field(ge=1, le=1000)


def my_orders(handler: Any) -> dict[str, Any]:
    """The one authorization decision for orders: a buyer reaches their own."""
    return {"buyer": handler.current_user["id"]}


@api.resource(scope=my_orders)
class Order(BaseModel):
    lines: list[Line] = Field(min_length=1)
    buyer: str | None = None  # filled in by the scope
    status: Literal["open", "paid"] = "open"
    total: Decimal | None = None


class Payment(BaseModel):
    card_last4: str = Field(pattern=r"^[0-9]{4}$")


@api.action(Order, "pay")
async def pay(handler: Any, order: Order, payment: Payment) -> Order:
    """Pay an open order.

    Marks the order paid and takes its products' stock down, in one transaction: if any
    product has too little stock, nothing changes (409).
    """
    if order.status == "paid":
        raise HTTPError(409, "This order is already paid.")
    products = handler.application.documents(Product)  # the shop's own access to its stock
    orders = handler.documents(Order)  # the buyer's access: the scope still applies
    async with handler.transaction():
        total = Decimal(0)
        for line in order.lines:
            product = await products.get(line.product)
            if product.stock < line.quantity:
                raise HTTPError(409, f"Only {product.stock} of {product.name} left.")
            await products.patch(product.id, {"stock": product.stock - line.quantity}, if_match=etag_of(product))
            total += product.price * line.quantity
        return await orders.patch(order.id, {"status": "paid", "total": str(total)}, if_match=etag_of(order))


class Stats(BaseModel):
    products: int
    in_stock: int


@api.route("/stats", auth=False)
async def stats(handler: Any) -> Stats:
    """How many products the shop lists, and how many are in stock."""
    products = handler.documents(Product)
    return Stats(products=await products.count(), in_stock=await products.count({"stock__gt": 0}))


secret = os.environ.get("BZZLITE_AUTH_SECRET") or secrets.token_urlsafe(32)
app = App(api, auth=Auth(secret, [
    StaticTokenProvider("local-dev", {  # FOR TRYING LOCALLY ONLY: remove before deploying
        "alice-local-token": {"id": "alice", "name": "Alice"},
        "bob-local-token": {"id": "bob", "name": "Bob"},
    }),
]))
