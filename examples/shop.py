"""A shop: admins manage products, buyers order them and pay through the ``pay`` action.

    python -m bzzlite serve examples/shop.py:app
    python -m bzzlite routes examples/shop.py:app --permissions    # who may do what

Who may do what (docs/permissions.md), decided on every route — items, lists, nested lines,
the change feeds, the pay action:

- Products: anyone browses them, only admins create, change or delete them.
- Orders: a buyer creates orders (the buyer is filled in), reads and lists their own (an order
  of someone else is a 404, like an unknown id) and changes the lines of their own while it is
  open; ``status`` and ``total`` are not theirs to set (403 naming the field): an order is paid
  only through ``POST /order/{id}/pay``. Admins read and manage every order.
- A product that orders refer to (``Order.lines[].product``) cannot be deleted (409).

What else it shows (docs/beyond-crud.md): an ``@action`` with a validated body, in
/openapi.json and /docs; a multi-document write in one transaction (paying takes the stock of
its products down, all or nothing); a public ``@route`` computed with the document API.

Sign in as a fake local buyer or admin (see ``bzzlite.auth.testing.StaticTokenProvider``):

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
from bzzlite.permissions import anyone, owner, role, where

api = Registry()


@api.resource(allow={"read": anyone, "write": role("admin")})
class Product(BaseModel):
    sku: Annotated[str, Unique]
    name: str
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    stock: int = Field(default=0, ge=0)


class Line(BaseModel):
    product: Annotated[str, Ref(Product)]  # on_delete="restrict": a product on order stays
    quantity: int = Field(ge=1, le=1000)


@api.resource(
    allow={
        "read": owner("buyer") | role("admin"),  # a buyer's own orders; an admin's, all
        "create": owner("buyer") | role("admin"),  # the buyer is filled in; naming another is a 403
        "update": (owner("buyer") & where(status="open")) | role("admin"),
        "delete": role("admin"),
        "pay": owner("buyer"),  # the action below
    },
    writable_by={"status": role("admin"), "total": role("admin")},
)
class Order(BaseModel):
    lines: list[Line] = Field(min_length=1)
    buyer: str | None = None
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
    # The shop's own access: the buyer may neither change stock nor set status or total,
    # but the shop does it for them here, once the rules above let them call pay on this order.
    products = handler.application.documents(Product)
    orders = handler.application.documents(Order)
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
        "admin-local-token": {"id": "admin", "name": "Admin", "roles": ["admin"]},
    }),
]))
