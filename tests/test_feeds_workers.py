"""Feeds across processes: ``serve --workers 2`` on one SQLite file (or MongoDB), a change made
through either worker reaches subscribers of both, and stopping ends the streams cleanly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from bzzlite.feeds.testing import EventStream
from tests._processes import serve_workers, stop

APP = '''
import os
from pydantic import BaseModel
from bzzlite import App, Registry

registry = Registry()


@registry.resource
class Todo(BaseModel):
    title: str


@registry.on("pre_get_list", sender=Todo)
def which_worker_lists(sender, arguments, handler):
    handler.set_header("X-Worker", str(os.getpid()))


@registry.on("post_create_instance", sender=Todo)
def which_worker_creates(sender, instance, handler):
    handler.set_header("X-Worker", str(os.getpid()))


app = App(registry)
'''


@pytest.fixture
def store_url(store_url):
    if store_url.startswith("mongodb") and importlib.util.find_spec("bzzlite.feeds.mongo") is None:
        pytest.skip("the MongoDB journal is not built yet")
    return store_url


def post(port: int, body: dict) -> tuple[int, dict, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/todo", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, json.loads(reply.read()), reply.headers["X-Worker"]


def start(tmp_path: Path, db: str, workers: int = 2) -> tuple[subprocess.Popen, int]:
    (tmp_path / "feedapp.py").write_text(APP)
    return serve_workers(tmp_path, "feedapp.py:app", db, workers=workers, timeout=20)


def test_a_change_through_either_worker_reaches_subscribers_of_both(tmp_path, store_url):
    db = store_url if store_url.startswith("mongodb") else f"sqlite:///{tmp_path}/feeds.db"
    proc, port = start(tmp_path, db)
    client = SimpleNamespace(host="127.0.0.1", port=port)
    streams: dict[str, EventStream] = {}  # one stream per worker pid
    try:
        for _ in range(100):  # the kernel picks the worker that accepts each connection
            stream = EventStream(client, "/todo")
            assert stream.status == 200
            worker = stream.response_headers["x-worker"]
            if worker in streams:
                stream.close()
            else:
                stream.wait_ready()
                streams[worker] = stream
            if len(streams) == 2:
                break
        assert len(streams) == 2, "every stream landed on the same worker"

        created, writers = [], set()
        while len(writers) < 2 and len(created) < 200:
            code, doc, worker = post(port, {"title": f"t{len(created)}"})
            assert code == 201
            created.append(doc)
            writers.add(worker)
        assert writers == set(streams), "every write landed on the same worker"

        for stream in streams.values():
            events = stream.take(len(created))
            assert [e.data["doc"] for e in events] == created  # all of them, in commit order
            ids = [int(e.id) for e in events]
            assert ids == sorted(ids)
        assert stop(proc) == 0
        for stream in streams.values():  # stopping ended the streams cleanly
            assert stream.next() is None and stream.ended
    finally:
        for stream in streams.values():
            stream.close()
        if proc.poll() is None:
            stop(proc)
