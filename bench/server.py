"""A server under test as a subprocess: pinned to one CPU, on a free loopback port, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from bench.stacks import Stack, probed

REPO = Path(__file__).resolve().parent.parent


class ServerFailed(Exception):
    """The server did not start, or died; the message says why in one line."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """`command` run under `taskset -c cpu`, or unchanged when there is no CPU to spare."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


class Server:
    """Context manager: start `stack` on `db`, wait until it accepts connections, stop it after."""

    def __init__(
        self, stack: Stack, db: Path | str, cpu: int | None, log: Path, timeout: float, gc_stats: Path | None = None
    ) -> None:
        self.stack, self.db, self.cpu, self.log, self.timeout = stack, db, cpu, log, timeout
        self.gc_stats = gc_stats  # run under bench.servers.gc_probe, which writes its GC pauses here
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Self:
        command = self.stack.command(self.port, self.db)
        if self.gc_stats is not None:
            command = probed(command, self.gc_stats)
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                pinned(command, self.cpu),
                cwd=self.stack.cwd or REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it reaches any children
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_alive(self) -> None:
        """Raise `ServerFailed` if the process has exited."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise ServerFailed(f"server exited with code {code}: {self._last_log_line()}")

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the server process."""
        assert self._proc is not None
        os.kill(self._proc.pid, signum)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            self.check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerFailed(f"not listening after {self.timeout:.0f} s: {self._last_log_line()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the server's process group (its PID), then SIGKILL if it lingers."""
        if self._proc is None or self._proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self._proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _last_log_line(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"
