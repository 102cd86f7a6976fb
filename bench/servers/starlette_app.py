"""Floor (d): the same service on Starlette alone (FastAPI's base, no dependency injection), on uvicorn.

Run as `python -m bench.servers.starlette_app --port P --db PATH`. Routing by Starlette, the body
validated by the same pydantic `Item`, responses encoded with orjson; uvicorn with httptools and
uvloop as for FastAPI.
"""

from __future__ import annotations

import orjson
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.servers.common import Item, ItemStore, parse_args

store: ItemStore  # set by `main` before the server starts


def json_response(body: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


async def get_item(request: Request) -> Response:
    doc = store.get(request.path_params["item_id"])
    return json_response({"detail": "not found"}, 404) if doc is None else json_response(doc)


async def items(request: Request) -> Response:
    if request.method == "POST":
        try:
            item = Item.model_validate_json(await request.body())
        except ValidationError as exc:
            return Response(exc.json(), status_code=422, media_type="application/json")
        return json_response(store.create(item), 201)
    query = request.query_params
    try:
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 20))
    except ValueError:
        return json_response({"detail": "bad page"}, 400)
    if page < 1 or not 1 <= per_page <= 100:
        return json_response({"detail": "bad page"}, 400)
    return json_response(store.page(query.get("category"), page, per_page))


app = Starlette(routes=[Route("/item/{item_id}", get_item), Route("/item", items, methods=["GET", "POST"])])


def main() -> None:
    global store
    args = parse_args(__doc__.splitlines()[0])
    store = ItemStore(args.db)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
