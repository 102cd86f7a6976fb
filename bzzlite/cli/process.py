"""The processes behind ``serve``: the parent of ``--workers``, the ``--reload`` watcher, and
workers that never outlive the process that started them.

- **The parent of workers** (gunicorn's arbiter, in small): SIGTERM/SIGINT stop every worker
  gracefully; SIGHUP starts a new generation of workers and, once all of them listen, stops
  the old ones gracefully (requests in flight finish), so ``systemctl reload`` drops nothing;
  a worker that dies is replaced. Each worker fills a slot whose resources (its listening
  sockets) the parent holds and hands to the slot's next worker.
- **The reloader** runs the server as a child process and starts a new one when a ``.py``
  file changes; a child that cannot start (a syntax error while editing) is reported and the
  reloader waits for the next change.
- **No orphan keeps the port**: a worker asks Linux to send it SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), and, everywhere, its event loop checks once a second that its
  parent is still the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("bzzlite")

#: the environment variable a reloader passes to its server: the reloader's pid
PARENT_ENV = "_BZZLITE_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have this process receive SIGTERM when ``parent_pid`` (its parent) exits (Linux);
    exit at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(0)


async def watch_parent(parent_pid: int, stop: Callable[[], None], interval: float = 1.0) -> None:
    """Call ``stop`` once the parent is no longer ``parent_pid`` (the fallback of prctl)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(interval)
    log.warning("the parent process %d is gone; stopping", parent_pid)
    stop()


# -- the parent of --workers ---------------------------------------------------------------


class Workers:
    """Fork and supervise ``count`` workers; ``serve(ready, slot)`` is a worker's life, in the child.

    Each worker fills a slot, 0 to ``count - 1``, and whoever replaces it (a new generation, or
    after a crash) fills the same one: what a slot owns (its listening sockets) passes from one
    worker to the next. ``serve`` must call ``ready()`` once it listens and return the
    process's exit code.
    """

    def __init__(self, count: int, serve: Callable[[Callable[[], None], int], int]) -> None:
        self.count = count
        self.serve = serve
        self.parent = os.getpid()
        self.children: dict[int, tuple[int, int]] = {}  # pid -> (generation, slot)
        self.ready: set[int] = set()
        self.retiring: set[int] = set()  # old workers, stopped once the new generation listens
        self.generation = 0
        self.stopping = False
        self.failures = 0
        self._signals: list[int] = []

    def run(self) -> int:
        """Until SIGTERM/SIGINT (then 0), or until workers keep failing (then 1)."""
        ready_r, self._ready_w = os.pipe()
        wake_r, wake_w = os.pipe()
        for fd in (ready_r, wake_r, wake_w):
            os.set_blocking(fd, False)
        previous = signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        self._fds = (ready_r, wake_r, wake_w)
        try:
            self._spawn_generation()
            log.info("started %d workers: %s", self.count, ", ".join(map(str, self.children)))
            while True:
                self._handle_signals()
                if self._reap():
                    return 1
                if self.stopping and not self.children:
                    return 0
                self._retire_when_replaced()
                readable, _, _ = select.select([ready_r, wake_r], [], [], 1.0)
                if wake_r in readable:
                    _drain(wake_r)
                if ready_r in readable:
                    data = _drain(ready_r)
                    self.ready.update(pid for (pid,) in struct.iter_unpack("i", data[: len(data) // 4 * 4]))
        finally:
            signal.set_wakeup_fd(previous)
            for fd in (*self._fds, self._ready_w):
                os.close(fd)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)  # handled by the loop, outside the handler

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                log.info("stopping %d workers", len(self.children))
                self.stop_all()
            elif signum == signal.SIGHUP and not self.stopping:
                self.retiring.update(self.children)
                self.generation += 1
                self._spawn_generation()
                log.info("SIGHUP: started %d new workers; the %d old ones stop once these listen",
                         self.count, len(self.retiring))

    def stop_all(self) -> None:
        self.stopping = True
        for pid in self.children:
            _kill(pid, signal.SIGTERM)

    def _retire_when_replaced(self) -> None:
        if not self.retiring:
            return
        listening = sum(1 for pid, (gen, _) in self.children.items() if gen == self.generation and pid in self.ready)
        if listening >= self.count:
            for pid in self.retiring:
                _kill(pid, signal.SIGTERM)  # a graceful stop: requests in flight finish
            log.info("new workers listen; stopping the old ones: %s", ", ".join(map(str, sorted(self.retiring))))
            self.retiring.clear()

    def _reap(self) -> bool:
        """Collect exited workers and replace those that should still run; True to give up."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return False
            child = self.children.pop(pid, None)
            self.ready.discard(pid)
            if child is None or self.stopping:
                continue
            if pid in self.retiring:  # it stopped before being asked to (a crash): not replaced
                self.retiring.discard(pid)
                continue
            code = os.waitstatus_to_exitcode(status)
            generation, slot = child
            if generation < self.generation:
                continue
            if code != 0:
                self.failures += 1
                if self.failures > 5 * self.count:
                    log.error("workers keep failing; stopping")
                    self.stop_all()
                    return True
            log.warning("worker pid %d exited with %d; starting another", pid, code)
            self._spawn(generation, slot)
        return False

    def _spawn_generation(self) -> None:
        for slot in range(self.count):
            self._spawn(self.generation, slot)

    def _spawn(self, generation: int, slot: int) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = (generation, slot)
            return
        code = 1  # the child: serve until told to stop, never return into the parent's code
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent decides what a reload does
            for fd in self._fds:
                os.close(fd)
            die_with_parent(self.parent)
            ready_w = self._ready_w

            def ready() -> None:
                os.write(ready_w, struct.pack("i", os.getpid()))

            code = self.serve(ready, slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported, and the child must end here
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)


def _drain(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
    return data


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


# -- --reload -------------------------------------------------------------------------------


def run_reloader(argv: list[str], paths: Iterable[Path], graceful_timeout: float) -> int:
    """Run ``python -m bzzlite *argv`` and run it again whenever a ``.py`` file under ``paths``
    changes, until SIGTERM/SIGINT; a server that exits (an import error) waits for a change."""
    import watchfiles

    stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: stop.append(signum))
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    command = [sys.executable, "-m", "bzzlite", *argv]
    watched = sorted({str(p.resolve()) for p in paths})
    log.info("reloader: watching %s for changes to .py files", ", ".join(watched))
    server = subprocess.Popen(command, env=env)
    reported = False
    try:
        for changes in watchfiles.watch(*watched, watch_filter=watchfiles.PythonFilter(), debounce=300,
                                        rust_timeout=300, yield_on_timeout=True, raise_interrupt=False):
            if stop:
                if stop[-1] != signal.SIGHUP:
                    break
                stop.clear()
                changes = {(watchfiles.Change.modified, "(SIGHUP)")}
            if changes:
                names = ", ".join(sorted({os.path.relpath(p) for _, p in changes}))
                log.warning("reloader: %s changed; restarting", names)
                _stop(server, graceful_timeout)
                server = subprocess.Popen(command, env=env)
                reported = False
            elif server.poll() is not None and not reported:
                reported = True
                log.error("reloader: the server exited (%d); fix the error and save to restart it", server.returncode)
    finally:
        _stop(server, graceful_timeout)
    return 0


def _stop(server: subprocess.Popen[bytes], graceful_timeout: float) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(graceful_timeout + 5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
