"""Attacks, not uses: each test reproduces one found by a red-team run (issue #20) and checks
that it no longer works. Hostile input on both stores, aborted uploads, sign-out across
workers, a stampede of first feed subscribers on MongoDB."""

from __future__ import annotations

import concurrent.futures
import gc
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import BaseModel

from bzzlite import App, Registry
from bzzlite.feeds.testing import EventStream
from bzzlite.handlers.base import BaseHandler
from bzzlite.testing import serve

ROOT = Path(__file__).resolve().parents[1]


class Item(BaseModel):
    name: str
    n: int = 0
    tags: list[str] = []
    extra: dict = {}


def app_for(url: str, **options) -> App:
    registry = Registry()
    registry.resource(Item)
    return App(registry, db=url, **options)


def assert_problem(response, status: int) -> dict:
    assert response.code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json()


# -- 50 simultaneous first subscribers on MongoDB ------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("bzzlite.feeds.mongo") is None, reason="no MongoDB journal")
def test_simultaneous_first_feed_subscribers_start_one_journal_leader(mongo_db_url, caplog):
    caplog.set_level(logging.INFO, logger="bzzlite.feeds")
    with serve(app_for(mongo_db_url)) as client:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:  # every EventSource reconnecting at once
            streams = list(pool.map(lambda _: EventStream(client, "/item", timeout=30), range(50)))
        try:
            assert all(s.status == 200 for s in streams)
            for stream in streams:
                stream.wait_ready()
            leaders = [r for r in caplog.records if r.getMessage().startswith("leading the change journal")]
            assert len(leaders) == 1
            created = [client.post("/item", json={"name": f"w{i}"}).json() for i in range(3)]
            for stream in streams:
                assert [e.data["doc"] for e in stream.take(3)] == created  # every write, once, in order
        finally:
            for stream in streams:
                stream.close()


# -- sign-out across `serve --workers 2` ----------------------------------------------------

AUTH_APP = '''
import os
from pydantic import BaseModel
from bzzlite import App, Registry
from bzzlite.auth import Auth, GoogleProvider

registry = Registry()


@registry.resource
class Note(BaseModel):
    text: str


@registry.on("pre_get_list", sender=Note)
def which_worker(sender, arguments, handler):
    handler.set_header("X-Worker", str(os.getpid()))


app = App(registry, auth=Auth(providers=[GoogleProvider(userinfo_url=os.environ["FAKE_USERINFO"])]))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def start_workers(tmp_path: Path, db: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    (tmp_path / "authapp.py").write_text(AUTH_APP)
    port = free_port()
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bzzlite", "serve", "authapp.py:app", "--port", str(port), "--db", db,
         "--workers", "2", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            if http(port, "GET", "/_health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sign_out_holds_on_every_worker_by_default(tmp_path, store_url):
    from bzzlite.auth.testing import fake_provider

    db = store_url if store_url.startswith("mongodb") else f"sqlite:///{tmp_path}/data.db"
    with fake_provider() as fake:
        fake.tokens["ann-token"] = {"sub": "ann-1", "email": "ann@example.com", "name": "Ann"}
        proc, port = start_workers(tmp_path, db, {"FAKE_USERINFO": fake.url("/userinfo"),
                                                  "BZZLITE_AUTH_SECRET": "s" * 40})
        try:
            code, headers, _ = http(port, "POST", "/auth/signin/", b'{"access_token": "ann-token", "provider": "google"}')
            assert code == 200
            token = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            bearer = {"Authorization": f"Bearer {token}"}
            workers = set()
            for _ in range(100):  # the kernel picks the worker: until both have served the token
                code, headers, _ = http(port, "GET", "/note", headers=bearer)
                assert code == 200
                workers.add(headers["X-Worker"])
                if len(workers) == 2:
                    break
            assert len(workers) == 2, "every request landed on the same worker"
            assert http(port, "POST", "/auth/signout/", headers=bearer)[0] == 200
            codes = [http(port, "GET", "/note", headers=bearer)[0] for _ in range(40)]
            assert codes == [401] * 40
            assert stop(proc) == 0
        finally:
            if proc.poll() is None:
                stop(proc)
