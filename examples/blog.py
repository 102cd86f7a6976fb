"""A blog on MongoDB, declared with ODMantic models: authors, and posts that embed their
comments and reference their author.

    python -m bzzlite serve examples/blog.py:app --db mongodb://127.0.0.1:27017/blog

then:
    curl -X POST localhost:8888/author -H 'Content-Type: application/json' \\
         -d '{"name": "Ada", "email": "ada@example.org"}'
    curl -X POST localhost:8888/post -H 'Content-Type: application/json' \\
         -d '{"title": "Hello", "body": "...", "author": "<the author id>", "comments": [{"who": "Bob", "text": "Hi"}]}'
    curl 'localhost:8888/post?author=<the author id>&sort=-published'

A ``Reference`` field holds the referenced document's id: send the author's id, get it
back as a 24-hex string (``?author=<id>`` filters on it). ODMantic models need MongoDB:
the command fails with a message saying so on a SQLite ``--db``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from odmantic import EmbeddedModel, Field, Model, Reference

from bzzlite import App, on, resource


@resource
class Author(Model):
    name: str = Field(min_length=1)
    email: str = Field(unique=True)  # 409 on a duplicate


class Comment(EmbeddedModel):
    who: str
    text: str = Field(min_length=1, max_length=2000)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


@resource(indexes=["-published"])
class Post(Model):
    title: str = Field(min_length=1, max_length=200, index=True)
    body: str = ""
    author: Author = Reference()
    published: datetime | None = None
    tags: list[str] = []
    comments: list[Comment] = []

    model_config = {"collection": "posts"}


@on("pre_create_instance", sender=Post)
def publish_now_by_default(sender, arguments, handler):
    """A receiver may fill in fields before the body is validated."""
    data = arguments["data"]
    if isinstance(data, dict) and data.get("published") is None:
        data["published"] = datetime.now(UTC).isoformat()


@on("post_create_instance", sender=Post)
def announce(sender, instance, handler):
    print(f"new post {instance.id} by author {instance.author.id}: {instance.title}")


# --db on the command line (or BZZLITE_DB) wins over this default.
app = App(db=os.environ.get("BZZLITE_DB", "mongodb://127.0.0.1:27017/blog"))
