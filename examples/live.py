"""A task list that updates itself in every open browser: a bzzlite change feed.

    python -m bzzlite serve examples/live.py:app

then open http://127.0.0.1:8888/ in two windows and add, tick or delete tasks in one
(or with curl: ``curl -X POST localhost:8888/task -d title=milk``): the other follows.
The page (live.html, next to this file) reads the list once, then follows
``GET /task`` with ``Accept: text/event-stream`` through the browser's EventSource.
"""

from __future__ import annotations

from pathlib import Path

import tornado.web
from pydantic import BaseModel, Field

from bzzlite import App, Registry

PAGE = Path(__file__).with_name("live.html")

registry = Registry()


@registry.resource
class Task(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    done: bool = False


class LivePage(tornado.web.RequestHandler):
    """The page itself (any static file server would do)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE.read_bytes())


def make_app(db: str | None = None) -> App:
    app = App(registry, db=db)
    app.add_handlers(r".*", [(r"/", LivePage)])  # Tornado's own way to add routes
    return app


app = make_app()
