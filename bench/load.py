"""Load generation with Debian's `wrk`: installing it if needed, running it, reading its report."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.server import pinned


class LoadFailed(Exception):
    """wrk could not be run or printed no report."""


def ensure_wrk() -> None:
    """Make sure `wrk` is on PATH, installing Debian's package (after `apt-get update` if needed)."""
    if shutil.which("wrk"):
        return
    if _apt_get("install", "-y", "wrk") != 0:
        _apt_get("update")
        _apt_get("install", "-y", "wrk")
    if not shutil.which("wrk"):
        raise LoadFailed("wrk is not installed and `apt-get install -y wrk` did not install it")


def _apt_get(*args: str) -> int:
    return subprocess.run(
        ["apt-get", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    ).returncode


@dataclass(frozen=True)
class WrkReport:
    """What the Lua `done()` hook printed for one run."""

    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    errors: int  # connect/read/write/timeouts plus non-2xx/3xx answers
    max_us: float = 0.0
    cpu_seconds: float = 0.0  # wrk's own user+system CPU time: what the load took from the machine


def run_wrk(
    url: str, script: Path, args: list[str], seconds: int, connections: int, cpu: int | None,
    every_second: Callable[[], None] | None = None,
) -> WrkReport:
    """One wrk run of `seconds` against `url` with one thread, pinned to `cpu`;
    `every_second` is called about once a second while it runs (to sample the server)."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), url, "--", *args,
    ]  # fmt: skip
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's CPU: the difference once it is reaped
    proc = subprocess.Popen(pinned(command, cpu), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(seconds + 60):
            try:
                stdout, stderr = proc.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if every_second is not None:
                    every_second()
        else:
            raise LoadFailed(f"wrk did not finish: {' '.join(command)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line = next((l for l in stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise LoadFailed(f"wrk exited {proc.returncode}: {(stderr or stdout).strip()[-300:]}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = reaped.ru_utime + reaped.ru_stime - children.ru_utime - children.ru_stime
    return WrkReport(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_us=raw["p50_us"],
        p99_us=raw["p99_us"],
        errors=sum(raw["errors"].values()),
        max_us=raw["max_us"],
        cpu_seconds=cpu_seconds,
    )
