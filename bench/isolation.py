"""Does one slow query stall the server? GET by id alone, then beside a client looping a slow query.

    python -m bench.isolation                                  # 200,000 documents, 5 s per run
    python -m bench.isolation --stacks bzzlite@/tmp/before,bzzlite --reps 3

Builds the harness's data file (``bench.data``, kept in ``--out`` between runs) and serves a
copy of it with each stack's ``python -m bzzlite serve``. For each stack, alternately:

- **alone**: ``wrk`` loads ``GET /item/{id}`` (random ids) from ``--connections`` connections;
- **beside**: the same, while another client loops ``GET /item?description__contains=zzzz``,
  a filter no index serves and no document matches (a full scan for the page, another for
  the total), from the start of the wrk run to its end.

Reports the GET side's req/s, p50 and p99, the server's CPU µs per GET when alone, and how
many slow queries were answered (and with which status) beside. Issue 17's target: beside the
slow query, GET by id keeps at least 50 % of its alone throughput and a p99 at most 10× its
alone p99.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import Dataset, build_dataset
from bench.load import LoadFailed, ensure_wrk, run_wrk
from bench.procstat import cpu_seconds
from bench.server import Server
from bench.stacks import stack as find_stack

HERE = Path(__file__).resolve().parent
SLOW = "/item?description__contains=zzzz"


@dataclass
class Side:
    """The GET side of one run."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None = None  # server CPU per GET (alone only: beside, the slow query's is mixed in)
    slow: Counter[int] = field(default_factory=Counter)  # status -> slow queries answered meanwhile
    slow_ms: list[float] = field(default_factory=list)


class SlowLoop(threading.Thread):
    """A client that sends the slow query again as soon as it is answered, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.millis: list[float] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self.stopping.is_set():
            started = time.perf_counter()
            conn.request("GET", SLOW)
            reply = conn.getresponse()
            reply.read()
            self.millis.append((time.perf_counter() - started) * 1000)
            self.statuses[reply.status] += 1
        conn.close()


def dataset(out: Path, records: int) -> Dataset:
    """The pristine data file for ``records`` documents, built once and kept."""
    where = out / f"isolation-{records}"
    ready = where / "ready"
    if not ready.exists():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        started = time.monotonic()
        data = build_dataset(where, records)
        ready.write_text(data.first_id)
        print(f"built {records:,} documents in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return Dataset(where / "item.db", where / "ids.txt", ready.read_text(), {})


def measure(name: str, data: Dataset, work: Path, args: argparse.Namespace) -> tuple[Side, Side]:
    """One alone run and one beside run of ``name``, on a fresh copy of the data file."""
    db = work / "item.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(data.path, db)
    script = HERE / "lua" / "get_by_id.lua"
    with Server(find_stack(name), db, None, work / f"{name.replace('/', '_')}.log", 60) as server:
        url = f"http://127.0.0.1:{server.port}"
        probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        probe.request("GET", SLOW)  # also warms the page cache: the first scan reads the file
        answer = probe.getresponse()
        answer.read()
        if answer.status not in (200, 503):
            raise LoadFailed(f"{name}: GET {SLOW} answered {answer.status}")
        run_wrk(url, script, [str(data.ids_file)], 1, args.connections, None)  # warm-up

        cpu = cpu_seconds(server.pid)
        report = run_wrk(url, script, [str(data.ids_file)], args.duration, args.connections, None)
        cpu = cpu_seconds(server.pid) - cpu
        alone = Side(report.requests / report.seconds, report.p50_us / 1000, report.p99_us / 1000,
                     cpu * 1e6 / max(1, report.requests))

        slow = SlowLoop(server.port)
        slow.start()
        time.sleep(0.2)  # the first slow query is under way
        report = run_wrk(url, script, [str(data.ids_file)], args.duration, args.connections, None)
        slow.stopping.set()
        slow.join(120)
        beside = Side(report.requests / report.seconds, report.p50_us / 1000, report.p99_us / 1000,
                      slow=slow.statuses, slow_ms=slow.millis)
        server.check_alive()
    return alone, beside


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", default="bzzlite", help="comma-separated, e.g. bzzlite@/tmp/before,bzzlite")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections on the GET side")
    parser.add_argument("--reps", type=int, default=1, help="interleaved repetitions")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    ensure_wrk()
    names = [s for s in args.stacks.split(",") if s]
    for name in names:
        find_stack(name)  # an unknown stack fails now, not after the data is built
    data = dataset(args.out, args.records)
    work = args.out / "isolation-work"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[tuple[Side, Side]]] = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            runs[name].append(measure(name, data, work, args))

    print(f"\n{args.records:,} documents, SQLite; GET /item/{{id}} from {args.connections} wrk connections, "
          f"{args.duration} s per run, medians of {args.reps} run(s); beside: one client looping "
          f"`GET {SLOW}`\n")
    print("| stack | alone req/s | alone p50 ms | alone p99 ms | CPU µs/GET | beside req/s | beside p50 ms "
          "| beside p99 ms | req/s kept | p99 × | slow queries answered (median ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, pairs in runs.items():
        alone = [a for a, _ in pairs]
        beside = [b for _, b in pairs]

        def med(sides: list[Side], attr: str) -> float:
            return statistics.median(getattr(s, attr) for s in sides)

        statuses = sum((b.slow for b in beside), Counter())
        millis = [m for b in beside for m in b.slow_ms]
        answered = ", ".join(f"{n} × {status}" for status, n in sorted(statuses.items())) or "none"
        slow_ms = f" ({statistics.median(millis):.0f} ms)" if millis else ""
        print(f"| {name} | {med(alone, 'rps'):,.0f} | {med(alone, 'p50_ms'):.2f} | {med(alone, 'p99_ms'):.2f} "
              f"| {med(alone, 'cpu_us'):.0f} | {med(beside, 'rps'):,.0f} | {med(beside, 'p50_ms'):.2f} "
              f"| {med(beside, 'p99_ms'):.2f} | {med(beside, 'rps') / med(alone, 'rps'):.1%} "
              f"| {med(beside, 'p99_ms') / med(alone, 'p99_ms'):.1f} | {answered}{slow_ms} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
