"""The time budget of a list query, and SQLite work off the event loop.

SQLite: a query past its budget answers 503 with Retry-After, and its work stops (the read
connections are free again at once); requests by id are answered while a slow query runs.
MongoDB: the budget reaches the server as maxTimeMS.
"""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
import threading
import time

import orjson
import pytest
from pydantic import BaseModel

from bzzlite import App, Registry
from bzzlite.models.ids import new_id
from bzzlite.stores.sqlite import READERS
from bzzlite.testing import serve

ROWS = 40_000
TAGS = 120  # a list filter walks every member of every document: a slow query without an index


class Slow(BaseModel):
    name: str
    tags: list[str] = []


class Free(BaseModel):
    name: str
    tags: list[str] = []


def fill(path: str, tables: list[str]) -> str:
    """Write ROWS documents into each table, in the store's own layout; return one id."""
    first = ""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for table in tables:
            conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, v INTEGER NOT NULL, doc TEXT NOT NULL) "
                         "WITHOUT ROWID")
            rows = [(new_id(), orjson.dumps({"name": f"n{i}", "tags": [f"t{i}-{j}" for j in range(TAGS)]}).decode())
                    for i in range(ROWS)]
            conn.executemany(f"INSERT INTO {table} (id, v, doc) VALUES (?, 1, ?)", rows)
            first = rows[0][0]
        conn.commit()
    return first


@pytest.fixture
def slow_app(tmp_path):
    """``/slow`` bounded by the app's 0.05 s budget, ``/free`` without one; both hold ROWS documents."""
    path = tmp_path / "budget.db"
    first = fill(str(path), ["slow", "free"])
    registry = Registry()
    registry.resource(Slow)
    registry.resource(query_timeout=0)(Free)
    with serve(App(registry, db=f"sqlite:///{path}", query_timeout=0.05, feeds=False)) as client:
        yield client, first


def timed_get(port: int, path: str) -> tuple[int, float, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    conn.request("GET", path)
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    return reply.status, time.monotonic() - started, dict(reply.getheaders()), body


def test_a_query_past_its_budget_answers_503_with_retry_after_and_stops(slow_app):
    client, _ = slow_app
    port = int(client.base_url.rsplit(":", 1)[1])
    status, full, _, body = timed_get(port, "/free?tags=none")  # no budget: runs to the end
    assert status == 200 and orjson.loads(body)["total"] == 0
    assert full > 0.25, f"the unbounded query took {full:.3f} s: too fast to show a budget of 0.05 s"

    status, took, headers, body = timed_get(port, "/slow?tags=none")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"].startswith("application/problem+json")
    problem = orjson.loads(body)
    assert problem["status"] == 503 and "budget of 0.05 s" in problem["detail"]
    assert took < full / 2

    # As many slow queries as there are read connections, all stopped: were their work still
    # running, a quick list query would wait for a free connection for about `full` seconds.
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(timed_get(port, "/slow?tags=none")[0]))
               for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [503] * READERS
    status, quick, _, body = timed_get(port, "/slow?per_page=1&after=")
    assert status == 200 and len(orjson.loads(body)["items"]) == 1
    assert quick < full / 3


def test_reads_by_id_are_answered_while_a_slow_query_runs(slow_app):
    client, first = slow_app
    port = int(client.base_url.rsplit(":", 1)[1])
    _, full, _, _ = timed_get(port, "/free?tags=none")
    slow = threading.Thread(target=timed_get, args=(port, "/free?tags=none"))
    slow.start()
    time.sleep(full / 10)  # the slow query is under way in a reader thread
    status, took, _, _ = timed_get(port, f"/free/{first}")
    still_running = slow.is_alive()
    slow.join(30)
    assert status == 200
    assert still_running and took < full / 3, (took, full)


def test_the_budget_is_a_setting(monkeypatch, tmp_path):
    registry = Registry()
    registry.resource(query_timeout=7)(Slow)
    monkeypatch.setenv("BZZLITE_QUERY_TIMEOUT", "0.5")
    app = App(registry, db=f"sqlite:///{tmp_path / 'a.db'}")
    store, spec = app.runtime.store, registry.spec_for(Slow)
    assert app.runtime.settings.query_timeout == 0.5
    assert store.budget(spec) == 7
    spec.query_timeout = None
    assert store.budget(spec) == 0.5
    monkeypatch.delenv("BZZLITE_QUERY_TIMEOUT")
    assert App(Registry(), db="sqlite:///:memory:").runtime.store.query_timeout == 3.0


def test_an_in_memory_store_is_bounded_too():
    registry = Registry()
    registry.resource(Slow)
    with serve(App(registry, db="sqlite:///:memory:", query_timeout=0.01, feeds=False)) as client:
        tags = [f"t{j}" for j in range(TAGS)]
        for _ in range(40):
            assert client.post("/slow", json=[{"name": "n", "tags": tags}] * 250).code == 201
        response = client.get("/slow?tags=none")
        assert response.code == 503 and response.headers["Retry-After"] == "1"
        assert client.get("/slow?per_page=1&after=").code == 200  # the connection is usable again


# -- MongoDB: maxTimeMS -----------------------------------------------------------------------------

pymongo_monitoring = pytest.importorskip("pymongo.monitoring")


class _Commands(pymongo_monitoring.CommandListener):
    """Records the commands sent to MongoDB while ``recording`` (listeners cannot be removed)."""

    def __init__(self) -> None:
        self.recording: list[dict] | None = None

    def started(self, event) -> None:
        if self.recording is not None:
            self.recording.append(dict(event.command))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


COMMANDS = _Commands()
pymongo_monitoring.register(COMMANDS)


def test_mongodb_gets_the_budget_as_max_time_ms(mongo_db_url):
    registry = Registry()
    registry.resource(Slow)
    registry.resource(query_timeout=1.5)(Free)
    with serve(App(registry, db=mongo_db_url, query_timeout=0.25, feeds=False)) as client:
        assert client.post("/slow", json={"name": "a"}).code == 201
        COMMANDS.recording = []
        try:
            assert client.get("/slow?name=a").json()["total"] == 1
            assert client.get("/free?name=a").json()["total"] == 0
            sent = COMMANDS.recording
        finally:
            COMMANDS.recording = None
    budgets = {(c.get("find") or c.get("aggregate"), "find" in c): c.get("maxTimeMS") for c in sent
               if "find" in c or "aggregate" in c}
    assert budgets == {("slow", True): 250, ("slow", False): 250, ("free", True): 1500, ("free", False): 1500}


@pytest.mark.real_mongo("the stand-in does not enforce maxTimeMS")
def test_mongodb_stops_a_query_past_its_budget(mongo_db_url):
    registry = Registry()
    registry.resource(Slow)
    with serve(App(registry, db=mongo_db_url, query_timeout=0.001, feeds=False)) as client:
        tags = [f"t{j}" for j in range(TAGS)]
        for _ in range(40):
            assert client.post("/slow", json=[{"name": "n", "tags": tags}] * 250).code == 201
        response = client.get("/slow?name__contains=zzz")
        assert response.code == 503 and response.headers["Retry-After"] == "1"
