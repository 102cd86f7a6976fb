"""Change feeds over Server-Sent Events: a real server, a raw-socket client reading the stream."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from bzzlite import App, HTTPError, Registry
from bzzlite.feeds.events import Change, Decoded, Event
from bzzlite.feeds.hub import Feeds, Subscription
from bzzlite.feeds.testing import EventStream
from bzzlite.query import build_query, parse_arguments
from bzzlite.testing import serve


class Address(BaseModel):
    city: str
    zip: str | None = None


class Todo(BaseModel):
    title: str
    done: bool = False
    owner: str | None = None
    tags: list[str] = []
    address: Address | None = None
    blob: str = ""


@pytest.fixture
def store_url(store_url):
    if store_url.startswith("mongodb") and importlib.util.find_spec("bzzlite.feeds.mongo") is None:
        pytest.skip("the MongoDB journal is not built yet")
    return store_url


def make_app(url: str, registry: Registry | None = None, **options) -> App:
    if registry is None:
        registry = Registry()
        registry.resource(Todo)
    return App(registry, db=url, **options)


@contextlib.contextmanager
def served(url: str, registry: Registry | None = None, **options):
    app = make_app(url, registry, **options)
    with serve(app) as client:
        client.app = app
        yield client


def feed(client, path: str = "/todo", **kw) -> EventStream:
    return EventStream(client, path, **kw)


def follow_changes(client) -> None:
    """Make sure changes are being journaled from now on. On SQLite they always are; on
    MongoDB the journal follows the database once someone subscribed (then resumes from
    where it stopped), so a test writing before its first subscriber starts it this way."""
    with feed(client) as stream:
        stream.wait_ready()


def changes(stream: EventStream, count: int) -> list:
    """The next ``count`` change events, skipping ``ready``: on MongoDB the journal can lag
    the API's answers by a poll, so a change made just before (re)connecting may come
    after ``ready`` rather than before it."""
    found = []
    while len(found) < count:
        event = stream.next()
        assert event is not None, f"the stream ended after {len(found)} changes"
        if event.type != "ready":
            found.append(event)
    return found


def test_created_updated_deleted(store_url):
    with served(store_url) as client, feed(client) as stream:
        assert stream.status == 200
        assert stream.response_headers["content-type"] == "text/event-stream"
        assert stream.response_headers["cache-control"] == "no-cache"
        ready = stream.wait_ready()
        start = ready.data["event_id"]
        assert ready.id == str(start)

        doc = client.post("/todo", json={"title": "a"}).json()
        assert client.patch(f"/todo/{doc['id']}", json={"done": True}).code == 200
        assert client.delete(f"/todo/{doc['id']}").code == 204
        created, updated, deleted = stream.take(3)

        assert [e.type for e in (created, updated, deleted)] == ["created", "updated", "deleted"]
        ids = [int(e.id) for e in (created, updated, deleted)]
        assert ids[0] > start and ids == sorted(ids) and len(set(ids)) == 3
        assert created.data["event_id"] == ids[0]
        assert created.data["type"] == "created"
        assert created.data["doc"] == doc
        assert created.data["matches"] is True
        assert "updated_fields" not in created.data
        assert updated.data["doc"] == {**doc, "done": True}
        assert updated.data["updated_fields"] == {"done": {"from": False, "to": True}}
        assert updated.data["matches"] is True
        assert deleted.data["doc"] == {**doc, "done": True}  # the document as it was deleted
        assert deleted.data["matches"] is False


def test_bulk_create_gives_one_event_per_document_in_order(store_url):
    with served(store_url) as client, feed(client) as stream:
        stream.wait_ready()
        docs = client.post("/todo", json=[{"title": str(i)} for i in range(5)]).json()
        events = stream.take(5)
        assert [e.data["doc"]["id"] for e in events] == [d["id"] for d in docs]


def test_a_failed_write_gives_no_event(store_url):
    with served(store_url) as client, feed(client) as stream:
        stream.wait_ready()
        assert client.post("/todo", json=[{"title": "ok"}, {"title": 5}]).code == 422  # all or nothing
        assert client.post("/todo", json={"title": "after"}).code == 201
        event = stream.next()
        assert event.data["doc"]["title"] == "after"


def test_filters_see_documents_that_match_before_or_after(store_url):
    with served(store_url) as client, feed(client, "/todo?done=false&tags=red") as stream:
        stream.wait_ready()
        red = client.post("/todo", json={"title": "red", "tags": ["red", "big"]}).json()
        client.post("/todo", json={"title": "blue", "tags": ["blue"]})  # never matches
        client.patch(f"/todo/{red['id']}", json={"done": True})  # leaves the view
        client.patch(f"/todo/{red['id']}", json={"title": "still done"})  # outside the view all along
        client.patch(f"/todo/{red['id']}", json={"done": False})  # comes back
        client.delete(f"/todo/{red['id']}")
        events = stream.take(4)
        assert [(e.type, e.data["matches"]) for e in events] == [
            ("created", True), ("updated", False), ("updated", True), ("deleted", False)]
        assert events[2].data["doc"]["title"] == "still done"
        assert events[2].data["updated_fields"] == {"done": {"from": True, "to": False}}


def test_projection_applies_to_documents_and_updated_fields(store_url):
    with served(store_url) as client, feed(client, "/todo?fields=title,address.city") as stream:
        stream.wait_ready()
        doc = client.post("/todo", json={"title": "a", "owner": "ann", "address": {"city": "Paris", "zip": "1"}}).json()
        client.patch(f"/todo/{doc['id']}", json={"owner": "bob", "address": {"zip": "2"}})  # nothing asked for changed
        client.patch(f"/todo/{doc['id']}", json={"title": "b", "address": {"city": "Lyon"}})
        created, quiet, loud = stream.take(3)
        assert created.data["doc"] == {"id": doc["id"], "title": "a", "address": {"city": "Paris"}}
        assert quiet.data["updated_fields"] == {}
        assert loud.data["doc"] == {"id": doc["id"], "title": "b", "address": {"city": "Lyon"}}
        assert loud.data["updated_fields"] == {
            "title": {"from": "a", "to": "b"},
            "address": {"from": {"city": "Paris"}, "to": {"city": "Lyon"}},
        }


def test_resume_with_last_event_id_replays_what_was_missed(store_url):
    with served(store_url) as client:
        with feed(client) as stream:
            stream.wait_ready()
            first = client.post("/todo", json={"title": "seen"}).json()
            seen = stream.next()
            assert seen.data["doc"]["id"] == first["id"]
        # disconnected: these happen while nobody listens
        missed = [client.post("/todo", json={"title": f"missed {i}"}).json() for i in range(3)]
        client.patch(f"/todo/{first['id']}", json={"done": True})
        with feed(client, headers={"Last-Event-ID": seen.id}) as stream:
            replayed = changes(stream, 4)
            assert [e.data["doc"]["id"] for e in replayed] == [d["id"] for d in missed] + [first["id"]]
            assert [e.type for e in replayed] == ["created"] * 3 + ["updated"]
            later = client.post("/todo", json={"title": "live"}).json()
            assert changes(stream, 1)[0].data["doc"]["id"] == later["id"]


def test_since_parameter_and_header_priority(store_url):
    with served(store_url) as client:
        follow_changes(client)
        docs = [client.post("/todo", json={"title": str(i)}).json() for i in range(3)]
        with feed(client, "/todo?since=0") as stream:
            events = changes(stream, 3)
            assert [e.data["doc"]["id"] for e in events] == [d["id"] for d in docs]
        # a reconnecting EventSource keeps its URL: Last-Event-ID wins over ?since=
        with feed(client, "/todo?since=0", headers={"Last-Event-ID": events[1].id}) as stream:
            assert changes(stream, 1)[0].data["doc"]["id"] == docs[2]["id"]


def test_resume_applies_the_filters(store_url):
    with served(store_url) as client:
        follow_changes(client)
        client.post("/todo", json={"title": "x", "done": True})
        wanted = client.post("/todo", json={"title": "y"}).json()
        with feed(client, "/todo?done=false&since=0&fields=title") as stream:
            assert changes(stream, 1)[0].data["doc"] == {"id": wanted["id"], "title": "y"}


def test_an_id_older_than_the_journal_gets_a_reset(tmp_path):
    with served(f"sqlite:///{tmp_path}/t.db", feed_journal_size=5) as client:
        for i in range(70):  # the journal is trimmed in batches of 64
            client.post("/todo", json={"title": str(i)})
        with feed(client, "/todo?since=1") as stream:
            reset = stream.next()
            assert reset.type == "reset"
            assert reset.data["event_id"] == int(reset.id) >= 70
            assert "reload" in reset.data["reason"]
            assert stream.next().type == "ready"
            doc = client.post("/todo", json={"title": "after"}).json()
            assert stream.next().data["doc"]["id"] == doc["id"]


@pytest.mark.parametrize("header", ["garbage", "99999999", "-3"])
def test_an_unknown_last_event_id_gets_a_reset(store_url, header):
    with served(store_url) as client:
        client.post("/todo", json={"title": "x"})
        with feed(client, headers={"Last-Event-ID": header}) as stream:
            assert stream.next().type == "reset"
            assert stream.next().type == "ready"


@pytest.mark.parametrize(("query", "parameter"), [
    ("since=abc", "since"), ("since=-1", "since"), ("since=1&since=2", "since"),
    ("nope=1", "nope"), ("done__between=1", "done__between"), ("fields=nope", "fields"),
])
def test_bad_queries_are_refused_before_streaming(store_url, query, parameter):
    with served(store_url) as client, feed(client, f"/todo?{query}") as stream:
        assert stream.status == 400
        assert stream.response_headers["content-type"] == "application/problem+json"
        assert json.loads(stream.body)["errors"][0]["loc"] == ["query", parameter]


def test_a_plain_get_is_still_a_page(store_url):
    with served(store_url) as client:
        client.post("/todo", json={"title": "a"})
        response = client.get("/todo", headers={"Accept": "application/json"})
        assert response.code == 200
        assert response.json()["total"] == 1


def test_pre_get_list_scopes_a_feed_like_a_list(store_url):
    registry = Registry()
    registry.resource(Todo)

    @registry.on("pre_get_list", sender=Todo)
    def only_mine(sender, arguments, handler):
        user = handler.request.headers.get("X-User")
        if user is None:
            raise HTTPError(403, "Who are you?")
        arguments["filters"]["owner"] = user

    with served(store_url, registry) as client:
        with feed(client) as refused:
            assert refused.status == 403
        with feed(client, headers={"X-User": "ann"}) as ann, feed(client, "/todo?owner=bob",
                                                                    headers={"X-User": "ann"}) as sneaky:
            ann.wait_ready()
            sneaky.wait_ready()
            client.post("/todo", json={"title": "bob's", "owner": "bob"})
            theirs = client.post("/todo", json={"title": "ann's", "owner": "ann"}).json()
            stolen = client.post("/todo", json={"title": "taken", "owner": "ann"}).json()
            client.patch(f"/todo/{stolen['id']}", json={"owner": "bob"})
            events = ann.take(3)
            assert [(e.type, e.data["doc"]["id"]) for e in events] == [
                ("created", theirs["id"]), ("created", stolen["id"]), ("updated", stolen["id"])]
            assert events[2].data["matches"] is False  # it left ann's view
            # the receiver replaced the client's owner filter: ann sees only ann's, as in a list
            assert [e.data["doc"]["owner"] for e in sneaky.take(2)] == ["ann", "ann"]
            assert client.get("/todo?owner=bob", headers={"X-User": "ann"}).json()["total"] == 1


def test_heartbeats_keep_the_stream_alive_and_the_position_fresh(store_url):
    with served(store_url, feed_heartbeat=0.05) as client, feed(client, "/todo?done=true") as stream:
        ready = stream.wait_ready()
        client.post("/todo", json={"title": "not for this feed"})
        while stream.last_id == ready.id:  # an id-only block moves Last-Event-ID past the skipped change
            assert stream.next(quiet=True).type == ""
        assert int(stream.last_id) > int(ready.id)
        assert "ping" in stream.comments


def test_shutdown_ends_streams(store_url):
    app = make_app(store_url)
    with serve(app) as client:
        stream = feed(client)
        stream.wait_ready()
    assert stream.next() is None  # the server ended the response cleanly
    assert stream.ended
    stream.close()


def test_feeds_can_be_turned_off(sqlite_url):
    with served(sqlite_url, feeds=False) as client, feed(client) as stream:
        assert stream.status == 200
        assert stream.response_headers["content-type"] == "application/json"
        assert client.get("/todo/_changes").code == 404


def test_subscribers_do_not_see_other_collections(store_url):
    registry = Registry()
    registry.resource(Todo)

    @registry.resource
    class Note(BaseModel):
        text: str

    with served(store_url, registry) as client, feed(client, "/note") as stream:
        stream.wait_ready()
        client.post("/todo", json={"title": "a"})
        note = client.post("/note", json={"text": "b"}).json()
        assert stream.next().data["doc"] == note


def test_a_slow_consumer_is_disconnected_without_slowing_others(sqlite_url):
    with served(sqlite_url, feed_buffer=16 * 1024) as client:
        slow = feed(client, receive_buffer=4096)
        slow.wait_ready()
        fast = feed(client)
        fast.wait_ready()
        received: list = []

        def read_fast():
            while (event := fast.next()) is not None:
                received.append(event)
                if event.type == "created" and event.data["doc"]["title"] == "last":
                    return

        reader = threading.Thread(target=read_fast)
        reader.start()
        blob = "x" * 32 * 1024
        posted = 0
        feeds = client.app.runtime.feeds
        while feeds.overflows == 0 and posted < 3000:
            assert client.post("/todo", json={"title": str(posted), "blob": blob}).code == 201
            posted += 1
        assert feeds.overflows == 1
        client.post("/todo", json={"title": "last"})
        reader.join(60)
        assert [e.data["doc"]["title"] for e in received] == [str(i) for i in range(posted)] + ["last"]

        events = slow.rest()  # what was queued before the cut, then the reason
        assert events[-1].type == "overflow"
        assert events[-1].data["event_id"] == int(events[-2].id)
        assert "behind" in events[-1].data["detail"]
        assert slow.ended
        slow.close()

        with feed(client, headers={"Last-Event-ID": events[-2].id}) as again:  # it resumes
            rest = []
            while (event := again.next()).type != "ready":
                rest.append(event.data["doc"]["title"])
        titles = [e.data["doc"]["title"] for e in events[:-1] if e.type == "created"] + rest
        assert titles == [str(i) for i in range(posted)] + ["last"]
        fast.close()


def test_a_vanished_client_is_forgotten(store_url):
    with served(store_url) as client:
        stream = feed(client)
        stream.wait_ready()
        feeds = client.app.runtime.feeds
        assert feeds.count == 1
        stream.close()
        client.post("/todo", json={"title": "x"})  # writes go on
        with feed(client) as other:  # and the feed with them
            other.wait_ready()
            assert feeds.count >= 1
            client.post("/todo", json={"title": "y"})
            while (event := other.next()).data["doc"]["title"] != "y":
                assert event.data["doc"]["title"] == "x"  # on MongoDB, x may come after ready
            while feeds.count != 1:  # the closed one is noticed (on the next read or write)
                client.post("/todo", json={"title": "z"})
                other.next()


def test_auth_applies_and_a_signed_out_user_loses_the_feed(sqlite_url):
    from bzzlite.auth import Auth, AuthProvider

    class Fake(AuthProvider):
        name = "fake"

        async def authenticate(self, access_token):
            return {"id": "u1"} if access_token == "good" else None

    registry = Registry()
    registry.resource(Todo)
    auth = Auth(secret="s" * 32, providers=[Fake()])
    with served(sqlite_url, registry, auth=auth, feed_heartbeat=0.05) as client:
        with feed(client) as anonymous:
            assert anonymous.status == 401
        signin = client.post("/auth/signin/", json={"access_token": "good", "provider": "fake"})
        token = signin.headers["Set-Cookie"].split("=", 1)[1].split(";", 1)[0]
        bearer = {"Authorization": f"Bearer {token}"}
        with feed(client, headers=bearer) as stream:
            stream.wait_ready()
            doc = client.post("/todo", json={"title": "a"}, headers=bearer).json()
            assert stream.next().data["doc"] == doc
            assert client.post("/auth/signout/", headers=bearer).code == 200
            events = stream.rest()  # heartbeats re-check the session: the stream ends
            assert events[-1].type == "unauthorized" and events[-1].data["status"] == 401


# -- the hub's decisions, in memory ---------------------------------------------------------------


class _Recorder(Subscription):
    """A subscriber that keeps what it is handed."""

    def __init__(self) -> None:
        registry = Registry()
        super().__init__(registry.add_resource(Todo), (), None)
        self.delivered: list[int] = []
        self.overflowed: str | None = None

    def deliver(self, events: list[Event]) -> None:
        self.delivered += [e.seq for e in events]

    def overflow(self, reason: str) -> None:
        self.overflowed = reason


def _events(*seqs: int) -> list[Event]:
    return [Event(seq, "created", b"{}") for seq in seqs]


def test_a_subscriber_is_handed_each_change_once_in_order() -> None:
    sub = _Recorder()
    sub.offer(_events(1, 2))
    sub.offer(_events(2, 3))  # what it has is not handed again, what it has not is
    assert sub.delivered == [1, 2, 3] and sub.last == 3
    sub.offer(_events(3))
    sub.offer(_events(1))
    assert sub.delivered == [1, 2, 3] and sub.last == 3


def test_a_subscriber_replaying_holds_a_bounded_backlog() -> None:
    from bzzlite.feeds import hub

    sub = _Recorder()
    sub.backlog = []
    sub.offer(_events(*range(1, hub._MAX_BACKLOG + 1)))
    assert sub.overflowed is None and sub.delivered == []  # held, up to the limit itself
    sub.offer(_events(hub._MAX_BACKLOG + 1))
    assert sub.overflowed == "too many changes arrived while replaying"


class _Endpoint:
    def __init__(self, user: dict | None, *, attribute: bool = True) -> None:
        self.handler = type("Handler", (), {})()
        if attribute:
            self.handler._current_user = user
        self.ended = False

    def unauthorized(self) -> None:
        self.ended = True


def test_the_recheck_ends_exactly_the_streams_of_users_signed_out(caplog: pytest.LogCaptureFixture) -> None:
    asked: list[Any] = []

    class Policy:
        async def still_signed_in(self, handler: Any, user: dict) -> bool:
            asked.append(user["id"])
            if user["id"] == "away":
                raise OSError("the revocation store is away")
            return user["id"] != "out"

    registry = Registry()
    registry.resource(Todo)
    runtime = App(registry, db="sqlite:///:memory:").runtime
    feeds = Feeds(runtime)
    runtime.auth = Policy()
    endpoints = [_Endpoint(None), _Endpoint(None, attribute=False), _Endpoint({"id": "away"}),
                 _Endpoint({"id": "in"}), _Endpoint({"id": "out"})]
    for endpoint in endpoints:
        feeds.opened(endpoint)
    with caplog.at_level(logging.WARNING, logger="bzzlite.feeds"):
        asyncio.run(feeds._recheck_users())
    assert asked == ["away", "in", "out"]  # anonymous streams are not asked about
    assert [e.ended for e in endpoints] == [False, False, False, False, True]
    assert [r.getMessage() for r in caplog.records] == [
        "cannot re-check a feed subscriber's session: the revocation store is away"]


def test_a_reset_tells_every_subscriber_why_and_from_where() -> None:
    registry = Registry()
    spec = registry.add_resource(Todo)
    then = "; reload, then follow from this event"
    for doc, reason in (({"reason": "the journal was trimmed"}, f"changes were lost: the journal was trimmed{then}"),
                        ({}, f"changes were lost: {then}")):
        event = Decoded(spec, Change(7, spec.path, "reset", "", doc)).event_for((), None)
        assert (event.seq, event.type) == (7, "reset")
        assert json.loads(event.body) == {"type": "reset", "event_id": 7, "reason": reason}


def test_an_event_carries_the_time_of_its_commit_when_known() -> None:
    registry = Registry()
    spec = registry.add_resource(Todo)
    timed = Decoded(spec, Change(3, spec.path, "created", "a" * 24, {"title": "t"}, at="2026-01-02T03:04:05Z"))
    assert json.loads(timed.event_for((), None).body)["at"] == "2026-01-02T03:04:05Z"
    untimed = Decoded(spec, Change(4, spec.path, "created", "a" * 24, {"title": "t"}))
    assert "at" not in json.loads(untimed.event_for((), None).body)


class _Member(Subscription):
    def __init__(self, spec: Any, conditions: Any = (), reach: Any = (), heard: list | None = None) -> None:
        super().__init__(spec, conditions, None, reach)
        self.heard = [] if heard is None else heard
        self.ended = False

    def deliver(self, events: list[Event]) -> None:
        self.heard.append(self)

    def end(self) -> None:
        self.ended = True


def _hub() -> tuple[Feeds, Any]:
    registry = Registry()
    registry.resource(Todo)
    runtime = App(registry, db="sqlite:///:memory:").runtime
    feeds = Feeds(runtime)
    return feeds, feeds.specs["/todo"]


def _query(spec: Any, **filters: str) -> Any:
    return build_query(spec.schema, parse_arguments(spec.schema, {k: [v] for k, v in filters.items()})).conditions


def test_subscribers_are_grouped_by_their_whole_query() -> None:
    feeds, spec = _hub()
    a, a_too, b = _Member(spec, _query(spec, title="a")), _Member(spec, _query(spec, title="a")), \
        _Member(spec, _query(spec, title="b"))
    mine = _Member(spec, _query(spec, title="a"), reach=_query(spec, owner="ann"))  # the same query, another reach
    for sub in (a, a_too, b, mine):
        feeds._add(sub)
    assert len(feeds.groups["/todo"]) == 3
    asyncio.run(feeds.dispatch([Change(1, "/todo", "created", "a" * 24, {"title": "a", "owner": "bob"})]))
    assert (a.heard, a_too.heard, b.heard, mine.heard) == ([a], [a_too], [], [mine])


def test_a_large_audience_lets_other_work_run_between_slices() -> None:
    """Delivery hands the event to 500 subscribers, then lets the event loop run other work."""
    feeds, spec = _hub()
    order: list[Any] = []
    for _ in range(1000):
        feeds._add(_Member(spec, heard=order))

    async def main() -> None:
        async def other() -> None:
            order.append("other")

        task = asyncio.create_task(other())
        await feeds.dispatch([Change(1, "/todo", "created", "a" * 24, {"title": "t"})])
        await task

    asyncio.run(main())
    assert len(order) == 1001 and order.index("other") == 500


def test_a_subscriber_that_fails_is_disconnected_and_the_others_served(caplog: pytest.LogCaptureFixture) -> None:
    feeds, spec = _hub()

    class Failing(_Member):
        def deliver(self, events: list[Event]) -> None:
            raise RuntimeError("socket gone")

    failing, fine = Failing(spec), _Member(spec, _query(spec, done="false"))
    feeds._add(failing)
    feeds._add(fine)
    with caplog.at_level(logging.ERROR, logger="bzzlite.feeds"):
        asyncio.run(feeds.dispatch([Change(1, "/todo", "created", "a" * 24, {"title": "t"})]))
    assert failing.ended and not fine.ended and fine.heard == [fine]
    assert [r.getMessage() for r in caplog.records] == ["delivering to a feed subscriber failed; disconnecting it"]
