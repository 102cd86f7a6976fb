"""Baseline (c): the same service as FastAPI on uvicorn (httptools parser, uvloop loop).

Run as `python -m bench.servers.fastapi_app --port P --db PATH`. Handlers are `async def`
so the one SQLite connection is used on the event loop thread, as in the other stacks
(plain `def` handlers would hop to a thread pool); responses are encoded once with orjson,
the fast path a performance-minded FastAPI user takes.
"""

from __future__ import annotations

import orjson
import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from bench.servers.common import Item, ItemStore, parse_args

app = FastAPI()
store: ItemStore  # set by `main` before the server starts


def json_response(body: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


@app.get("/item/{item_id}")
async def get_item(item_id: str) -> Response:
    doc = store.get(item_id)
    if doc is None:
        raise HTTPException(404, "not found")
    return json_response(doc)


@app.post("/item", status_code=201)
async def create_item(item: Item) -> Response:
    return json_response(store.create(item), 201)


@app.get("/item")
async def list_items(
    category: str | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(20, ge=1, le=100),
) -> Response:
    return json_response(store.page(category, page, per_page))


def main() -> None:
    """Open the store, then serve with uvicorn's fast components and no access log."""
    global store
    args = parse_args(__doc__.splitlines()[0])
    store = ItemStore(args.db)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
