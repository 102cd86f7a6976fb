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
