"""pytest plugin: a MongoDB for the test session.

TEST INFRASTRUCTURE ONLY. Load it with ``pytest_plugins = ["tests.mongo_standin.fixture"]``.

* ``BZZLITE_TEST_MONGO_URL`` set  -> tests run against that real MongoDB.
* otherwise                        -> a stand-in (nx-27017 wrapped by ``launcher.py``) is
  started on a free loopback port for the session and stopped at its end, by pid.

Fixtures: ``mongo_url`` (session), ``mongo_db_url`` (fresh database per test).
Helpers:  ``is_standin()``, ``start_standin(data_dir, port=None)``, ``stop_standin(proc)``.
Marker:   ``@pytest.mark.real_mongo("why")`` -> skipped on the stand-in, with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ENV_URL = "BZZLITE_TEST_MONGO_URL"
START_TIMEOUT = 15.0  # seconds until the stand-in must answer a ping
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
REPO_ROOT = Path(__file__).resolve().parents[2]


def is_standin() -> bool:
    """True when the tests run against the stand-in, not a real MongoDB."""
    return not os.environ.get(ENV_URL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _ping(url: str) -> None:
    from pymongo import MongoClient

    with MongoClient(url, serverSelectionTimeoutMS=5000, connectTimeoutMS=2000) as c:
        c.admin.command("ping")


def _log_tail(log_file: Path, n: int = 20) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_standin(
    data_dir: str | os.PathLike, port: int | None = None
) -> tuple[str, subprocess.Popen]:
    """Start the stand-in on 127.0.0.1 (a free port unless given), wait for a ping.

    Restarting with the same ``data_dir`` and ``port`` after ``stop_standin``
    serves the same data at the same URL. Returns ``(url, process)``.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3  # a free port can be taken in between
    for attempt in range(attempts):
        p = port if port is not None else _free_port()
        log_file = data_dir / f"standin-{p}.log"
        with open(log_file, "ab") as log:  # the child keeps its own copy of the fd
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.mongo_standin.launcher", "--port", str(p),
                 "--data-dir", str(data_dir), "--log-file", str(log_file)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None and not _accepts(p):
            time.sleep(0.02)
        url = f"mongodb://127.0.0.1:{p}"
        if proc.poll() is None and _accepts(p):
            try:
                _ping(url)
                return url, proc
            except Exception as exc:  # noqa: BLE001 - reported below
                why = f"no ping answer: {exc}"
        else:
            why = f"exit code {proc.poll()}" if proc.poll() is not None else "timed out"
        stop_standin(proc)
        if attempt == attempts - 1:
            raise RuntimeError(
                f"MongoDB stand-in did not start on port {p} within {START_TIMEOUT}s "
                f"({why}); log {log_file}:\n{_log_tail(log_file)}"
            )
    raise AssertionError("unreachable")


def stop_standin(proc: subprocess.Popen) -> None:
    """Stop a stand-in by its process id: SIGTERM, then SIGKILL after a timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory):
    """URL of the session's MongoDB (real one from the env, else the stand-in)."""
    if not is_standin():
        yield os.environ[ENV_URL].rstrip("/")
        return
    url, proc = start_standin(tmp_path_factory.mktemp("mongo-standin"))
    try:
        yield url
    finally:
        stop_standin(proc)


@pytest.fixture
def mongo_db_url(mongo_url):
    """URL naming a fresh, unique database: tests never see each other's data."""
    scheme, rest = mongo_url.split("://", 1)
    hosts, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if path and "@" in hosts and "authsource=" not in query.lower():
        query = "&".join(filter(None, [f"authSource={path}", query]))  # keep auth db
    return f"{scheme}://{hosts}/t_{uuid.uuid4().hex}" + (f"?{query}" if query else "")


def pytest_report_header(config):
    if is_standin():
        return (f"mongo: nx-27017 stand-in (tests.mongo_standin); set {ENV_URL} "
                "to run against a real MongoDB")
    return f"mongo: real MongoDB from {ENV_URL}"


def pytest_configure(config):
    chars = getattr(config.option, "reportchars", None)
    if is_standin() and chars is not None and not {"s", "N", "a", "A"} & set(chars):
        config.option.reportchars = chars + "s"  # print why real_mongo tests were skipped
    config.addinivalue_line(
        "markers",
        "real_mongo(reason): needs a real MongoDB (set BZZLITE_TEST_MONGO_URL); "
        "skipped on the stand-in",
    )


def pytest_collection_modifyitems(config, items):
    if not is_standin():
        return
    for item in items:
        marker = item.get_closest_marker("real_mongo")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            why = why or "not supported by the stand-in"
            item.add_marker(pytest.mark.skip(reason=f"needs a real MongoDB (set {ENV_URL}): {why}"))
