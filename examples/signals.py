"""bzz's signals example, the bzzlite way.

A form-encoded POST (as bzz's example sent it) creates a user, and the
``post_create_instance`` receiver gets the created instance. Run it:

    python examples/signals.py
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from tornado.httpclient import AsyncHTTPClient

from bzzlite import App, Registry
from bzzlite.testing.server import serve

registry = Registry()


@registry.resource
class User(BaseModel):
    name: str


created: list[User] = []


# the seed connected to bzz.signals.post_create_instance; with a registry of our own
# we connect to its signals (for the default registry: bzzlite.signals.post_create_instance)
@registry.on("post_create_instance", sender=User)
def handle_post_instance_created(sender, instance, handler):
    assert instance.name == "Bernardo Heynemann"
    created.append(instance)


app = App(registry=registry, db="sqlite:///:memory:")


async def create_user(base_url: str) -> int:
    # post the user's data form-encoded, as bzz's example did
    response = await AsyncHTTPClient().fetch(
        f"{base_url}/user/", method="POST", body="name=Bernardo%20Heynemann"
    )
    return response.code


def main() -> None:
    with serve(app) as client:
        code = asyncio.run(create_user(client.base_url))
    print(f"POST /user/ -> {code}; post_create_instance got {created[0]!r} with id {created[0].id}")


if __name__ == "__main__":
    main()
