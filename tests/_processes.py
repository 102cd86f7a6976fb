"""Servers in child processes for tests: ``python -m bzzlite serve`` on a free port, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_workers(directory: Path, target: str, db: str, *, workers: int = 2,
                  env: dict[str, str] | None = None, timeout: float = 30) -> tuple[subprocess.Popen[str], int]:
    """``serve target --workers N`` from ``directory`` (this checkout's bzzlite), once /_health answers."""
    port = free_port()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bzzlite", "serve", target, "--port", str(port), "--db", db,
         "--workers", str(workers), "--log-level", "warning"],
        cwd=directory, env={**os.environ, **(env or {}), "PYTHONPATH": path},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_health", timeout=5) as reply:
                if reply.status == 200:
                    return proc, port
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, then the exit code (killed after 30 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def http(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one request to a server on loopback; error statuses too."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
