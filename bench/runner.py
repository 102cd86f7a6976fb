"""The measurement loop: stacks interleaved within each repetition, a fresh server and data copy each time.

Every (repetition, stack) gets a new server on a new copy of the pristine data file, so a
stack that inserts faster in the create workload does not leave a bigger table for the next
one. Within a repetition the stacks take turns (A, B, C, A, B, C, ...), so slow drifts of the
machine fall on all of them alike.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import procstat
from bench.config import Config
from bench.data import Dataset, build_dataset
from bench.load import LoadFailed, ensure_wrk, run_wrk
from bench.server import Server, ServerFailed
from bench.stacks import stack
from bench.workloads import WORKLOADS, WrongAnswer


@dataclass(frozen=True)
class Measurement:
    """One measured wrk run against one server."""

    stack: str
    workload: str
    rep: int
    requests: int
    seconds: float
    cpu_us_per_request: float
    cpu_busy: float  # server CPU seconds ÷ wall seconds; low: the server waited, or lost its CPU
    p50_ms: float
    p99_ms: float
    errors: int
    rss_start_kib: int
    rss_end_kib: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Results:
    """All measurements of a run, and why any stack could not be measured."""

    config: Config
    cpus: tuple[int | None, int | None]  # (server CPU, load CPU); None when not pinned
    measurements: list[Measurement] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def choose_cpus() -> tuple[int | None, int | None]:
    """Server on the first CPU we may use, wrk (and this harness) on the second."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 and shutil.which("taskset") else (None, None)


def _fresh_copy(data: Dataset, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(data.path, target)
    return target


def _measure_server(server: Server, rep: int, data: Dataset, config: Config, load_cpu: int | None) -> list[Measurement]:
    """Check every workload's answers, then warm up and measure each in turn."""
    workloads = [w for name, w in WORKLOADS.items() if name in config.workloads]  # creates last
    for workload in workloads:
        workload.check(server.port, data)
    url = f"http://127.0.0.1:{server.port}"
    measured = []
    for workload in workloads:
        args = workload.args(data)
        if config.warmup:
            run_wrk(url, workload.script_path, args, config.warmup, config.connections, load_cpu)
        cpu_before, rss_before = procstat.cpu_seconds(server.pid), procstat.rss_kib(server.pid)
        report = run_wrk(url, workload.script_path, args, config.duration, config.connections, load_cpu)
        cpu_after, rss_after = procstat.cpu_seconds(server.pid), procstat.rss_kib(server.pid)
        server.check_alive()
        if report.requests == 0:
            raise LoadFailed(f"{workload.name}: no request completed")
        measured.append(
            Measurement(
                stack=server.stack.name,
                workload=workload.name,
                rep=rep,
                requests=report.requests,
                seconds=report.seconds,
                cpu_us_per_request=(cpu_after - cpu_before) * 1e6 / report.requests,
                cpu_busy=(cpu_after - cpu_before) / report.seconds,
                p50_ms=report.p50_us / 1000,
                p99_ms=report.p99_us / 1000,
                errors=report.errors,
                rss_start_kib=rss_before,
                rss_end_kib=rss_after,
            )
        )
        _progress(measured[-1], config)
    return measured


def _progress(m: Measurement, config: Config) -> None:
    print(
        f"rep {m.rep + 1}/{config.reps} {m.stack:<12} {m.workload:<7}"
        f"{m.cpu_us_per_request:8.1f} CPU µs/req {m.requests_per_second:9.0f} req/s"
        f" p99 {m.p99_ms:6.2f} ms",
        file=sys.stderr,
    )


def run(config: Config) -> Results:
    """Build the data, then measure every stack and workload `config.reps` times."""
    ensure_wrk()
    server_cpu, load_cpu = choose_cpus()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # keep the harness off the server's CPU
    results = Results(config, (server_cpu, load_cpu))
    logs = config.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bzzlite-bench-") as tmp:
        data = build_dataset(Path(tmp), config.records)
        for rep in range(config.reps):
            for number, name in enumerate(config.stacks):
                if name in results.failures:
                    continue
                db = _fresh_copy(data, Path(tmp) / f"stack{number}.db")
                log = logs / f"{name.split('@')[0]}{'' if '@' not in name else number}-rep{rep + 1}.log"
                try:
                    with Server(stack(name), db, server_cpu, log, config.start_timeout) as server:
                        results.measurements += _measure_server(server, rep, data, config, load_cpu)
                except (ServerFailed, WrongAnswer, LoadFailed) as exc:
                    results.failures[name] = f"{type(exc).__name__}: {exc} (log: {log})"
                    print(f"rep {rep + 1}/{config.reps} {name:<12} FAILED {exc}", file=sys.stderr)
    return results
