"""The measurement loop: stacks interleaved within each repetition, a fresh server and data copy each time.

Every (repetition, pinning, stack) gets a new server on a new copy of the pristine data file,
so a stack that inserts faster in the create workload does not leave a bigger table for the
next one. Within a repetition the stacks take turns (A, B, C, A, B, C, ...), so slow drifts of
the machine fall on all of them alike; each repetition runs them unpinned (as deployed), then
pinned (server on one CPU, wrk on the other), as `config.pinning` says.

A bzzlite stack's copy is first brought to its model by `python -m bzzlite migrate`, outside the
measured window, as an upgraded app's file is once deployed (docs/changing-models.md): the data
file is written by no framework, and bzzlite validates every unmarked document it reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import mongo, procstat
from bench.config import Config
from bench.data import Dataset, build_dataset
from bench.load import LoadFailed, ensure_wrk, run_wrk
from bench.server import REPO, Server, ServerFailed
from bench.stacks import Stack, is_bzzlite, stack, with_workers
from bench.workloads import MIXED, WORKLOADS, WrongAnswer


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
    max_ms: float = 0.0
    rss_max_kib: int = 0
    rss_samples_kib: tuple[int, ...] = ()  # --mixed: VmRSS about once a second during the run
    gc: dict[str, Any] | None = None  # --mixed: the server's collections (bench.servers.gc_probe)
    load_cpu_us_per_request: float = 0.0  # wrk's CPU time ÷ requests
    pinned: bool = False  # the server on one CPU and wrk on another; False: nothing pinned, as deployed
    store_cpu_us_per_request: float | None = None  # bzzlite_mongo: the MongoDB stand-in's CPU ÷ requests

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Results:
    """All measurements of a run, and why any stack could not be measured."""

    config: Config
    cpus: tuple[int | None, int | None]  # (server CPU, load CPU) of the pinned runs; None when there are none
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


def migrate(served: Stack, db: Path, timeout: float = 300.0) -> None:
    """`python -m bzzlite migrate` on a bzzlite stack's own copy, with that stack's checkout, as a
    deployed app upgraded to model marks runs it once; a bzzlite older than `migrate` is left as is.

    Raises:
        ServerFailed: the migration failed (its last line of output says why).
    """
    tree = served.cwd or REPO
    if not is_bzzlite(served) or not (tree / "bzzlite" / "cli" / "migrations.py").is_file():
        return
    command = [sys.executable, "-m", "bzzlite", "migrate", "bench.servers.bzz_app:app",
               "--db", f"sqlite:///{db.resolve()}", "--no-progress"]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ServerFailed(f"bzzlite migrate exited {done.returncode}: {lines[-1] if lines else '(no output)'}")


@contextmanager
def _database(served: Stack, data: Dataset, tmp: Path, number: int, log: Path,
              cpu: int | None) -> Iterator[tuple[Path | str, int | None]]:
    """What `served` serves, fresh: a migrated copy of the data file, or (bzzlite_mongo) the MongoDB
    stand-in loaded with it, on the server's CPU when pinned. Yields (file or URL, the stand-in's pid)."""
    if served.store == "mongodb":
        with mongo.standin(data, tmp / f"mongo{number}", log.with_suffix(".standin.log"), cpu) as (url, pid):
            yield url, pid
        return
    db = _fresh_copy(data, tmp / f"stack{number}.db")
    migrate(served, db)
    yield db, None


def _modes(config: Config) -> Iterator[tuple[bool, int | None, int | None]]:
    """For each pinning mode: (pinned, server CPU, load CPU), with this harness moved to match
    (off the server's CPU when pinned, free again when not: wrk inherits its affinity)."""
    free = os.sched_getaffinity(0)
    server_cpu, load_cpu = choose_cpus()
    try:
        for mode in config.pinning:
            if mode == "pinned" and load_cpu is not None:
                os.sched_setaffinity(0, {load_cpu})
                yield True, server_cpu, load_cpu
            elif mode == "unpinned":
                os.sched_setaffinity(0, free)
                yield False, None, None
    finally:
        os.sched_setaffinity(0, free)


def _log_name(prefix: str, name: str, number: int, pinned: bool, rep: int) -> str:
    stem = name.split("@")[0].replace(":", "-") + ("" if "@" not in name else str(number))
    return f"{prefix}{stem}{'-pinned' if pinned else ''}-rep{rep + 1}.log"


def _measure_server(
    server: Server, rep: int, data: Dataset, config: Config, load_cpu: int | None, pinned: bool,
    store_pid: int | None = None,
) -> list[Measurement]:
    """Check every workload's answers, then warm up and measure each in turn."""
    answered = server.stack.workloads or tuple(WORKLOADS)
    # in WORKLOADS' order: creates last
    workloads = [w for name, w in WORKLOADS.items() if name in config.workloads and name in answered]
    for workload in workloads:
        workload.check(server.port, data)
    url = f"http://127.0.0.1:{server.port}"
    measured = []
    for workload in workloads:
        args = workload.args(data)
        if config.warmup:
            run_wrk(url, workload.script_path, args, config.warmup, config.connections, load_cpu)
        store_before = procstat.cpu_seconds(store_pid) if store_pid is not None else 0.0
        cpu_before, rss_before = procstat.cpu_seconds(server.pid), procstat.rss_kib(server.pid)
        report = run_wrk(url, workload.script_path, args, config.duration, config.connections, load_cpu)
        cpu_after, rss_after = procstat.cpu_seconds(server.pid), procstat.rss_kib(server.pid)
        store_after = procstat.cpu_seconds(store_pid) if store_pid is not None else 0.0
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
                load_cpu_us_per_request=report.cpu_seconds * 1e6 / report.requests,
                p50_ms=report.p50_us / 1000,
                p99_ms=report.p99_us / 1000,
                errors=report.errors,
                rss_start_kib=rss_before,
                rss_end_kib=rss_after,
                pinned=pinned,
                store_cpu_us_per_request=(store_after - store_before) * 1e6 / report.requests
                if store_pid is not None else None,
            )
        )
        _progress(measured[-1], config)
    return measured


def _progress(m: Measurement, config: Config) -> None:
    print(
        f"rep {m.rep + 1}/{config.reps} {'pinned' if m.pinned else 'free':<6} {m.stack:<12} {m.workload:<7}"
        f"{m.cpu_us_per_request:8.1f} CPU µs/req {m.requests_per_second:9.0f} req/s"
        f" p99 {m.p99_ms:6.2f} ms",
        file=sys.stderr,
    )


def run(config: Config) -> Results:
    """Build the data, then measure every stack and workload `config.reps` times in each pinning mode.

    With `config.workers`, each bzzlite stack runs once per worker count, unpinned only (the
    command line sees to it): the workers may use every CPU, and wrk (one thread) shares them.
    """
    ensure_wrk()
    results = Results(config, choose_cpus() if "pinned" in config.pinning else (None, None))
    logs = config.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stacks = _stacks(config)
    with tempfile.TemporaryDirectory(prefix="bzzlite-bench-") as tmp:
        data = build_dataset(Path(tmp), config.records)
        for rep in range(config.reps):
            for pinned, server_cpu, load_cpu in _modes(config):
                for number, served in enumerate(stacks):
                    name = served.name
                    if name in results.failures:
                        continue
                    log = logs / _log_name("", name, number, pinned, rep)
                    try:
                        with _database(served, data, Path(tmp), number, log, server_cpu) as (db, store_pid), \
                                Server(served, db, server_cpu, log, config.start_timeout) as server:
                            results.measurements += _measure_server(server, rep, data, config, load_cpu, pinned,
                                                                    store_pid)
                    except (ServerFailed, WrongAnswer, LoadFailed, subprocess.TimeoutExpired) as exc:
                        results.failures[name] = f"{type(exc).__name__}: {exc} (log: {log})"
                        print(f"rep {rep + 1}/{config.reps} {name:<12} FAILED {exc}", file=sys.stderr)
    return results


def _stacks(config: Config) -> list[Stack]:
    """The stacks to run, in order; a bzzlite stack once per `config.workers` count."""
    stacks = []
    for name in config.stacks:
        served = stack(name)
        if config.workers and is_bzzlite(served):
            stacks += [with_workers(served, n) for n in config.workers]
        else:
            stacks.append(served)
    return stacks


# -- the mixed load (--mixed SECONDS) ---------------------------------------------------------


def _measure_mixed(
    server: Server, rep: int, data: Dataset, config: Config, load_cpu: int | None, pinned: bool
) -> Measurement:
    """Warm up, then `config.mixed` seconds of the mixed load, sampling RSS every second."""
    MIXED.check(server.port, data)
    url, args = f"http://127.0.0.1:{server.port}", MIXED.args(data)
    if config.warmup:
        run_wrk(url, MIXED.script_path, args, config.warmup, config.connections, load_cpu)
    server.send_signal(signal.SIGUSR1)  # the GC probe starts counting here
    samples = [procstat.rss_kib(server.pid)]
    cpu_before = procstat.cpu_seconds(server.pid)
    report = run_wrk(url, MIXED.script_path, args, config.mixed, config.connections, load_cpu,
                     every_second=lambda: samples.append(procstat.rss_kib(server.pid)))
    cpu_after = procstat.cpu_seconds(server.pid)
    samples.append(procstat.rss_kib(server.pid))
    server.check_alive()
    if report.requests == 0:
        raise LoadFailed("mixed: no request completed")
    return Measurement(
        stack=server.stack.name, workload=MIXED.name, rep=rep, requests=report.requests, seconds=report.seconds,
        cpu_us_per_request=(cpu_after - cpu_before) * 1e6 / report.requests,
        cpu_busy=(cpu_after - cpu_before) / report.seconds,
        p50_ms=report.p50_us / 1000, p99_ms=report.p99_us / 1000, errors=report.errors,
        rss_start_kib=samples[0], rss_end_kib=samples[-1], max_ms=report.max_us / 1000,
        rss_max_kib=max(samples), rss_samples_kib=tuple(samples), pinned=pinned,
    )  # fmt: skip


def run_mixed(config: Config) -> Results:
    """`config.mixed` seconds of the mixed load per stack, repetition and pinning mode, each server under
    the GC probe."""
    ensure_wrk()
    results = Results(config, choose_cpus() if "pinned" in config.pinning else (None, None))
    logs = config.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bzzlite-bench-") as tmp:
        data = build_dataset(Path(tmp), config.records)
        for rep in range(config.reps):
            for pinned, server_cpu, load_cpu in _modes(config):
                for number, name in enumerate(config.stacks):
                    if name in results.failures:
                        continue
                    log = logs / _log_name("mixed-", name, number, pinned, rep)
                    gc_stats = Path(tmp) / f"gc-{number}-{rep}-{int(pinned)}.json"
                    served = stack(name)
                    try:
                        with _database(served, data, Path(tmp), number, log, server_cpu) as (db, _), \
                                Server(served, db, server_cpu, log, config.start_timeout, gc_stats) as server:
                            measured = _measure_mixed(server, rep, data, config, load_cpu, pinned)
                    except (ServerFailed, WrongAnswer, LoadFailed, subprocess.TimeoutExpired) as exc:
                        results.failures[name] = f"{type(exc).__name__}: {exc} (log: {log})"
                        print(f"rep {rep + 1}/{config.reps} {name:<12} FAILED {exc}", file=sys.stderr)
                        continue
                    gc = json.loads(gc_stats.read_text()) if gc_stats.exists() else None
                    results.measurements.append(dataclasses.replace(measured, gc=gc))
                    _progress_mixed(results.measurements[-1], config)
    return results


def _progress_mixed(m: Measurement, config: Config) -> None:
    pauses = ""
    if m.gc is not None:
        g = m.gc["generations"]
        pauses = " GC " + " ".join(f"g{k}:{v['collections']}/{v['total_ms']:.0f}ms/max{v['max_ms']:.1f}" for k, v in g.items())
    print(
        f"rep {m.rep + 1}/{config.reps} {'pinned' if m.pinned else 'free':<6} {m.stack:<12} mixed"
        f" {m.cpu_us_per_request:7.1f} CPU µs/req"
        f" {m.requests_per_second:7.0f} req/s p99 {m.p99_ms:6.2f} ms max {m.max_ms:6.1f} ms"
        f" RSS {m.rss_start_kib / 1024:.1f} → {m.rss_end_kib / 1024:.1f} MiB{pauses}",
        file=sys.stderr,
    )
