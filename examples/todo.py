"""A to-do list API: the smallest bzzlite app.

    python -m bzzlite serve examples/todo.py:app

then: curl -X POST localhost:8888/todo_item -H 'Content-Type: application/json' -d '{"title": "try bzzlite"}'
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from bzzlite import App, Unique, on, resource


@resource(indexes=["done", "due"])
class TodoItem(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    done: bool = False
    due: datetime | None = None
    tags: list[str] = []
    slug: Annotated[str, Unique] | None = None  # 409 on a duplicate


@on("post_update_instance", sender=TodoItem)
def log_completion(sender, instance, updated_fields, handler):
    if updated_fields.get("done", {}).get("to") is True:
        print(f"done: {instance.title} ({instance.id})")


app = App()
