"""Floor (e): the same service as a bare ASGI callable on uvicorn: no framework at all.

Run as `python -m bench.servers.asgi_raw --port P --db PATH`. What is left is uvicorn's
HTTP (httptools, uvloop), the routing of three URLs by hand, pydantic validating the body and
the same SQL: the cost of Python serving this work, below which no framework can go.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from pydantic import ValidationError

from bench.servers.common import Item, ItemStore, parse_args

store: ItemStore  # set by `main` before the server starts
_JSON = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        return
    path, method = scope["path"], scope["method"]
    status, body = 404, b'{"detail":"not found"}'
    if path.startswith("/item/") and method == "GET":
        doc = store.get(path[6:])
        if doc is not None:
            status, body = 200, orjson.dumps(doc)
    elif path == "/item" and method == "POST":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            status, body = 201, orjson.dumps(store.create(Item.model_validate_json(b"".join(chunks))))
        except ValidationError as exc:
            status, body = 422, exc.json().encode()
    elif path == "/item" and method == "GET":
        query = parse_qs(scope["query_string"].decode())
        try:
            page, per_page = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["20"])[0])
            if page < 1 or not 1 <= per_page <= 100:
                raise ValueError
            status, body = 200, orjson.dumps(store.page(query.get("category", [None])[0], page, per_page))
        except ValueError:
            status, body = 400, b'{"detail":"bad page"}'
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    global store
    args = parse_args(__doc__.splitlines()[0])
    store = ItemStore(args.db)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
