"""Instructions per request, counted by valgrind's callgrind: the figure that does not move
with the machine's noise.

    python -m bench.instructions --stacks bzzlite@/tmp/before,bzzlite --requests 400

Each stack's server runs under ``valgrind --tool=callgrind`` (every thread: the event loop and
the SQLite store's threads alike) on a copy of the same data file. For each workload the
counters are zeroed after a warm-up, ``--requests`` requests are sent one after another on
one keep-alive connection, and the counters dumped: instructions ÷ requests is the cost of a
request, the same from one run to the next within a fraction of a percent, where CPU time
per request under wrk moves by 10–20 % on these machines. It counts work, not waiting: GIL
hand-offs and wake-ups between threads show only as the instructions they execute.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data import CATEGORIES, build_dataset
from bench.server import free_port
from bench.stacks import Stack, is_bzzlite, stack

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("get", "list", "create")
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)


def _requests(workload: str, ids: list[str], count: int, rng: random.Random) -> list[tuple[str, str, bytes | None]]:
    if workload == "get":
        return [("GET", f"/item/{rng.choice(ids)}", None) for _ in range(count)]
    if workload == "list":
        return [("GET", f"/item?category={rng.choice(CATEGORIES)}&per_page=20", None) for _ in range(count)]
    return [("POST", "/item", json.dumps({"name": f"bench-{n}", "category": rng.choice(CATEGORIES),
                                           "price": n % 500 + 0.25}).encode()) for n in range(count)]


def _send(port: int, requests: list[tuple[str, str, bytes | None]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        for method, path, body in requests:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 201):
                raise RuntimeError(f"{method} {path} answered {response.status}")
    finally:
        connection.close()


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/_health")
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not start under valgrind in time")


def _control(pid: int, option: str) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def measure(server: Stack, db: Path, ids: list[str], requests: int, work: Path) -> dict[str, float]:
    """Instructions per request of each workload for one stack."""
    port = free_port()
    out = work / f"callgrind.{server.name.replace('/', '_').replace('@', '_')}.%p"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
               "--collect-atstart=yes", *server.command(port, db)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    log = (work / f"{server.name.replace('/', '_').replace('@', '_')}.log").open("wb")
    proc = subprocess.Popen(command, cwd=server.cwd or REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    figures: dict[str, float] = {}
    try:
        _wait(port, proc, 300)
        rng = random.Random(7)
        for workload in WORKLOADS:
            _send(port, _requests(workload, ids, max(20, requests // 10), rng))  # warm-up
            _control(proc.pid, "--zero")
            _send(port, _requests(workload, ids, requests, rng))
            before = set(work.glob("callgrind.*"))
            _control(proc.pid, "--dump")
            dumped = sorted(set(work.glob("callgrind.*")) - before, key=lambda p: p.stat().st_mtime)
            total = sum(int(m.group(1)) for path in dumped for m in [_TOTAL.search(path.read_bytes())] if m)
            figures[workload] = total / requests
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", default="bzzlite", help="comma-separated; bzzlite@DIR for another checkout")
    parser.add_argument("--requests", type=int, default=400, help="requests per workload (default 400)")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--migrate", action="store_true",
                        help="bzzlite stacks that have `bzzlite migrate` run it on their copy first: they serve "
                             "documents marked by their model (the data file is written by no framework; unmarked "
                             "documents are validated on every read until migrated, docs/changing-models.md)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    stacks = [stack(name) for name in args.stacks.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="bzzlite-instructions-") as tmp:
        work = Path(tmp)
        data = build_dataset(work, args.records)
        ids = data.ids_file.read_text().split()
        rows = []
        for server in stacks:
            db = work / f"{len(rows)}.db"
            shutil.copy(data.path, db)
            tree = server.cwd or REPO
            if args.migrate and is_bzzlite(server) and (tree / "bzzlite" / "cli" / "migrations.py").is_file():
                subprocess.run([sys.executable, "-m", "bzzlite", "migrate", "bench.servers.bzz_app:app", "--db",
                                f"sqlite:///{db}", "--no-progress"], cwd=tree, check=True, capture_output=True)
            figures = measure(server, db, ids, args.requests, work)
            rows.append((server.name, figures))
            print(server.name, " ".join(f"{w} {figures[w] / 1000:.1f}k" for w in WORKLOADS), flush=True)
    print("\n| stack | " + " | ".join(f"{w} (instructions/request)" for w in WORKLOADS) + " |")
    print("|---|" + "---:|" * len(WORKLOADS))
    base = rows[0][1]
    for name, figures in rows:
        cells = [f"{figures[w] / 1000:,.1f}k" + ("" if name == rows[0][0] else f" ({figures[w] / base[w] - 1:+.1%})")
                 for w in WORKLOADS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
