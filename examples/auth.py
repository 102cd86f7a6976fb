"""Notes that belong to their author: sign-in, and a scope that keeps each user to their own notes.

    python -m bzzlite serve examples/auth.py:app

then, as Alice (a fake local account — see LocalDevProvider below):

    curl -si -X POST localhost:8888/auth/signin/ -H 'Content-Type: application/json' \\
         -d '{"provider": "local-dev", "access_token": "alice-local-token"}'
    # copy the AUTH_TOKEN value from Set-Cookie, then either send it as a Bearer token:
    curl -s -X POST localhost:8888/note -H "Authorization: Bearer $TOKEN" \\
         -H 'Content-Type: application/json' -d '{"text": "buy milk"}'
    curl -s localhost:8888/note -H "Authorization: Bearer $TOKEN"        # only Alice's notes
    # or as the cookie, the way a browser page does (writes need X-Requested-With):
    curl -s -X DELETE localhost:8888/note/<id> -b "AUTH_TOKEN=$TOKEN" -H 'X-Requested-With: fetch'

Sign in as Bob ("bob-local-token") and try to read or change Alice's note: 404, the same
answer as for an id that does not exist.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from bzzlite import App, Registry
from bzzlite.auth import Auth, AuthProvider, GitHubProvider, GoogleProvider

api = Registry()


class LocalDevProvider(AuthProvider):
    """FOR TRYING LOCALLY ONLY: accepts fixed, well-known tokens, with no real provider.

    Anyone who reads this file can sign in as Alice or Bob. A real app lists only real
    providers (Google, GitHub, Facebook, or its own AuthProvider that checks tokens).
    """

    name = "local-dev"
    USERS: ClassVar[dict[str, dict[str, str]]] = {
        "alice-local-token": {"id": "alice", "email": "alice@localhost", "name": "Alice"},
        "bob-local-token": {"id": "bob", "email": "bob@localhost", "name": "Bob"},
    }

    async def authenticate(self, access_token: str) -> dict[str, Any] | None:
        user = self.USERS.get(access_token)
        return dict(user) if user is not None else None


def my_notes(handler):
    """The one authorization decision for notes: each user reaches their own, on every route
    (item, list, nested, change feed); the owner is filled in on create and kept on replace."""
    return {"owner": handler.current_user["id"]}


@api.resource(scope=my_notes)
class Note(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    owner: str | None = None  # set by the server: the author's user id


@api.on("pre_get_user_details")
def add_initial(sender, user_data, handler):
    """/auth/me/ shows more than the token carries."""
    user_data["initial"] = (user_data.get("name") or "?")[:1]


# A random secret signs everyone out at each restart; set BZZLITE_AUTH_SECRET to keep sessions.
secret = os.environ.get("BZZLITE_AUTH_SECRET") or secrets.token_urlsafe(32)
app = App(api, auth=Auth(secret, [
    LocalDevProvider(),  # remove before deploying
    GoogleProvider(),    # a Google access token from your front end's sign-in
    GitHubProvider(),    # a GitHub OAuth app's access token
]))
