"""A blog with nested routes, in plain pydantic models: it runs on SQLite and, unchanged, on MongoDB.

    python -m bzzlite serve examples/blog_sqlite.py:app                 # sqlite:///blog.db
    python -m bzzlite serve examples/blog_sqlite.py:app --db mongodb://127.0.0.1:27017/blog
    python -m bzzlite routes examples/blog_sqlite.py:app                # every nested route

then:
    curl -X POST localhost:8888/author -H 'Content-Type: application/json' -d '{"name": "Ada", "email": "ada@example.org"}'
    curl -X POST localhost:8888/post -H 'Content-Type: application/json' -d '{"title": "Hello", "author": "<author id>"}'
    curl -X POST localhost:8888/post/<post id>/comments -H 'Content-Type: application/json' -d '{"who": "Bob", "text": "Hi"}'
    curl localhost:8888/post/<post id>/comments                    # a page of comments
    curl -X PATCH localhost:8888/post/<post id>/comments/<comment id> -d '{"text": "Hi!"}'
    curl localhost:8888/post/<post id>/author                      # the author document itself
    curl -X POST localhost:8888/post/<post id>/coauthors -d '{"id": "<another author id>"}'

Comments declare an ``id``, so ``/comments/{id}`` names one by its id (a model without an
``id`` field is addressed by position). ``author`` and ``coauthors`` hold ids of ``Author``
documents (``Ref``); their nested routes serve the referenced documents.

The resources live in their own registry (not the default one) so this module and
examples/blog.py (the same blog in ODMantic models) can be imported by one process.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from bzzlite import App, Ref, Registry, Unique

blog = Registry()


@blog.resource
class Author(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: Annotated[str, Unique]  # 409 on a duplicate


class Comment(BaseModel):
    id: str = Field(default_factory=lambda: secrets.token_hex(6), min_length=1, max_length=40,
                    pattern=r"^[A-Za-z0-9_-]+$")
    who: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=2000)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    likes: int = Field(default=0, ge=0)


@blog.resource(indexes=["-published"])
class Post(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = ""
    author: Annotated[str, Ref(Author)]
    coauthors: list[Annotated[str, Ref(Author)]] = []
    published: datetime | None = None
    tags: list[str] = []
    comments: list[Comment] = Field(default=[], max_length=500)


@blog.on("post_create_instance", sender=Comment)
def notify_author(sender, instance, handler):
    """Nested routes fire the usual signals with the inner model as sender."""
    print(f"post {handler.parent_id}: new comment {instance.id} by {instance.who}")


@blog.on("pre_create_instance", sender=Comment)
def anonymous_by_default(sender, arguments, handler):
    """A pre_* receiver may fill in fields before the whole post is validated."""
    data = arguments["data"]
    if isinstance(data, dict) and not data.get("who"):
        data["who"] = "anonymous"


# --db on the command line wins over this default.
app = App(blog, db="sqlite:///blog.db")
