"""IDOR from the route table: every route of an app, whatever its kind, tried as another user.

The URLs come from ``app.routes`` (templates filled with Alice's ids), so a new kind of route
is attacked here without anyone remembering to add a test: each must answer Bob exactly what an
unknown id answers (404, same body), or refuse the method, and leave Alice's data unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel

from bzzlite import App, Ref, Registry
from bzzlite.feeds.testing import EventStream
from bzzlite.testing import serve


class Meta(BaseModel):
    mood: str = "ok"


class Item(BaseModel):
    name: str


class Tag(BaseModel):
    label: str


class Rename(BaseModel):
    text: str


def owner_app(store_url: str) -> App:
    registry = Registry()
    registry.resource(Tag)

    def mine(handler: Any) -> dict[str, Any]:
        return {"owner": handler.request.headers.get("X-User", "nobody")}

    @registry.resource(scope=mine)
    class Note(BaseModel):
        text: str
        owner: str | None = None
        meta: Meta | None = None
        items: list[Item] = []
        tag: Annotated[str, Ref(Tag)] | None = None

    @registry.action(Note, "rename")
    async def rename(handler: Any, note: Note, body: Rename) -> Note:
        return await handler.documents(Note).patch(note.id, {"text": body.text})  # type: ignore[attr-defined]

    @registry.action(Note, "peek", methods=["GET"])
    async def peek(handler: Any, note: Note) -> dict[str, str]:
        return {"text": note.text}

    @registry.route("/notes/{note_id}/echo", methods=["GET", "POST"])
    async def echo(handler: Any, note_id: str) -> dict[str, str]:
        note = await handler.documents(Note).get(note_id)
        return {"text": note.text}

    return App(registry, db=store_url)


_SAMPLE_BODIES: dict[str, Any] = {"POST": {"text": "x", "name": "x", "mood": "sad"},
                                  "PUT": {"text": "x", "name": "x", "mood": "sad"},
                                  "PATCH": {"text": "x", "name": "x", "mood": "sad"}}


def urls_for(app: App, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(kind, URL) for every route of the app that names a document, filled with ``ids``."""
    found = []
    for route in app.routes:
        template = route.template
        if route.kind == "nested":  # one URL per nested path of the resource's tree
            from bzzlite.models.nested import routes as nested_routes

            for nested in nested_routes(route.kwargs["tree"]):
                found.append((route.kind, f"{route.spec.path}/{ids['id']}/{_fill(nested.template, ids)}"))  # type: ignore[union-attr]
            continue
        if "{" in template and route.kind not in ("docs", "mock"):
            found.append((route.kind, _fill(template, ids)))
    return found


def _fill(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: ids.get(m.group(1), ids["element"]), template)


def test_every_route_kind_hides_another_users_documents(store_url: str) -> None:
    app = owner_app(store_url)
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    with serve(app) as client:
        tag = client.post("/tag", json={"label": "t"}).json()
        note = client.post("/note", json={"text": "secret", "meta": {"mood": "happy"}, "items": [{"name": "a"}],
                                          "tag": tag["id"]}, headers=alice).json()
        element = "0"
        ids = {"id": note["id"], "note_id": note["id"], "element": element}
        urls = urls_for(app, ids)
        kinds = {kind for kind, _ in urls}
        assert {"item", "nested", "action", "custom"} <= kinds, kinds  # the table is what is attacked
        before = client.get(f"/note/{note['id']}", headers=alice).json()
        tried = 0
        for kind, url in urls:
            if url.startswith("/tag"):
                continue  # an unscoped resource: nothing to hide
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                response = client.request(method, url, json=_SAMPLE_BODIES.get(method), headers=bob)
                if response.code == 405:
                    continue
                tried += 1
                assert response.code >= 400, (kind, method, url, response.code, response.text)
                # exactly what the same request answers for an id that does not exist
                twin = client.request(method, url.replace(note["id"], "0" * 24), json=_SAMPLE_BODIES.get(method),
                                      headers=bob)
                assert (response.code, response.json()) == (twin.code, twin.json()), (kind, method, url)
        assert tried >= 15, tried
        assert client.get(f"/note/{note['id']}", headers=alice).json() == before
        assert client.get("/note", headers=bob).json()["total"] == 0
        assert client.get(f"/note/{note['id']}/meta", headers=alice).json() == {"mood": "happy"}

        # the change feed: Bob's subscription never hears of Alice's notes
        with EventStream(client, "/note", headers=bob) as bobs, EventStream(client, "/note", headers=alice) as hers:
            bobs.wait_ready()
            hers.wait_ready()
            client.post("/note", json={"text": "another secret"}, headers=alice)
            client.post("/note", json={"text": "bob's own"}, headers=bob)
            assert hers.next().data["doc"]["text"] == "another secret"  # type: ignore[union-attr]
            assert bobs.next().data["doc"]["text"] == "bob's own"  # type: ignore[union-attr]
