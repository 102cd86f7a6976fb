"""The command line: one-line errors, serving, graceful stop, workers, --db."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import asyncio
    from pydantic import BaseModel
    from bzzlite import App, Registry

    registry = Registry()

    @registry.resource
    class Thing(BaseModel):
        name: str

    @registry.on("pre_create_instance")
    async def slow(sender, arguments, handler):
        if arguments["data"].get("name") == "slow":
            await asyncio.sleep(1.0)

    app = App(registry=registry, db="sqlite:///from_app.db")
    not_an_app = 42
    """
)


#: subprocesses run from a temporary directory import this checkout, not an installed bzzlite
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, or one gone while its status is read, does not)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:  # FileNotFoundError, or ProcessLookupError (ESRCH) mid-read
        return False


def bzzlite(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bzzlite", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """``python -m bzzlite serve`` in a subprocess, stopped by its pid."""

    def __init__(self, cwd: Path, *extra: str, target: str = "app.py:app") -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bzzlite", "serve", target, "--port", str(self.port), "--log-level", "warning",
             *extra],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stderr.read()}")
            try:
                if request(self.port, "GET", "/_health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server did not start")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing.py:app", "no such file: missing.py"),
        ("missing_module:app", "no module named 'missing_module'"),
        ("app.py:nope", "has no attribute 'nope'"),
        ("app.py:not_an_app", "is a int, not a bzzlite App"),
        ("app.py", "expected MODULE:ATTR"),
        ("broken.py:app", "error while importing broken.py: ZeroDivisionError: division by zero (broken.py:2)"),
        ("badimport.py:app", "error while importing badimport.py: ModuleNotFoundError: No module named 'nosuchlib'"),
        ("misconfigured.py:app", "error while importing misconfigured.py: ConfigurationError"),
    ],
)
def test_bad_targets_give_one_line(project: Path, target: str, message: str) -> None:
    (project / "broken.py").write_text("import os\nx = 1 / 0\n")
    (project / "badimport.py").write_text("import nosuchlib\n")
    (project / "misconfigured.py").write_text(
        "from pydantic import BaseModel\nfrom bzzlite import Registry\nr = Registry()\n"
        "@r.resource\nclass A(BaseModel):\n    id: str\n"
    )
    for command in ("serve", "routes"):
        result = bzzlite(command, target, cwd=project)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert message in lines[0]
        assert "Traceback" not in result.stderr


#: ``python -m bzzlite`` as an editable install runs it: setuptools' finder comes after the path
#: finder, so a folder named ``bzzlite`` in the working directory is imported first, as a namespace
#: package. Here the finder serves this checkout (the venv's own editable install may be another's).
EDITABLE_RUN = textwrap.dedent(
    """
    import importlib.machinery, pathlib, runpy, sys
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(ROOT).resolve()]

    class Editable:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] != "bzzlite":
                return None
            return importlib.machinery.PathFinder.find_spec(
                name, [str(pathlib.Path(ROOT, *name.split(".")[:-1]))])

    sys.meta_path = [f for f in sys.meta_path if "Editable" not in type(f).__name__ + getattr(f, "__name__", "")]
    sys.meta_path.append(Editable)
    sys.argv = ["bzzlite", *ARGS]
    runpy.run_module("bzzlite", run_name="__main__", alter_sys=True)
    """
)


def test_a_checkout_named_bzzlite_in_the_working_directory_is_one_line(tmp_path: Path) -> None:
    """``python -m bzzlite`` from the folder above a checkout named ``bzzlite``: that folder (no
    ``__init__.py`` at its top) hides the installed package; say so instead of an ImportError."""
    (tmp_path / "bzzlite").mkdir()
    (tmp_path / "bzzlite" / "pyproject.toml").write_text("[project]\nname = 'bzzlite'\n")
    (tmp_path / "app.py").write_text(APP)
    script = EDITABLE_RUN.replace("ROOT", repr(str(ROOT)), 2).replace("*ARGS", '"routes", "app.py:app"')
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{tmp_path / 'bzzlite'}" in done.stderr and "hides the installed bzzlite" in done.stderr
    (tmp_path / "bzzlite").rename(tmp_path / "checkout")  # the same command, elsewhere, works
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0 and "/thing" in done.stdout, done.stderr


def test_bad_store_url_is_one_line(project: Path) -> None:
    result = bzzlite("serve", "app.py:app", "--db", "postgres://x", "--port", str(free_port()), cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bzzlite: error: unknown store URL 'postgres://x': use sqlite:///path/to/file.db, sqlite:///:memory: "
        "or mongodb://host:port/dbname"
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_sqlite_directory_is_one_line(project: Path, workers: str) -> None:
    # With --workers, checked once before forking: each worker would fail, be replaced and fail again.
    result = bzzlite("serve", "app.py:app", "--db", "sqlite:///no/such/dir/x.db", "--port", str(free_port()),
                     "--workers", workers, cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bzzlite: error: cannot open the store sqlite:///no/such/dir/x.db: the directory of no/such/dir/x.db "
        "does not exist"
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use(project: Path, workers: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = bzzlite("serve", "app.py:app", "--port", str(port), "--workers", workers, cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == f"bzzlite: error: port {port} on 127.0.0.1 is already in use"


def test_routes(project: Path) -> None:
    result = bzzlite("routes", "app.py:app", cwd=project)
    assert result.returncode == 0
    assert "GET,POST" in result.stdout and "/thing" in result.stdout
    assert "/thing/{id}" in result.stdout and "GET,PUT,PATCH,DELETE" in result.stdout


def test_dotted_module_target(project: Path) -> None:
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "api.py").write_text(APP)
    result = bzzlite("routes", "pkg.api:app", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "/thing" in result.stdout


def test_data_survives_restart_and_db_flag_wins(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///cli.db")
    code, body = request(server.port, "POST", "/thing", {"name": "kept"})
    assert code == 201
    created = json.loads(body)
    assert server.stop() == 0
    assert (project / "cli.db").exists()
    assert not (project / "from_app.db").exists()  # --db won over App(db=...)

    server = Server(project, "--db", "sqlite:///cli.db")
    try:
        code, body = request(server.port, "GET", f"/thing/{created['id']}")
        assert code == 200
        assert json.loads(body) == created
    finally:
        assert server.stop() == 0


def test_app_db_used_without_flag(project: Path) -> None:
    server = Server(project)
    try:
        assert request(server.port, "POST", "/thing", {"name": "x"})[0] == 201
    finally:
        assert server.stop() == 0
    assert (project / "from_app.db").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_finishes_requests_in_flight(project: Path, signum: int) -> None:
    server = Server(project, "--db", "sqlite:///g.db")
    result: dict[str, object] = {}

    def slow_create() -> None:
        result["reply"] = request(server.port, "POST", "/thing", {"name": "slow"})

    client = threading.Thread(target=slow_create)
    client.start()
    time.sleep(0.4)  # the request is now waiting in its pre_create receiver
    assert server.stop(signum) == 0
    client.join(10)
    code, body = result["reply"]  # type: ignore[misc]
    assert code == 201
    created = json.loads(body)

    server = Server(project, "--db", "sqlite:///g.db")  # and it was written
    try:
        assert request(server.port, "GET", f"/thing/{created['id']}")[0] == 200
    finally:
        server.stop()


def test_workers_share_the_port_and_all_stop(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///w.db", "--workers", "2")
    children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    codes = [request(server.port, "POST", "/thing", {"name": f"n{i}"})[0] for i in range(6)]
    assert codes == [201] * 6
    code, body = request(server.port, "GET", "/thing")
    assert json.loads(body)["total"] == 6
    assert server.stop() == 0
    assert not any(alive(int(pid)) for pid in children)


def test_workers_starting_reset_no_connection(project: Path) -> None:
    # Clients connecting while --workers start (a readiness probe, a load balancer) are either
    # refused or answered: before, the parent listened on the port until the workers were
    # forked, and the connections it had taken in were reset when it closed its socket.
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--port", str(port),
                             "--log-level", "warning", "--db", "sqlite:///w.db", "--workers", "2"],
                            cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    outcomes: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 20
        while outcomes.get("200", 0) < 50 and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"GET /_health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = sock.recv(64)
                outcome = answer[9:12].decode() if answer else "closed without an answer"
            except ConnectionRefusedError:
                outcome = "refused"
            except OSError as exc:
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert set(outcomes) <= {"refused", "200"} and outcomes.get("200") == 50, outcomes


def test_bad_worker_count(project: Path) -> None:
    result = bzzlite("serve", "app.py:app", "--workers", "0", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == "bzzlite: error: --workers must be 1 or more"


def test_reload_serves_the_changed_module(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///r.db", "--reload")
    try:
        assert request(server.port, "GET", "/thing")[0] == 200
        time.sleep(1.2)  # autoreload records modification times on its first check, 0.5 s after start
        source = project / "app.py"
        source.write_text(source.read_text().replace("class Thing", "class Widget"))
        deadline = time.monotonic() + 15
        code = 0
        while time.monotonic() < deadline:
            try:
                code = request(server.port, "GET", "/widget")[0]
            except OSError:  # the process is re-executing
                code = 0
            if code == 200:
                break
            time.sleep(0.1)
        assert code == 200
    finally:
        server.stop()
