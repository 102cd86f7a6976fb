"""The `bzzlite_mongo` stack's database: the test suite's MongoDB stand-in, loaded with the shared data.

No `mongod` installs on these machines (shared/notes/mongodb-in-tests.md); the one MongoDB
wire-protocol server that does is nx-27017, a server over SQLite that the tests run through
`tests/mongo_standin/launcher.py`. The stack serves bzzlite's MongoDB store against it, so
what it measures is the stand-in as much as the store: the report gives the bzzlite server's
own CPU per request (the store's driver, BSON and bzzlite: what a real MongoDB would leave the
app to pay too) and, apart, the stand-in's CPU per request, never added to it. A real MongoDB
answers in a fraction of the stand-in's time and CPU, so the stand-in's req/s and latency say
nothing of MongoDB's.

The documents are loaded already marked by the model (what `bzzlite migrate` writes): migrate
itself reads and rewrites by `_id` ranges, which the stand-in evaluates in Python over the whole
collection, and takes minutes at 10,000 documents.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from bench.data import Dataset
from bench.server import REPO, ServerFailed, free_port, pinned

DATABASE = "bench"
_START_TIMEOUT = 30.0


def _mark() -> dict[str, str]:
    """The mark bzzlite's migrate would write on the bench model's documents (this checkout's)."""
    from bench.servers.bzz_app import Item, registry
    from bzzlite.models.migrations import MARK

    return {MARK: registry.spec_for(Item).versions.mark}


@contextmanager
def standin(data: Dataset, directory: Path, log: Path, cpu: int | None) -> Iterator[tuple[str, int]]:
    """The stand-in on a free port, holding the data set in `DATABASE`: yields (URL, its pid).

    Raises:
        ServerFailed: the stand-in did not start, or refused the data.
    """
    from bson import ObjectId
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    shutil.rmtree(directory, ignore_errors=True)  # fresh data for every (rep, pinning)
    directory.mkdir(parents=True)
    port = free_port()
    command = [sys.executable, "-m", "tests.mongo_standin.launcher", "--port", str(port),
               "--data-dir", str(directory), "--log-file", str(log)]
    proc = subprocess.Popen(pinned(command, cpu), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServerFailed(f"the MongoDB stand-in did not start (log: {log})")
            time.sleep(0.05)
        url = f"mongodb://127.0.0.1:{port}/{DATABASE}"
        mark = _mark()
        with sqlite3.connect(data.path) as db:
            rows = db.execute("SELECT id, v, doc FROM item").fetchall()
        documents = [{"_id": ObjectId(i), "_v": v, **orjson.loads(doc), **mark} for i, v, doc in rows]
        try:
            with MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
                client[DATABASE]["item"].insert_many(documents)
        except PyMongoError as exc:
            raise ServerFailed(f"the MongoDB stand-in refused the data: {str(exc)[:200]}") from exc
        yield url, proc.pid
    finally:
        _stop(proc)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the stand-in by its pid, SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
