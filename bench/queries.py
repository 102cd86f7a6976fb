"""Queries on a large SQLite collection, measured through HTTP (issue 3's benchmark).

    python -m bench.queries                 # 1,000,000 documents (built once, ~1 min)
    python -m bench.queries --docs 100000   # smaller

Loads N documents into a bzzlite SQLite file (kept in bench/results/ between runs),
serves it with ``python -m bzzlite serve`` and measures, request by request on one
keep-alive connection: an indexed filter + sort first page, page 1,000 by ``page=``,
page 1,000 reached by following cursors, cursor pages from 1 to 10,000, and the
``total`` count of a filtered and an unfiltered list. Prints a Markdown table with
p50/p99 and the server's resident memory before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.procstat import rss_kib
from bench.server import free_port

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = [f"c{i:02d}" for i in range(20)]
NEXT = re.compile(r'<([^>]*)>; rel="next"')


def build(path: Path, docs: int) -> None:
    """Create the collection and insert documents through bzzlite's own SQLite store."""
    if path.exists():
        with sqlite3.connect(path) as conn:
            if conn.execute("SELECT count(*) FROM product").fetchone()[0] == docs:
                return
        path.unlink()
    sys.path.insert(0, str(ROOT))
    from bench.queries_app import app
    from bzzlite.models.ids import new_id

    spec = next(iter(app.registry.resources.values()))
    rng = random.Random(7)

    async def load() -> None:
        app.use_store(f"sqlite:///{path}")
        await app.startup()  # creates the table, its columns and indexes
        store = app.runtime.store
        store.conn.execute("PRAGMA synchronous=OFF")
        for start in range(0, docs, 50_000):
            await store.insert(spec, [
                (new_id(), {"name": f"product {i}", "category": rng.choice(CATEGORIES),
                            "price": round(rng.uniform(1, 1000), 2), "stock": rng.randrange(500)})
                for i in range(start, min(start + 50_000, docs))
            ])
        store.conn.execute("ANALYZE")
        await app.shutdown()

    started = time.monotonic()
    asyncio.run(load())
    print(f"loaded {docs:,} documents in {time.monotonic() - started:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)")


class Client:
    """One keep-alive HTTP connection; returns (milliseconds, body, headers)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[float, dict, http.client.HTTPMessage]:
        started = time.perf_counter()
        self.conn.request("GET", path)
        reply = self.conn.getresponse()
        body = reply.read()
        elapsed = (time.perf_counter() - started) * 1000
        if reply.status != 200:
            raise RuntimeError(f"GET {path} -> {reply.status}: {body[:200]!r}")
        return elapsed, json.loads(body), reply.headers


def timed(client: Client, path: str, repeat: int) -> list[float]:
    client.get(path)  # warm the page cache for this query
    return [client.get(path)[0] for _ in range(repeat)]


def walk_cursor(client: Client, start: str, pages: int) -> dict[int, float]:
    """Follow ``next`` links from the first cursor page; latency of every page."""
    latencies: dict[int, float] = {}
    path: str | None = start
    for page in range(1, pages + 1):
        assert path is not None, f"no next link after page {page - 1}"
        elapsed, _, headers = client.get(path)
        latencies[page] = elapsed
        found = NEXT.search(headers.get("Link", ""))
        path = found.group(1) if found else None
    return latencies


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queries", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per query")
    parser.add_argument("--cursor-pages", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "results" / "queries.db")
    args = parser.parse_args(argv)
    args.data.parent.mkdir(parents=True, exist_ok=True)
    build(args.data, args.docs)

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bzzlite", "serve", "bench.queries_app:app", "--port", str(port),
         "--db", f"sqlite:///{args.data}", "--log-level", "warning"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = Client(port)
                client.get("/_health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        rss_start = rss_kib(server.pid) / 1024
        rows: list[tuple[str, float, float]] = []

        def measure(label: str, path: str, check: Callable[[dict], bool] = lambda body: True) -> None:
            _, body, _ = client.get(path)
            assert check(body), f"{label}: unexpected answer {str(body)[:200]}"
            rows.append((label, *summary(timed(client, path, args.repeat))))

        measure("filter + sort, first page (category=c07, sort=-price)",
                "/product?category=c07&sort=-price&per_page=20",
                lambda b: len(b["items"]) == 20 and b["items"][0]["price"] >= b["items"][-1]["price"])
        measure("same, cursor mode (no count)", "/product?category=c07&sort=-price&per_page=20&after=",
                lambda b: b["total"] is None)
        measure("page 1,000 by page= (sort=price)", "/product?sort=price&per_page=20&page=1000",
                lambda b: len(b["items"]) == 20)
        measure("total of a filtered list (category=c07)", "/product?category=c07&per_page=1",
                lambda b: b["total"] > 0)
        measure("total of the whole collection", "/product?per_page=1", lambda b: b["total"] == args.docs)

        pages = min(args.cursor_pages, args.docs // 20)
        walked = walk_cursor(client, "/product?sort=price&per_page=20&after=", pages)
        marks = [p for p in (1, 10, 100, 1_000, 10_000) if p <= pages]
        around = {m: [walked[p] for p in range(max(1, m - 25), min(pages, m + 25) + 1)] for m in marks}
        for mark in marks:
            rows.append((f"cursor page {mark:,} (sort=price, the 50 pages around it)", *summary(around[mark])))
        rss_end = rss_kib(server.pid) / 1024
    finally:
        server.terminate()
        server.wait(30)

    print(f"\n{args.docs:,} documents, SQLite, one keep-alive connection, {args.repeat} timed requests per row\n")
    print("| query | p50 ms | p99 ms |\n|---|---:|---:|")
    for label, p50, p99 in rows:
        print(f"| {label} | {p50:.2f} | {p99:.2f} |")
    print(f"\nserver RSS: {rss_start:.1f} MiB at start, {rss_end:.1f} MiB after {pages:,} cursor pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
