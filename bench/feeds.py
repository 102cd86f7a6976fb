"""Change feeds under load: idle subscribers per process, memory each, write-to-delivery latency.

    python -m bench.feeds                        # 10,000 idle subscribers, latency with 1,000
    python -m bench.feeds --idle 2000 --subscribers 200 --writes 50     # a quick run
    python -m bench.feeds --workers 2            # latency when writes and streams cross processes

One ``python -m bzzlite serve`` (SQLite, ``--workers 1`` unless asked) and client processes
that hold raw-socket SSE connections (asyncio protocols, no HTTP library in the way):

1. **idle**: open ``--idle`` streams (each waits for its ``ready`` event), then read the
   server's resident memory (``VmRSS`` in ``/proc``) against a baseline taken with one
   stream open; memory per subscriber = the growth / the streams. One write then checks
   that every stream is alive (each must receive it) and times that fan-out.
2. **latency**: ``--subscribers`` streams; a writer POSTs ``--writes`` documents at
   ``--rate`` per second, each carrying the wall-clock time it was sent; every client
   records, for every stream, when the ``created`` event arrived. Latency = arrival -
   send, over all (write, subscriber) pairs: HTTP request, commit, the journal poll,
   matching and writing to every stream, and the client reading it.

Clients and server share the machine's cores, so the figures include the clients' own
scheduling; they are upper bounds of what the server adds.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

APP = '''
from pydantic import BaseModel
from bzzlite import App, Registry

registry = Registry()


@registry.resource
class Tick(BaseModel):
    n: int
    sent: float = 0.0
    pad: str = ""


app = App(registry)
'''


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def worker_pids(pid: int) -> list[int]:
    """The serving processes: the children of a --workers parent, else the process itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in children.read_text().split()] if children.exists() else []
    return found or [pid]


class Server:
    def __init__(self, directory: Path, workers: int, heartbeat: float, poll: float) -> None:
        (directory / "feedbench.py").write_text(APP)
        self.port = free_port()
        env = {**os.environ, "BZZLITE_FEED_HEARTBEAT": str(heartbeat), "BZZLITE_FEED_POLL": str(poll)}
        self.log = open(directory / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bzzlite", "serve", "feedbench.py:app", "--port", str(self.port),
             "--db", f"sqlite:///{directory}/feeds.db", "--workers", str(workers), "--log-level", "warning"],
            cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/_health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start; see server.log")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            return reply.status, json.loads(reply.read() or b"null")
        finally:
            conn.close()

    def rss_kib(self) -> int:
        return sum(rss_kib(p) for p in worker_pids(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# -- the clients (one process holds many streams) ------------------------------------------


class Stream(asyncio.Protocol):
    """One SSE connection: notes when ``ready`` and each ``created`` event arrive."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.buffer = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"GET /tick HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        # Only note when the bytes came: parsing waits until the report, so that a busy
        # client delays the next arrivals as little as possible.
        if self.ready.done():
            self.client.chunks.append((time.time(), data))
            return
        self.buffer += data
        if b"event: ready" in self.buffer:
            self.buffer = b""
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))


class Client:
    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []  # (arrival time, bytes) of every stream
        self.lost = 0

    def arrivals(self) -> list[tuple[int, float]]:
        """(n, latency) for every ``created`` event received since the last call. Events
        are small and written whole, so each one arrives within one read."""
        found = []
        for at, data in self.chunks:
            for block in data.split(b"\n\n"):
                if b"event: created" in block:
                    line = block[block.index(b"data: ") + 6:].split(b"\r\n", 1)[0].split(b"\n", 1)[0]
                    doc = json.loads(line)["doc"]
                    found.append((doc["n"], at - doc["sent"]))
        self.chunks = []
        return found


async def hold(port: int, count: int, pipe: Any) -> None:
    """Open ``count`` streams, report "ready", then answer "report" with what arrived."""
    loop = asyncio.get_running_loop()
    client = Client()
    gate = asyncio.Semaphore(64)  # connections being set up at once: stay under the listen backlog
    streams: list[Stream] = []

    async def one() -> None:
        async with gate:
            for attempt in range(5):
                try:
                    _, stream = await loop.create_connection(lambda: Stream(client), "127.0.0.1", port)
                    await stream.ready
                    streams.append(stream)
                    return
                except (OSError, ConnectionError):
                    await asyncio.sleep(0.1 * (attempt + 1))
            raise RuntimeError("could not open a stream")

    await asyncio.gather(*(one() for _ in range(count)))
    pipe.send(("ready", len(streams)))
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "report":
            pipe.send(("report", client.arrivals(), client.lost))
        elif command == "stop":
            for stream in streams:
                if stream.transport is not None:
                    stream.transport.close()
            pipe.send(("stopped", None))
            return


def client_main(port: int, count: int, pipe: Any) -> None:
    asyncio.run(hold(port, count, pipe))


class Clients:
    """``total`` streams spread over client processes of at most ``per_process`` each."""

    def __init__(self, port: int, total: int, per_process: int = 2500) -> None:
        sizes = [per_process] * (total // per_process) + ([total % per_process] if total % per_process else [])
        self.pipes, self.procs = [], []
        for size in sizes:
            parent, child = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=client_main, args=(port, size, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.opened = sum(pipe.recv()[1] for pipe in self.pipes)

    def report(self) -> tuple[list[tuple[int, float]], int]:
        arrivals, lost = [], 0
        for pipe in self.pipes:
            pipe.send("report")
        for pipe in self.pipes:
            _, got, gone = pipe.recv()
            arrivals.extend(got)
            lost += gone
        return arrivals, lost

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for pipe, proc in zip(self.pipes, self.procs):
            pipe.recv()
            proc.join(10)


def wait_for(clients: Clients, expected: int, timeout: float = 60) -> tuple[list[tuple[int, float]], int]:
    """Collect arrivals until ``expected`` of them came (or the timeout)."""
    arrivals: list[tuple[int, float]] = []
    lost = 0
    deadline = time.monotonic() + timeout
    while len(arrivals) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        got, lost = clients.report()
        arrivals.extend(got)
    return arrivals, lost


# -- the measurements ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def idle_phase(server: Server, count: int) -> dict[str, Any]:
    warm = Clients(server.port, 1)  # the feed machinery is loaded and running
    time.sleep(0.5)
    baseline = server.rss_kib()
    started = time.monotonic()
    clients = Clients(server.port, count)
    opened_in = time.monotonic() - started
    time.sleep(1.0)
    loaded = server.rss_kib()
    sent = time.time()
    server.request("POST", "/tick", {"n": -1, "sent": sent})
    arrivals, lost = wait_for(clients, clients.opened)
    fanout = max((lag for _, lag in arrivals), default=float("nan"))
    result = {
        "subscribers": clients.opened,
        "open_seconds": round(opened_in, 2),
        "rss_baseline_mib": round(baseline / 1024, 1),
        "rss_loaded_mib": round(loaded / 1024, 1),
        "kib_per_subscriber": round((loaded - baseline) / max(1, clients.opened), 2),
        "received_the_write": len(arrivals),
        "lost_connections": lost,
        "fanout_ms_to_last": round(fanout * 1000, 1),
    }
    clients.stop()
    warm.stop()
    return result


def latency_phase(server: Server, count: int, writes: int, rate: float, pad: int) -> dict[str, Any]:
    clients = Clients(server.port, count, per_process=max(1, (count + 1) // 2))
    time.sleep(0.5)
    payload = "x" * pad
    for n in range(writes):
        due = time.monotonic() + 1 / rate
        server.request("POST", "/tick", {"n": n, "sent": time.time(), "pad": payload})
        time.sleep(max(0.0, due - time.monotonic()))
    arrivals, lost = wait_for(clients, writes * clients.opened)
    clients.stop()
    lags = [lag * 1000 for _, lag in arrivals]
    return {
        "subscribers": clients.opened,
        "writes": writes,
        "rate_per_s": rate,
        "deliveries": len(lags),
        "expected_deliveries": writes * clients.opened,
        "lost_connections": lost,
        "p50_ms": round(statistics.median(lags), 2) if lags else None,
        "p90_ms": round(percentile(lags, 90), 2) if lags else None,
        "p99_ms": round(percentile(lags, 99), 2) if lags else None,
        "max_ms": round(max(lags), 2) if lags else None,
    }


def machine() -> dict[str, Any]:
    import tornado

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tornado": tornado.version, "sqlite": sqlite3.sqlite_version, "os": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=10_000, help="idle subscribers to hold (0 to skip)")
    parser.add_argument("--subscribers", type=int, default=1_000, help="subscribers in the latency run (0 to skip)")
    parser.add_argument("--writes", type=int, default=200, help="writes in the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second in the latency run")
    parser.add_argument("--pad", type=int, default=100, help="bytes of padding in each document")
    parser.add_argument("--workers", type=int, default=1, help="server processes (--workers of bzzlite serve)")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="the feeds' heartbeat, seconds")
    parser.add_argument("--poll", type=float, default=0.01, help="the SQLite journal's poll interval, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"machine": machine(), "config": vars(args),
                               "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bzzlite-feeds-") as tmp:
        if args.idle:
            server = Server(Path(tmp), args.workers, args.heartbeat, args.poll)
            try:
                results["idle"] = idle_phase(server, args.idle)
            finally:
                server.stop()
            print(json.dumps({"idle": results["idle"]}, indent=2), flush=True)
        if args.subscribers:
            directory = Path(tmp) / "latency"
            directory.mkdir()
            server = Server(directory, args.workers, args.heartbeat, args.poll)
            try:
                results["latency"] = latency_phase(server, args.subscribers, args.writes, args.rate, args.pad)
            finally:
                server.stop()
            print(json.dumps({"latency": results["latency"]}, indent=2), flush=True)
    results["load_average_after"] = os.getloadavg()[0]
    print(f"load average (1 min) before {results['load_average_before']:.2f}, after "
          f"{results['load_average_after']:.2f}: well above 0 means other work shared the cores", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r.get("lost_connections", 0) == 0 for k, r in results.items() if k in ("idle", "latency"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
