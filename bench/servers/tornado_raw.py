"""Baseline (b): the Tornado app a competent user writes by hand over `sqlite3`.

Run as `python -m bench.servers.tornado_raw --port P --db PATH`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from pydantic import ValidationError
from tornado.web import Application, RequestHandler

from bench.servers.common import Item, ItemStore, parse_args


class JsonHandler(RequestHandler):
    """Shared plumbing: the store comes in through `initialize`, bodies go out as JSON."""

    def initialize(self, store: ItemStore) -> None:
        self.store = store

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.send_json({"detail": self._reason}, status_code)


class ItemHandler(JsonHandler):
    """`GET /item/{id}`."""

    def get(self, item_id: str) -> None:
        doc = self.store.get(item_id)
        if doc is None:
            self.send_json({"detail": "not found"}, 404)
        else:
            self.send_json(doc)


class CollectionHandler(JsonHandler):
    """`POST /item` and `GET /item?category=X&page=P&per_page=K`."""

    def post(self) -> None:
        try:
            item = Item.model_validate_json(self.request.body)
        except ValidationError as exc:
            self.set_status(422)
            self.set_header("Content-Type", "application/json")
            self.finish(exc.json(include_url=False))
            return
        self.send_json(self.store.create(item), 201)

    def get(self) -> None:
        try:
            page = int(self.get_argument("page", "1"))
            per_page = int(self.get_argument("per_page", "20"))
        except ValueError:
            page = per_page = 0
        if page < 1 or not 1 <= per_page <= 100:
            self.send_json({"detail": "bad page or per_page"}, 400)
            return
        self.send_json(self.store.page(self.get_argument("category", None), page, per_page))


def make_app(store: ItemStore) -> Application:
    """The routes, each handler handed the one store."""
    return Application(
        [
            (r"/item/?", CollectionHandler, {"store": store}),
            (r"/item/([0-9a-f]{24})/?", ItemHandler, {"store": store}),
        ]
    )


async def serve(host: str, port: int, db: str) -> None:
    """Listen until the process is stopped."""
    make_app(ItemStore(db)).listen(port, address=host)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    asyncio.run(serve(args.host, args.port, args.db))
