"""Notes that belong to their author: sign-in, a list scoped to the user, 403 on others' notes.

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

Sign in as Bob ("bob-local-token") and try to change Alice's note: 403.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from bzzlite import App, HTTPError, Registry
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


@api.resource
class Note(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    owner: str | None = None  # set by the server: the author's user id


@api.on("pre_create_instance", sender=Note)
def stamp_owner(sender, arguments, handler):
    """The author owns the note, whatever the body says."""
    arguments["data"]["owner"] = handler.current_user["id"]


@api.on("pre_get_list", sender=Note)
def only_my_notes(sender, arguments, handler):
    """Each user lists their own notes (a client's ?owner= filter is overridden)."""
    arguments["filters"]["owner"] = handler.current_user["id"]


@api.on("pre_get_instance", sender=Note)
@api.on("pre_update_instance", sender=Note)
@api.on("pre_delete_instance", sender=Note)
async def only_the_owner(sender, arguments, handler):
    """Reading, changing or deleting someone else's note is forbidden (403)."""
    store = await handler.runtime.ready_store()
    note = await store.get(handler.spec, handler.checked_id(arguments["id"]))  # unknown id: 404
    if note.doc.get("owner") != handler.current_user["id"]:
        raise HTTPError(403, "This note belongs to someone else.")
    data = arguments.get("data")
    if isinstance(data, dict) and (not arguments.get("partial") or "owner" in data):
        data["owner"] = handler.current_user["id"]  # a PUT keeps the owner; nobody gives a note away


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
