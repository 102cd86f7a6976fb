"""docs/deployment.md's systemd unit and Dockerfile, run as written.

Neither systemd nor a container runtime is here, so each test does what they would: the
unit's ``Environment=`` and ``ExecStart=`` (its MongoDB replaced by the test's), then its
``ExecReload=`` and ``KillSignal``; the Dockerfile's ``ENV`` and ``CMD``, then its
``STOPSIGNAL``. What is substituted is said where it is: the interpreter's path, the port
(a free one) and, for the container, the listening address (tests listen on loopback only).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._processes import ROOT, free_port
from tests.test_cli import APP, request
from tests.test_process import alive, answers, children_of, wait_for

PAGE = (ROOT / "docs" / "deployment.md").read_text()
#: a deployed app names no store: the unit's BZZLITE_DB (or the default file) chooses it
DEPLOYED_APP = APP.replace('db="sqlite:///from_app.db"', "")


def block(language: str) -> str:
    found = re.findall(rf"```{language}\n(.*?)```", PAGE, re.DOTALL)
    assert len(found) == 1, f"one {language} block in docs/deployment.md"
    return found[0]


def start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env, "PYTHONPATH": path},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stopped(proc: subprocess.Popen[str], signum: int, timeout: float) -> int:
    proc.send_signal(signum)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_the_systemd_unit(tmp_path: Path, mongo_db_url: str) -> None:
    unit = block("ini")
    env = dict(re.findall(r"^Environment=(\w+)=(\S+)", unit, re.MULTILINE))
    assert env["BZZLITE_DB"].startswith("mongodb://")
    env["BZZLITE_DB"] = mongo_db_url  # the test's MongoDB stands in for the replica set
    command = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", unit, re.MULTILINE).group(1).replace("\\\n", " ")
    argv = shlex.split(command)
    assert argv[0] == "/srv/shop/venv/bin/python"
    argv[0] = sys.executable
    argv[argv.index("--port") + 1] = str(port := free_port())
    workers = int(argv[argv.index("--workers") + 1])
    (tmp_path / "app.py").write_text(DEPLOYED_APP)
    proc = start(argv, tmp_path, env)
    try:
        wait_for(lambda: answers(port) == 200 and len(children_of(proc.pid)) == workers, "the unit serves", 60)
        assert request(port, "POST", "/thing", {"name": "a"})[0] == 201
        assert stored_in_mongodb(mongo_db_url) == ["a"]
        old = children_of(proc.pid)
        reload = re.search(r"^ExecReload=(.*)$", unit, re.MULTILINE).group(1)  # systemctl reload
        subprocess.run(shlex.split(reload.replace("$MAINPID", str(proc.pid))), check=True)
        wait_for(lambda: not any(alive(pid) for pid in old) and len(children_of(proc.pid)) == workers,
                 "the workers are swapped", 60)
        assert request(port, "GET", "/thing")[0] == 200 and proc.poll() is None
        new = children_of(proc.pid)
    finally:
        kill = re.search(r"^KillSignal=(\w+)$", unit, re.MULTILINE).group(1)
        timeout = float(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
        assert stopped(proc, getattr(signal, kill), timeout) == 0
    assert not any(alive(pid) for pid in new)


def stored_in_mongodb(url: str) -> list[str]:
    import pymongo

    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        return [doc["name"] for doc in client.get_default_database()["thing"].find()]


def test_the_container(tmp_path: Path) -> None:
    dockerfile = block("dockerfile")
    env = dict(pair.split("=", 1) for pair in re.search(r"^ENV (.*)$", dockerfile, re.MULTILINE).group(1).split())
    assert env["BZZLITE_HOST"] == "0.0.0.0"
    env["BZZLITE_HOST"] = "127.0.0.1"  # tests listen on loopback only
    env["PORT"] = str(port := free_port())
    argv = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.MULTILINE).group(1))
    assert argv[0] == "python"
    argv[0] = sys.executable
    (tmp_path / "app.py").write_text(DEPLOYED_APP)
    proc = start(argv, tmp_path, env)
    try:
        wait_for(lambda: answers(port) == 200 and len(children_of(proc.pid)) == int(env["WEB_CONCURRENCY"]),
                 "PORT and WEB_CONCURRENCY are followed", 30)
        assert request(port, "POST", "/thing", {"name": "a"})[0] == 201
        assert (tmp_path / "bzzlite.db").exists()  # no BZZLITE_DB in the image: the default file
    finally:
        stop = re.search(r"^STOPSIGNAL (\w+)$", dockerfile, re.MULTILINE).group(1)
        assert stopped(proc, getattr(signal, stop), 30) == 0


@pytest.mark.parametrize("language", ["ini", "dockerfile", "nginx"])
def test_each_deployment_file_is_one_block(language: str) -> None:
    assert block(language)
