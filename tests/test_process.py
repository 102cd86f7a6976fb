"""Processes of ``serve``: SIGHUP reloads, orphans, --reload through errors, environment, --version,
closed pipes, --traceback and TLS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_cli import APP, ENV, Server, alive, bzzlite, free_port, request


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    return {int(p) for p in out}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def answers(port: int, path: str = "/_health") -> int:
    try:
        return request(port, "GET", path)[0]
    except OSError:
        return 0


def test_sighup_replaces_workers_without_dropping_a_request(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///hup.db", "--workers", "2")
    try:
        wait_for(lambda: len(children_of(server.proc.pid)) == 2, "two workers")
        old = children_of(server.proc.pid)
        codes: list[int | str] = []
        done = threading.Event()

        def traffic() -> None:
            while not done.is_set():
                try:
                    codes.append(request(server.port, "GET", "/thing")[0])
                except OSError as exc:  # a reset: recorded, so the assertion below sees it
                    codes.append(repr(exc))

        client = threading.Thread(target=traffic)
        client.start()
        time.sleep(0.3)
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: not any(alive(pid) for pid in old), "the old workers stop")
        time.sleep(0.3)
        done.set()
        client.join(10)
        new = children_of(server.proc.pid)
        assert len(new) == 2 and not new & old
        assert server.proc.poll() is None  # the parent lives on
        assert len(codes) > 10 and set(codes) == {200}  # every request during the swap answered
        assert request(server.port, "POST", "/thing", {"name": "after"})[0] == 201
    finally:
        assert server.stop() == 0
    assert not any(alive(pid) for pid in new)


@pytest.mark.parametrize("server_kind", ["httptools", "tornado"])
def test_reloads_drop_no_request_of_keep_alive_clients(project: Path, server_kind: str) -> None:
    # Pooled clients keep their connections to the old workers across a SIGHUP and send their
    # next requests on them whenever they like: an old worker must answer those (Connection:
    # close) rather than close the connection under a request, and close the ones that stay
    # idle without a reset.
    import http.client

    import httpx

    server = Server(project, "--db", "sqlite:///pool.db", "--workers", "2", "--http", server_kind)
    answered = [0]
    failures: list[str] = []
    done = threading.Event()

    def record(send: Callable[[], int]) -> None:
        while not done.is_set():
            try:
                status = send()
            except (OSError, httpx.HTTPError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                continue
            if status == 200:
                answered[0] += 1
            else:
                failures.append(f"status {status}")

    def pooled(pool: httpx.Client) -> None:
        record(lambda: pool.get("/thing").status_code)

    def persistent() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

        def send() -> int:
            try:
                connection.request("GET", "/thing")
                reply = connection.getresponse()
                reply.read()
            except BaseException:
                connection.close()
                raise
            if reply.will_close:
                connection.close()  # reconnects on the next request
            return reply.status

        record(send)
        connection.close()

    old: set[int] = set()
    during: list[int] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as pool:
            clients = [threading.Thread(target=pooled, args=(pool,)) for _ in range(2)]
            clients += [threading.Thread(target=persistent) for _ in range(2)]
            for client in clients:
                client.start()
            try:
                for _ in range(10):
                    wait_for(lambda: len(children_of(server.proc.pid)) == 2, "two workers")
                    old = children_of(server.proc.pid)
                    before = answered[0]
                    os.kill(server.proc.pid, signal.SIGHUP)
                    wait_for(lambda: not any(alive(pid) for pid in old), "the old workers stop")
                    during.append(answered[0] - before)
            finally:
                done.set()
                for client in clients:
                    client.join(20)
        assert failures == []
        assert all(during), during  # requests were answered through every swap
    finally:
        assert server.stop() == 0


def signal_pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` waits to be delivered to process ``pid`` (a stopped one, say)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    pending = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
               if line.startswith(("SigPnd:", "ShdPnd:"))}
    return any(mask >> (signum - 1) & 1 for mask in pending.values())


@pytest.mark.parametrize("end", ["sighup", "crash"])
def test_connections_queued_for_a_worker_that_ends_reach_the_next(project: Path, end: str) -> None:
    # The kernel queues each new connection for one worker's socket. When that worker ends (a
    # SIGHUP swap, a crash), what waits in its queue must reach the worker that replaces it:
    # were the socket closed, those connections would be reset. Frozen workers let connections
    # pile up in the queues.
    server = Server(project, "--db", "sqlite:///q.db", "--workers", "2")
    old: set[int] = set()
    clients: list[socket.socket] = []
    try:
        wait_for(lambda: len(children_of(server.proc.pid)) == 2, "two workers")
        old = children_of(server.proc.pid)
        for pid in old:
            os.kill(pid, signal.SIGSTOP)
        for _ in range(8):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=20))
            clients[-1].sendall(b"GET /thing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        if end == "sighup":
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_for(lambda: all(signal_pending(pid, signal.SIGTERM) for pid in old), "the old workers are told to stop")
            for pid in old:
                os.kill(pid, signal.SIGCONT)
        else:
            for pid in old:
                os.kill(pid, signal.SIGKILL)
        replies = []
        for sock in clients:
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            replies.append(reply.split(b"\r\n", 1)[0])
        assert replies == [b"HTTP/1.1 200 OK"] * 8
        wait_for(lambda: not any(alive(pid) for pid in old), "the old workers end")
        assert len(children_of(server.proc.pid)) == 2
    finally:
        for pid in old:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for sock in clients:
            sock.close()
        assert server.stop() == 0


def test_workers_exit_when_the_parent_is_killed(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///orphan.db", "--workers", "2")
    wait_for(lambda: len(children_of(server.proc.pid)) == 2, "two workers")
    workers = children_of(server.proc.pid)
    server.proc.kill()  # SIGKILL: the parent cannot stop anyone
    server.proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers exit with their parent", timeout=10)
    assert answers(server.port) == 0  # nobody keeps the port
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))


def test_reload_survives_a_syntax_error_and_resumes(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///r.db", "--reload")
    source = project / "app.py"
    try:
        time.sleep(0.5)
        source.write_text(source.read_text().replace("class Thing(BaseModel):", "class Thing(BaseModel)"))
        wait_for(lambda: answers(server.port) == 0, "the server stops on the broken file")
        time.sleep(1.0)
        assert server.proc.poll() is None  # the reloader waits for a fix
        source.write_text(source.read_text().replace("class Thing(BaseModel)", "class Widget(BaseModel):"))
        wait_for(lambda: answers(server.port, "/widget") == 200, "the fixed app serves again")
    finally:
        assert server.stop() == 0
    stderr = server.proc.stderr.read()
    assert "SyntaxError: expected ':' (app.py:" in stderr
    assert "Traceback" not in stderr


def test_the_reloaded_server_exits_with_the_reloader(project: Path) -> None:
    server = Server(project, "--db", "sqlite:///r2.db", "--reload")
    wait_for(lambda: len(children_of(server.proc.pid)) == 1, "the serving child")
    (child,) = children_of(server.proc.pid)
    server.proc.kill()
    server.proc.wait(10)
    wait_for(lambda: not alive(child), "the server exits with its reloader", timeout=10)


def test_environment_gives_host_port_workers_and_level(project: Path) -> None:
    port = free_port()
    env = {**ENV, "PORT": str(port), "WEB_CONCURRENCY": "2", "BZZLITE_HOST": "127.0.0.1",
           "BZZLITE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--db", "sqlite:///e.db"],
                            cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: answers(port) == 200, "the server on $PORT")
        wait_for(lambda: len(children_of(proc.pid)) == 2, "WEB_CONCURRENCY workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert "INFO" not in proc.stderr.read()  # BZZLITE_LOG_LEVEL=warning

    flag_port = free_port()  # a flag wins over the environment; BZZLITE_PORT over PORT
    env.update(BZZLITE_PORT=str(flag_port), WEB_CONCURRENCY="1")
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--db", "sqlite:///e.db"],
                            cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: answers(flag_port) == 200, "the server on $BZZLITE_PORT")
        assert not children_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


@pytest.mark.parametrize("name, value, message", [
    ("PORT", "http", "bzzlite: error: PORT='http' is not valid: expected int"),
    ("WEB_CONCURRENCY", "0", "bzzlite: error: --workers must be 1 or more"),
    ("BZZLITE_LOG_LEVEL", "loud", "bzzlite: error: BZZLITE_LOG_LEVEL='loud' is not valid: expected one of debug"),
])
def test_bad_environment_is_one_line(project: Path, name: str, value: str, message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bzzlite", "serve", "app.py:app"], cwd=project,
                            env={**ENV, name: value}, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)


def test_version(project: Path) -> None:
    import bzzlite as package

    result = bzzlite("--version", cwd=project)
    assert result.returncode == 0
    assert result.stdout.startswith(f"bzzlite {package.__version__} (Tornado ")


def test_closed_pipe_is_not_a_traceback(project: Path) -> None:
    result = subprocess.run(f"{sys.executable} -m bzzlite openapi app.py:app | head -c 20", shell=True, cwd=project, env=ENV,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.startswith("{")
    assert result.stderr == ""


def test_syntax_error_is_located_in_the_users_file_and_traceback_shows_it_all(project: Path) -> None:
    (project / "helper.py").write_text("VALUE = 1\n\ndef broken(:\n    pass\n")
    (project / "uses.py").write_text("import helper\napp = None\n")
    (project / "raises.py").write_text("import json\n\njson.loads('{')\n")
    result = bzzlite("routes", "uses.py:app", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("bzzlite: error: error while importing uses.py: SyntaxError: ")
    assert "(helper.py:3); --traceback shows the full traceback" in result.stderr
    assert "cli.py" not in result.stderr

    result = bzzlite("routes", "raises.py:app", cwd=project)  # raised inside the stdlib: the user's line
    assert "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) (raises.py:3)" in result.stderr

    result = bzzlite("routes", "raises.py:app", "--traceback", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'raises.py", line 3' in result.stderr and "json/decoder.py" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bzzlite: error: error while importing raises.py")


def test_https_with_certfile_and_keyfile(project: Path) -> None:
    openssl = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=project, capture_output=True, check=False,
    )
    if openssl.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {openssl.stderr!r}")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bzzlite", "serve", "app.py:app", "--port", str(port),
                             "--db", "sqlite:///tls.db", "--certfile", "cert.pem", "--keyfile", "key.pem"],
                            cwd=project, env=ENV, stderr=subprocess.PIPE, text=True)
    context = ssl.create_default_context(cafile=str(project / "cert.pem"))
    try:
        def https_ok() -> bool:
            import urllib.request

            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/_health", context=context, timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(https_ok, "HTTPS answers")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    result = bzzlite("serve", "app.py:app", "--certfile", "missing.pem", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == "bzzlite: error: cannot load the TLS certificate missing.pem: No such file or directory"
