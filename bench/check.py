"""``bzzlite check`` and ``bzzlite migrate`` over a large SQLite collection (issue 29's benchmark).

    python -m bench.check                  # 1,000,000 documents (built once, ~1 min)
    python -m bench.check --docs 100000    # smaller

Loads N documents written by version 1 of a model (six fields: text, numbers, a list, a
unique one) into a SQLite file kept in bench/results/ between runs, then times, each as a
fresh ``python -m bzzlite`` process as a user runs it (wall clock, progress bar off):

- ``check`` with version 1 (every document current: each is still validated, no mark trusted);
- ``check`` with version 2 (a migration renames a field and retypes another: every document
  upgraded in memory, validated, dumped, its unique value collected);
- ``migrate --dry-run`` with version 2, then ``migrate`` (every document written, in batches),
  then ``migrate`` again (nothing left: a rerun's cost).

Prints a Markdown table. ``migrate`` rewrites the file, so the collection is rebuilt next time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = '''
from typing import Annotated
from pydantic import BaseModel
from bzzlite import App, Registry, Unique

registry = Registry()

def to_v2(doc):
    doc["title"] = doc.pop("name")
    doc["stock"] = str(doc["stock"])
    return doc

@registry.resource(name="product", migrations={MIGRATIONS})
class Product(BaseModel):
    TITLE: str
    category: str
    price: float
    stock: STOCK = STOCK_DEFAULT
    tags: list[str] = []
    sku: Annotated[str, Unique]

app = App(registry)
'''


def write_apps(directory: Path) -> None:
    (directory / "check_v1.py").write_text(
        APP.replace("{MIGRATIONS}", "None").replace("TITLE", "name").replace("STOCK_DEFAULT", "0").replace("STOCK", "int"))
    (directory / "check_v2.py").write_text(
        APP.replace("{MIGRATIONS}", "{2: to_v2}").replace("TITLE", "title").replace("STOCK_DEFAULT", '"0"')
        .replace("STOCK", "str"))


def build(path: Path, docs: int, apps: Path) -> None:
    """Create the collection through bzzlite's own store, as version 1 of the model writes it."""
    if path.exists():
        with sqlite3.connect(path) as conn:
            marks = conn.execute("SELECT count(*), count(DISTINCT json_extract(doc, '$._model')), "
                                 "min(json_extract(doc, '$._model')) FROM product").fetchone()
        if marks[0] == docs and marks[1] == 1 and marks[2].startswith("1:"):
            return
        path.unlink()
    sys.path.insert(0, str(apps))
    sys.path.insert(0, str(ROOT))
    from check_v1 import app  # type: ignore[import-not-found]

    from bzzlite.models.ids import new_id

    spec = next(iter(app.registry.resources.values()))
    rng = random.Random(29)

    async def load() -> None:
        app.use_store(f"sqlite:///{path}")
        await app.startup()
        store = app.runtime.store
        store.conn.execute("PRAGMA synchronous=OFF")
        for start in range(0, docs, 50_000):
            await store.insert(spec, [
                (new_id(), {"name": f"product {i}", "category": f"c{rng.randrange(20):02d}",
                            "price": round(rng.uniform(1, 1000), 2), "stock": rng.randrange(500),
                            "tags": rng.sample(["red", "green", "blue", "big", "small"], 2), "sku": f"SKU-{i:08d}"})
                for i in range(start, min(start + 50_000, docs))
            ])
        await app.shutdown()

    started = time.monotonic()
    asyncio.run(load())
    print(f"loaded {docs:,} documents in {time.monotonic() - started:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)",
          file=sys.stderr)


def timed(label: str, args: list[str], apps: Path) -> tuple[str, float, float, str]:
    """Run one command; its wall clock and CPU seconds (the process and its threads: user + system)."""
    env = {"PYTHONPATH": f"{ROOT}:{apps}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bzzlite", *args, "--no-progress"], cwd=apps, capture_output=True,
                            text=True, env={**os.environ, **env}, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in (0, 1) or "error" in result.stderr:
        raise RuntimeError(f"{label}: {result.stderr[-2000:]}")
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return label, elapsed, cpu, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "results" / "check.db")
    parser.add_argument("--no-migrate", action="store_true", help="time the checks only (keeps the file)")
    args = parser.parse_args(argv)
    args.data.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:  # the two versions of the app, as files
        apps = Path(directory)
        write_apps(apps)
        return run(args, apps)


def run(args: argparse.Namespace, apps: Path) -> int:
    build(args.data, args.docs, apps)
    db = ["--db", f"sqlite:///{args.data.resolve()}"]
    runs = [("check, version 1 (all current)", ["check", "check_v1.py:app", *db]),
            ("check, version 2 (all to upgrade)", ["check", "check_v2.py:app", *db]),
            ("migrate --dry-run, version 2", ["migrate", "check_v2.py:app", "--dry-run", *db])]
    if not args.no_migrate:
        runs += [("migrate, version 2 (all written)", ["migrate", "check_v2.py:app", *db]),
                 ("migrate again (nothing to do)", ["migrate", "check_v2.py:app", *db]),
                 ("check, version 2 (all current)", ["check", "check_v2.py:app", *db])]
    rows = [timed(label, command, apps) for label, command in runs]
    print(f"| {args.docs:,} documents, SQLite | wall clock s | CPU s | documents per CPU s | last line |")
    print("|---|---:|---:|---:|---|")
    for label, seconds, cpu, last in rows:
        print(f"| {label} | {seconds:.1f} | {cpu:.1f} | {args.docs / cpu:,.0f} | {last} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
